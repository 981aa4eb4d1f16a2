"""Where every run stands, read from the run directories and the queue, never from a live process."""
