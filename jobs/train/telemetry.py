"""What the outside world sees of a training while it runs: the status file and its heartbeat, the progress
display and the epoch's log line, the metrics file, the supervisor's step file, and what the start cost."""
import os
import signal
import socket
import time

import torch

from jobs import testing
from jobs.distributed.ranks import Ranks
from jobs.environment import JobEnvironment
from jobs.readable import readable_fields
from jobs.run.run_dir import RunDir
from jobs.step_file import StepFile
from jobs.train.checkpointer import Checkpointer
from jobs.train.config import LoopConfig
from jobs.train.metrics import Metrics
from jobs.train.progress import Reporter
from jobs.train.startup import StartupClock
from jobs.train.tensorboard import DIRECTORY, NoTensorBoard, TensorBoardLog
from jobs.workload import Task


class Telemetry:
    def __init__(self, task: Task, run: RunDir, reporter: Reporter, metrics: Metrics, checkpointer: Checkpointer,
                 loop: LoopConfig, ranks: Ranks, restarts: int, clock: StartupClock):
        self.task, self.run, self.reporter, self.metrics, self.checkpointer = task, run, reporter, metrics, checkpointer
        self.loop, self.ranks, self.restarts, self.clock = loop, ranks, restarts, clock
        self.step_file = StepFile.from_environment()
        self.ledger = checkpointer.ledger  # where this start's seconds go (jobs.goodput.ledger)
        self._kill_at = testing.kill_at_step()
        self.tensorboard = TensorBoardLog(run.path / DIRECTORY, task.step) if loop.tensorboard and ranks.is_writer \
            else NoTensorBoard()
        self.startup: dict | None = None  # the phases of this start, once its first step is done
        self.started = time.time()
        self._last_status = 0.0

    @property
    def epoch(self) -> int:
        return self.task.step // self.task.steps_per_epoch

    @property
    def epochs(self) -> int:
        return self.task.total_steps // self.task.steps_per_epoch

    def start(self) -> None:
        self.step_file.write(self.task.step)
        self.status("running")

    def stepped(self, out: dict) -> None:
        """After each step: the supervisor's step file, TensorBoard's pending step; after the first step, the
        first-step event."""
        self.step_file.write(self.task.step)
        self.tensorboard.step(self.task.step, out)
        if self.startup is None:
            self._first_step_done()
        else:
            self.ledger.step(self.task.step)
        if self.task.step == self._kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def _first_step_done(self) -> None:
        """Record what this start cost until its first step: restart cost is a number to track."""
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # once: the step's kernels, compilation included, have run
        self.clock.mark("first_step")
        self.startup = self.clock.phases()
        # a task may say where its own part of the start went (its build's data, model, ...; its first
        # step's compilation, ...): where a slow start spends its time
        self.startup["task_parts"] = {k: round(v, 3) for k, v in getattr(self.task, "startup_phases", {}).items()}
        self.run.event("first-step", self.task.step - 1, **self.startup)  # the step this start trained from
        self.ledger.first_step_done(self.task.step)

    # -- progress --------------------------------------------------------------------------------------
    def start_epoch(self) -> None:
        spe = self.task.steps_per_epoch
        self.reporter.start_epoch(self.epoch + 1, self.epochs, self.task.step % spe, spe)

    def show_progress(self) -> None:
        spe = self.task.steps_per_epoch
        self.reporter.step(self.epoch + (self.task.step % spe > 0), self.epochs, self.task.step % spe or spe, spe,
                           self.metrics.progress())
        self.tensorboard.flush()

    def end_epoch(self, record: dict) -> None:
        """The metrics file, rewritten whole, and the epoch's plain line."""
        self.run.write_metrics(self.metrics.state.history)
        self.tensorboard.epoch(record)
        self.tensorboard.flush()
        shown = readable_fields(record, skip=("time", "epoch", "step"))
        self.reporter.end_epoch(f"epoch {self.epoch}/{self.epochs} step {self.task.step} {shown}")

    def before_save(self) -> None:
        """What a checkpoint must find on disk when it is taken: TensorBoard's steps up to it."""
        self.tensorboard.flush()

    def close(self) -> None:
        self.reporter.close()
        self.tensorboard.close()

    # -- status ----------------------------------------------------------------------------------------
    def heartbeat(self) -> None:
        if time.monotonic() - self._last_status >= self.loop.status_every_seconds:
            self.status("running")

    def status(self, state: str, **extra) -> None:
        """status.json: where the run stands, for status.py (which reads it without torch)."""
        task, metrics, last = self.task, self.metrics, self.checkpointer.last
        eta = None
        if metrics.steps_per_sec and state == "running":
            eta = (task.total_steps - task.step) / metrics.steps_per_sec
        self.run.write_status({
            "run_id": self.run.run_id, "state": state, "model": task.describe(),
            "epoch": self.epoch, "epochs": self.epochs, "step": task.step, "total_steps": task.total_steps,
            "restarts": self.restarts, "primary_metric": metrics.primary_metric,
            "best_metric": metrics.state.best_metric, "last_metric": metrics.last_metric,
            "unit": metrics.rate_unit, "rate": metrics.rate, "eta_seconds": eta,
            "last_checkpoint_step": last.step, "last_checkpoint_time": last.time,
            "heartbeat": time.time(), "started": self.started, "host": socket.gethostname(),
            "pid": os.getpid(), "slurm_job_id": JobEnvironment().job_id, "world_size": self.ranks.world_size,
            "startup_seconds": (self.startup or {}).get("seconds"),
            "checkpoint_interval_seconds": self.checkpointer.interval_seconds(),
            "status_every_seconds": self.loop.status_every_seconds, **extra})
        self._last_status = time.monotonic()
