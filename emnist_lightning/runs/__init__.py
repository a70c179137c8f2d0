"""A run's lifecycle, whatever it runs: its config and command line (`config`), context, process settings
(`host`), how it stops (`signals`), its record (`record`: metrics.json), resuming it (`resume`), running it as
an entry point (`task`) and comparing the runs of a sweep (`report`)."""
