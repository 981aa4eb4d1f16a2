"""Exit codes of the entry points (documented in README.md)."""
EXIT_OK = 0          # the run finished (or was already finished)
EXIT_FAILED = 1      # training failed (a bug, out of memory, a final checkpoint that could not be written)
EXIT_BAD_INPUT = 2   # bad input; nothing was written
EXIT_LOCKED = 3      # another live process holds the run
EXIT_STOPPED = 75    # stopped by a signal with its checkpoint saved; resume continues it (EX_TEMPFAIL)
EXIT_INTERRUPTED = 130  # a second Ctrl-C: stopped at once, without a final save
