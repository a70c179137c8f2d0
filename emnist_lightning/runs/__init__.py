"""A run's lifecycle, whatever it runs: its config and command line (`config`), context, process settings
(`host`), how it stops (`signals`), its record (`record`: metrics.json), continuing it or its sweep
(`resume`), its folder's owner (`ownership`) and running it as an entry point (`task`)."""
