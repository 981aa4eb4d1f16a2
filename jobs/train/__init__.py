"""The training loop around a workload's task, and the components it delegates to."""
