"""Several processes on one run: the process group and the few collectives the loop needs."""
