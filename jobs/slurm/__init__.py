"""What the toolkit asks of SLURM: job states and the queue, requeues, resubmission (no torch here)."""
