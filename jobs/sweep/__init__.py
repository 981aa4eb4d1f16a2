"""Sweeps: a grid of runs that share their flags but the swept ones, trained as one SLURM job array (no torch)."""
