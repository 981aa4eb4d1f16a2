"""Checkpoints: the state's layout, atomic verified files with a manifest, the host copy and the background
writer. The manifest and the layout are read without torch (status, the supervisor, resume.py)."""
