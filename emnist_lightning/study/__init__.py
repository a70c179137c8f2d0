"""A study people can trust: the statistics of runs and comparisons (statistics.py), each run's test
predictions kept for paired tests (predictions.py), and comparing runs and configurations (compare.py)."""
