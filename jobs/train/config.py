"""The loop's settings: cadence, retention, requeue limits (torch-free: the command-line parsers read them)."""
from dataclasses import asdict, dataclass

from jobs.exit_codes import DEFAULT_MAX_CRASH_RETRIES


@dataclass
class LoopConfig:
    checkpoint_every_steps: int | None = None  # also at epoch ends; whichever comes first
    checkpoint_every_seconds: float | str | None = "auto"  # "auto": chosen from cost and risk (jobs.goodput.cadence)
    checkpoint_every_epochs: int = 1  # save at every N-th epoch end (the final one always)
    eval_every_epochs: int = 1
    keep_last: int = 3
    keep_every_epochs: int | None = None  # also keep every N-th epoch's checkpoint
    status_every_seconds: float = 10.0
    max_requeues: int = 200  # SLURM self-requeues before giving up (jobs.slurm.requeue)
    max_crash_retries: int = DEFAULT_MAX_CRASH_RETRIES  # retries after the trainer crashed (jobs.supervise.crash)
    stop_on_nonfinite: bool = True  # a NaN/inf loss stops the run as diverged (--allow-nonfinite: off)
    tensorboard: bool = False  # the run's scalars under <run>/tensorboard (jobs.train.tensorboard)
    hang_timeout_seconds: float = 1800.0  # no step this long: the trainer ends itself (train.hang_watchdog); 0: off

    def to_dict(self) -> dict:
        return asdict(self)
