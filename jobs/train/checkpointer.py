"""Saving: when a save is due, the state a checkpoint holds, and the background write's result.

Rank 0 writes (docs/design.md, "Decisions"); every rank takes part in a save, because every rank's RNG and
generator states go into it. Training waits for the host copy only; a write that fails is reported once and
tried again at the next save (docs/design.md, invariant 6)."""
import time
from dataclasses import dataclass

from jobs.checkpoint import layout
from jobs.checkpoint.rng import capture_rng
from jobs.checkpoint.store import CheckpointStore, NonFiniteCheckpoint
from jobs.checkpoint.writer import BackgroundWriter
from jobs.distributed.ranks import Ranks
from jobs.environment import JobEnvironment
from jobs.goodput.accounting import death_history
from jobs.goodput.cadence import AUTO, AutoCadence
from jobs.goodput.ledger import Ledger, NoLedger
from jobs.run.run_dir import RunDir
from jobs.run.write_failures import WriteFailures, describe
from jobs.slurm.queries import duration_seconds
from jobs.train.config import LoopConfig
from jobs.train.divergence import Diverged, LossWatch
from jobs.train.metrics import Metrics
from jobs.train.outcome import kept
from jobs.workload import Task


@dataclass
class LastCheckpoint:
    """The newest committed checkpoint this process knows of (None before the run has one)."""
    step: int | None = None
    time: float | None = None


def auto_cadence(run: RunDir, loop: LoopConfig) -> AutoCadence | None:
    """The auto cadence of this start, from the run's earlier starts; its prior: this SLURM job's time limit."""
    if loop.checkpoint_every_seconds != AUTO:
        return None
    job_id, limit = JobEnvironment().job_id, None
    if job_id and run.exists():
        job = run.read_config().get("job") or {}
        limit = duration_seconds(job.get("time_limit")) if job.get("slurm_job_id") == job_id else None
    return AutoCadence(*death_history(run.path), prior_seconds=limit)


class _NoWriter:
    """The checkpoint writer of the ranks other than 0: they take part in a save, rank 0 writes it."""

    def submit(self, state, **meta) -> None:
        pass

    def wait(self) -> None:
        pass

    def collect(self) -> tuple[None, None]:
        return None, None


class Checkpointer:
    """Saves `task` with the loop's state, as `metrics` holds it when the save is taken (the loop's state object is
    metrics.state: the checkpoint's "loop" entry)."""

    def __init__(self, task: Task, metrics: Metrics, run: RunDir, store: CheckpointStore, loop: LoopConfig,
                 ranks: Ranks, losses: LossWatch, write_failures: WriteFailures, resumed_from: dict | None = None,
                 ledger: Ledger | NoLedger | None = None, cadence: AutoCadence | None = None):
        self.task, self.metrics, self.run, self.loop, self.ranks = task, metrics, run, loop, ranks
        self.losses, self.write_failures = losses, write_failures
        self.ledger, self.cadence = ledger or NoLedger(), cadence
        self._stall = 0.0  # what training waited for while the newest save was taken
        self.writer = BackgroundWriter(store) if ranks.is_writer else _NoWriter()
        self.last = LastCheckpoint(resumed_from["step"], resumed_from["time"]) if resumed_from else LastCheckpoint()
        self.last_error: BaseException | None = None
        self._saved_at = (time.monotonic(), task.step)  # (when, step) of the last save taken: the cadence's origin

    def interval_seconds(self) -> float | None:
        """The seconds between saves in use: fixed, or chosen by the auto cadence (jobs.goodput.cadence)."""
        if self.loop.checkpoint_every_seconds == AUTO:
            return self.cadence.interval(self.ledger.elapsed()) if self.cadence else None
        return self.loop.checkpoint_every_seconds

    def due(self) -> bool:
        """Whether --checkpoint-every-steps or --checkpoint-every-seconds asks for a save now."""
        saved_time, saved_step = self._saved_at
        every_steps, every_seconds = self.loop.checkpoint_every_steps, self.interval_seconds()
        return bool((every_steps and self.task.step - saved_step >= every_steps)
                    or (every_seconds and time.monotonic() - saved_time >= every_seconds))

    def save(self, *, epoch_end=False, final=False, metric=None, wait=False) -> bool:
        """Snapshot now, write in the background; with wait=True return whether the write succeeded.

        Never saves a state whose losses were non-finite: the check comes first, and the store refuses
        non-finite weights too (no checkpoint of a diverged run)."""
        self.losses.check()
        started = time.perf_counter()
        phase = "final" if self.ledger.phase == "final" else "checkpoint"  # a stop's save, the last: final
        with self.ledger.within(phase):
            ok = self.collect(block=True)
            task = self.task
            self.ledger.snapshot(task.step)
            self.writer.submit(self._state(), step=task.step, epoch=task.step / task.steps_per_epoch,
                               epoch_end=epoch_end, final=final, metric=metric)
        self._saved_at = (time.monotonic(), task.step)
        self._stall = time.perf_counter() - started
        if wait:
            return self.collect(block=True)
        return ok

    def save_if_needed(self) -> bool:
        """Make sure this step is committed: rank 0 knows whether it is saved already; every rank learns whether
        the save succeeded."""
        ok = self.collect(block=True)
        if self.ranks.broadcast(self.last.step == self.task.step and ok):
            return True
        return self.ranks.broadcast(self.save(wait=True))

    def _state(self) -> dict | None:
        """The checkpoint's dict (None on ranks other than 0, whose RNG and generator states it holds too)."""
        task = self.task
        mine = {"rng": capture_rng()}
        if self.ranks.distributed:  # what differs between ranks: each one's generators and epoch sums
            mine["task"] = getattr(task, "rank_state_dict", dict)()
            mine["window"] = self.metrics.window.state()
        every_rank = self.ranks.gather(mine)
        if not self.ranks.is_writer:
            return None
        several = self.ranks.distributed
        loop = self.metrics.state_dict(with_window=not several)
        return layout.checkpoint_state(task.step, task.steps_per_epoch, task.state_dict(), mine["rng"], loop,
                                       every_rank if several else None)

    def collect(self, block: bool) -> bool:
        """Collect the background write (waiting for it if `block`): False if it failed, reported once per kind
        of failure."""
        if block:
            self.writer.wait()
        entry, error = self.writer.collect()
        if isinstance(error, NonFiniteCheckpoint):
            raise Diverged(error.step, "weights")
        if error is not None and not isinstance(error, OSError):
            raise error  # not the disk: the workload's state (a ContractError), or a bug, with its traceback
        if error is not None:
            self.last_error = error
            message = (f"checkpoint write failed: {describe(error)}; {kept(self.last.step)}; training goes on and "
                       "tries again at the next save")
            self.write_failures.failed("checkpoint", error, self.task.step, message)
            return False
        if entry is not None:
            self.last_error = None
            self.write_failures.succeeded("checkpoint", entry["step"])
            self.last = LastCheckpoint(entry["step"], entry["time"])
            if self.cadence is not None:
                self.cadence.measured(self._stall + entry["seconds"])
            self.ledger.cadence_in_use(self.interval_seconds(), self.cadence.cost if self.cadence else None)
            self.run.event("checkpoint", entry["step"], file=entry["file"], size=entry["size"],
                           seconds=round(entry["seconds"], 4), final=entry["final"])
        return True

    def settle(self) -> None:
        """After a failure: let an in-flight write finish and commit (its state was checked finite when taken)."""
        self.writer.wait()
        try:
            self.collect(block=False)
        except Exception:
            pass  # refused (non-finite weights, a state it cannot save): nothing was committed, the first error stands

    def not_saved(self) -> str:
        """Why the checkpoint this run had to write is missing, and what it still has."""
        why = describe(self.last_error) if self.last_error else "write failed"
        return f"{why}; {kept(self.last.step)}"
