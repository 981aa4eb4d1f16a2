"""Exit codes of the entry points (docs/design.md, "Exit codes"), and which of them the batch job's supervisor
(jobs.supervise) retries when the run made progress; every other code is final."""
EXIT_OK = 0          # the run finished (or was already finished)
EXIT_FAILED = 1      # training failed: an unhandled error (a bug, a CUDA error)
EXIT_BAD_INPUT = 2   # bad input; nothing was written
EXIT_LOCKED = 3      # another live process holds the run
EXIT_DIVERGED = 4    # a non-finite loss: stopped, no checkpoint of the diverged state; lower the lr
EXIT_OUT_OF_MEMORY = 5  # the device ran out of memory; the last checkpoint is intact; lower the batch size
EXIT_WRITE_FAILED = 6   # a checkpoint the run had to write (final or stop) could not be: disk full, read-only
EXIT_HUNG = 7          # no training step for --hang-timeout-seconds: it dumped its stacks and ended itself
EXIT_CONTRACT = 8      # the workload broke the contract (what train_step, evaluate or state_dict give): fix it
EXIT_STOPPED = 75    # stopped by a signal with its checkpoint saved; resume continues it (EX_TEMPFAIL)
EXIT_INTERRUPTED = 130  # a second Ctrl-C: stopped at once, without a final save

RETRIED_BY_SUPERVISOR = {EXIT_FAILED, EXIT_WRITE_FAILED, EXIT_HUNG}  # and a death by signal (jobs.supervise)
DEFAULT_MAX_CRASH_RETRIES = 3  # crash retries (requeues or in place) of one run (LoopConfig.max_crash_retries)
