"""Errors the user can fix: shown as one line on stderr, never as a traceback."""

CONTRACT = "docs/your-own-training.md"  # where the workload contract is explained to its authors


class UserError(Exception):
    """Bad input: a missing file, a bad run id, impossible numbers, a conflicting config.

    Entry points catch it, print ``error: <message>`` to stderr and exit with EXIT_BAD_INPUT.
    Raise it *before* anything is written, so that bad input changes nothing on disk.
    """

    def __init__(self, message: str = "", *, quiet: bool = False):
        super().__init__(message)
        self.quiet = quiet  # a rank other than 0 repeating rank 0's error: exit, but let rank 0 say it


class ContractError(Exception):
    """A workload broke the contract (jobs.workload): what its task returned or holds is not what the loop
    needs. Shown as one line naming what is wrong; the run stops with EXIT_CONTRACT, never retried as it is."""
