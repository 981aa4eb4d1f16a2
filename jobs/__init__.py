"""jobs: a preemption-resilient training loop for SLURM clusters; knows nothing about any workload."""
