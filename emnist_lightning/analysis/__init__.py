"""The analysis of runs, with the statistics it uses: a sweep's report (report.py: every configuration against
the baseline, against_baseline.py), two runs compared image by image (two_runs.py), each run's test
predictions kept for paired tests (predictions.py), and the intervals and tests (statistics.py)."""
