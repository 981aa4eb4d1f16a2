"""Goodput: where a run's allocated seconds went, and the checkpoint cadence chosen from cost and risk."""
