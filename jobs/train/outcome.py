"""How a training ended, its exit code and the line the user reads about it: all in one place."""
from dataclasses import dataclass, field
from enum import Enum

from jobs.exit_codes import (
    EXIT_CONTRACT,
    EXIT_DIVERGED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_OUT_OF_MEMORY,
    EXIT_STOPPED,
    EXIT_WRITE_FAILED,
)


class Ending(Enum):
    FINISHED = "finished"  # trained to the end; its final checkpoint is committed
    ALREADY_FINISHED = "already finished"  # nothing was left to train
    STOPPED = "stopped"  # a stop signal; the checkpoint of that step is committed
    NOT_SAVED = "not saved"  # the checkpoint of a stop or of the end could not be written (disk full, read-only)
    DIVERGED = "diverged"  # a non-finite loss or weights: not to be retried as it is
    OUT_OF_MEMORY = "out of memory"  # not to be retried as it is
    PEER_LOST = "peer lost"  # another rank died or stopped answering: retried like a crash
    CONTRACT = "contract"  # the workload broke the contract: fix it, then resume


EXIT_CODES = {Ending.FINISHED: EXIT_OK, Ending.ALREADY_FINISHED: EXIT_OK, Ending.STOPPED: EXIT_STOPPED,
              Ending.NOT_SAVED: EXIT_WRITE_FAILED, Ending.DIVERGED: EXIT_DIVERGED,
              Ending.OUT_OF_MEMORY: EXIT_OUT_OF_MEMORY, Ending.PEER_LOST: EXIT_FAILED,
              Ending.CONTRACT: EXIT_CONTRACT}


@dataclass
class Outcome:
    ending: Ending
    step: int
    signal: str | None = None  # the stop signal all ranks agreed on
    message: str | None = None  # what went wrong, for the one line jobs.launch.launcher shows
    final_metrics: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.ending]


def kept(last_step: int | None) -> str:
    """What a run still has after any failure: the sentence its messages end with."""
    if last_step is None:
        return "no checkpoint of this run is committed"
    return f"the last committed checkpoint (step {last_step}) is intact"


def error_line(outcome: Outcome, resume: str) -> str | None:
    """The one line on stderr for an ending that needs the user (None where it does not); `resume` is the
    command that continues the run."""
    if outcome.ending in (Ending.DIVERGED, Ending.OUT_OF_MEMORY, Ending.CONTRACT):
        return f"error: {outcome.message}"
    if outcome.ending is Ending.PEER_LOST:
        return f"error: {outcome.message}; continue with {resume}"
    if outcome.ending is Ending.NOT_SAVED:
        return f"error: {outcome.message}; once the disk has room again, continue with {resume}"
    return None
