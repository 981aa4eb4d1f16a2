"""The run directory on disk: its files, written durably, its lock, and who may write (no torch here)."""
