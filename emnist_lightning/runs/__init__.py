"""What every run shares: its config (`config`), context, process settings (`host`), the objects it
builds (`build`), its bookkeeping callbacks, its record (`record`: metrics.json) and how it fails (`task`)."""
