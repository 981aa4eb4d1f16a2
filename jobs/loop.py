"""The training loop around a task: checkpoint and evaluation cadence, signals, progress, status, and the
faults it survives or stops cleanly on (a full disk, a non-finite loss, running out of memory)."""
import math
import os
import socket
import time
from dataclasses import dataclass, field

import torch

from jobs.checkpoint import BackgroundWriter, CheckpointStore, NonFiniteCheckpoint
from jobs.distributed import Ranks, is_peer_failure
from jobs.exit_codes import EXIT_HUNG
from jobs.hang_watchdog import HangWatchdog
from jobs.loop_config import LoopConfig  # noqa: F401  (re-exported: jobs.loop.LoopConfig)
from jobs.memory import OUT_OF_MEMORY, out_of_memory_text
from jobs.progress import Reporter
from jobs.readable import readable, readable_fields
from jobs.rng import capture_rng
from jobs.run_dir import RunDir, slurm_job_id
from jobs.signals import StopFlag
from jobs.startup import StartupClock
from jobs.step_file import StepFile
from jobs.task import Task
from jobs.write_failures import describe


@dataclass
class Outcome:
    finished: bool
    step: int
    signal: str | None = None
    checkpoint_ok: bool = True
    extra: dict = field(default_factory=dict)
    failure: str | None = None  # "diverged", "out-of-memory" (not to be retried as is) or "peer-lost"
    message: str | None = None  # what went wrong, for the one line that jobs.launch shows


class Diverged(Exception):
    """A non-finite loss (or non-finite weights about to be saved) at `step`."""

    def __init__(self, step: int, what: str):
        super().__init__(f"non-finite {what} at step {step}")
        self.step, self.what = step, what


class LossWatch:
    """The losses of the steps since the last check, left on the device: checked with one sync where the
    loop syncs anyway (the progress display, an epoch end, before a save), never every step."""

    def __init__(self):
        self.unchecked: list[tuple[int, torch.Tensor]] = []

    def add(self, step: int, loss) -> None:
        loss = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        self.unchecked.append((step, loss))

    def first_nonfinite(self) -> int | None:
        if not self.unchecked:
            return None
        device = self.unchecked[0][1].device
        losses = torch.stack([loss.float().reshape(()).to(device) for _, loss in self.unchecked])
        finite = torch.isfinite(losses).tolist()
        steps = [step for step, _ in self.unchecked]
        self.unchecked.clear()
        return next((step for step, ok in zip(steps, finite, strict=True) if not ok), None)


# The stop signals by precedence, when ranks received different ones: TERM (SLURM cancels or preempts: it
# decides about the requeue) over USR2 (the time-limit warning: requeue) over INT.
SIGNAL_CODES = {"SIGINT": 1, "SIGUSR2": 2, "SIGTERM": 3}
SIGNAL_NAMES = {code: name for name, code in SIGNAL_CODES.items()}
SAVE_DUE = 8  # added to rank 0's code: the checkpoint cadence (a clock only rank 0 reads) asks for a save


class _NoWriter:
    """The checkpoint writer of the ranks other than 0: they take part in a save, rank 0 writes it."""

    def submit(self, state, **meta) -> None:
        pass

    def wait(self) -> None:
        pass

    def collect(self) -> tuple[None, None]:
        return None, None


class Trainer:
    """Runs `task` to its end or to a stop request, saving at step boundaries only.

    With several processes (`ranks`), every rank runs this same loop in lockstep: at each step boundary one
    tiny all-reduce agrees on a stop (a signal may reach one rank only) and on rank 0's checkpoint cadence,
    so that all ranks stop, save and evaluate at the same steps; rank 0 writes, the others only compute."""

    def __init__(self, task: Task, run: RunDir, store: CheckpointStore, loop: LoopConfig, stop: StopFlag,
                 reporter: Reporter, primary_metric: str, loop_state: dict | None = None, restarts: int = 0,
                 clock: StartupClock | None = None, ranks: Ranks | None = None):
        self.ranks = ranks or Ranks()
        self.task, self.run, self.store, self.loop = task, run, store, loop
        self.stop, self.reporter, self.primary_metric = stop, reporter, primary_metric
        self.failures = run.failures or run.tolerate_write_failures(reporter.warn)
        store.refuse_nonfinite = loop.stop_on_nonfinite
        self.writer = BackgroundWriter(store) if self.ranks.is_writer else _NoWriter()
        self.state = loop_state or {"history": [], "best_metric": None, "train_seconds": 0.0}
        self.restarts = restarts
        self.last_checkpoint = {"step": None, "time": None}
        self.last_write_error: BaseException | None = None
        self.losses = LossWatch() if loop.stop_on_nonfinite else None
        self.step_file = StepFile.from_environment()
        self.clock = clock or StartupClock()
        self.startup: dict | None = None  # the phases of this start, once its first step is done
        self.started = time.time()
        self.images_per_sec = None
        self.agreed_stop: str | None = None  # the stop signal all ranks agreed on
        self.stop_ranks: dict[int, str] = {}  # which rank received which stop signal
        self.watchdog = HangWatchdog(loop.hang_timeout_seconds, self._record_hang)

    # -- state ---------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.task.step // self.task.steps_per_epoch

    @property
    def epochs(self) -> int:
        return self.task.total_steps // self.task.steps_per_epoch

    def checkpoint_state(self) -> dict | None:
        """The state to save (None on ranks other than 0, whose RNG and generator states it holds too)."""
        mine = {"rng": capture_rng()}
        if self.ranks.distributed:
            mine["task"] = getattr(self.task, "rank_state_dict", dict)()
        every_rank = self.ranks.gather(mine)
        if not self.ranks.is_writer:
            return None
        state = {"format": 1, "step": self.task.step, "epoch": self.task.step / self.task.steps_per_epoch,
                 "task": self.task.state_dict(), "rng": mine["rng"], "loop": self.state}
        if self.ranks.distributed:
            state.update(world_size=self.ranks.world_size, ranks=every_rank)
        return state

    def _check_finite(self) -> None:
        """Raise Diverged if a loss since the last check was NaN or infinite (one device sync); with
        several processes, on every rank if on any (the earliest such step)."""
        if self.losses is not None:
            bad = self.losses.first_nonfinite()
            if self.ranks.distributed:
                bad_steps = [step - 1 for step in self.ranks.per_rank(0 if bad is None else bad + 1) if step]
                bad = min(bad_steps, default=None)
            if bad is not None:
                raise Diverged(bad, "loss")

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, *, epoch_end=False, final=False, metric=None, wait=False) -> bool:
        """Snapshot now, write in the background; with wait=True return whether the write succeeded.

        Never saves a state whose losses were non-finite: the check comes first (DESIGN: no checkpoint
        of a diverged run), and the writer refuses non-finite weights too."""
        self._check_finite()
        ok = self.finish_write(block=True)
        self.writer.submit(self.checkpoint_state(), step=self.task.step,
                           epoch=self.task.step / self.task.steps_per_epoch,
                           epoch_end=epoch_end, final=final, metric=metric)
        self._last_save = (time.monotonic(), self.task.step)
        if wait:
            return self.finish_write(block=True)
        return ok

    def finish_write(self, block: bool) -> bool:
        """Collect the background write: False if it failed (reported once per kind of failure)."""
        if block:
            self.writer.wait()
        entry, error = self.writer.collect()
        if isinstance(error, NonFiniteCheckpoint):
            raise Diverged(error.step, "weights")
        if error is not None:
            self.last_write_error = error
            last = self.last_checkpoint["step"]
            kept = (f"the previous checkpoint (step {last}) is intact" if last is not None
                    else "no checkpoint of this run is committed yet")
            self.failures.failed("checkpoint", error, self.task.step,
                                 f"checkpoint write failed: {describe(error)}; {kept}; training goes on and "
                                 "tries again at the next save")
            return False
        if entry is not None:
            self.last_write_error = None
            self.failures.succeeded("checkpoint", entry["step"])
            self.last_checkpoint = {"step": entry["step"], "time": entry["time"]}
            self.run.event("checkpoint", entry["step"], file=entry["file"], size=entry["size"],
                           seconds=round(entry["seconds"], 4), final=entry["final"])
        return True

    def _checkpoint_due(self) -> bool:
        last_time, last_step = self._last_save
        every_steps, every_seconds = self.loop.checkpoint_every_steps, self.loop.checkpoint_every_seconds
        return bool((every_steps and self.task.step - last_step >= every_steps)
                    or (every_seconds and time.monotonic() - last_time >= every_seconds))

    def _boundary(self) -> bool:
        """At a step boundary: agree on a stop (self.agreed_stop) and on whether a save is due (returned).
        One all-reduce of world-size integers with several processes; nothing to agree on with one."""
        code = SIGNAL_CODES.get(self.stop.first, 0)
        if self.ranks.is_writer and self._checkpoint_due():
            code += SAVE_DUE
        codes = self.ranks.per_rank(code)
        received = {rank: SIGNAL_NAMES[c % SAVE_DUE] for rank, c in enumerate(codes) if c % SAVE_DUE}
        if received:
            self.stop_ranks = received
            self.agreed_stop = SIGNAL_NAMES[max(c % SAVE_DUE for c in codes)]
        return codes[0] >= SAVE_DUE

    # -- status --------------------------------------------------------------------------------
    def write_status(self, state: str, **extra) -> None:
        history = self.state["history"]
        remaining = self.task.total_steps - self.task.step
        eta = None
        if self.images_per_sec and state == "running":
            eta = remaining * self._batch_images / self.images_per_sec
        self.run.write_status({
            "run_id": self.run.run_id, "state": state, "model": self.task.describe(),
            "epoch": self.epoch, "epochs": self.epochs, "step": self.task.step,
            "total_steps": self.task.total_steps, "restarts": self.restarts,
            "best_accuracy": self.state["best_metric"],
            "last_accuracy": history[-1].get(self.primary_metric) if history else None,
            "images_per_sec": self.images_per_sec, "eta_seconds": eta,
            "last_checkpoint_step": self.last_checkpoint["step"],
            "last_checkpoint_time": self.last_checkpoint["time"],
            "heartbeat": time.time(), "started": self.started, "host": socket.gethostname(),
            "pid": os.getpid(), "slurm_job_id": slurm_job_id(), "world_size": self.ranks.world_size,
            "startup_seconds": (self.startup or {}).get("seconds"),
            "status_every_seconds": self.loop.status_every_seconds, **extra})
        self._last_status = time.monotonic()

    # -- the loop ------------------------------------------------------------------------------
    def run_to_end(self) -> Outcome:
        self._last_save = (time.monotonic(), self.task.step)
        self._batch_images = 0
        self.step_file.write(self.task.step)
        self.write_status("running")
        self.watchdog.start()
        try:
            return self._train()
        except Diverged as diverged:
            return self._diverged(diverged)
        except OUT_OF_MEMORY as error:
            return self._out_of_memory(error)
        except Exception as error:
            if self.ranks.distributed and is_peer_failure(error):
                return self._peer_lost(error)
            raise
        finally:
            self.watchdog.stop()

    def _train(self) -> Outcome:
        task, spe = self.task, self.task.steps_per_epoch
        window = self._new_window()
        if task.step % spe:
            self.reporter.start_epoch(self.epoch + 1, self.epochs, task.step % spe, spe)
        while task.step < task.total_steps:
            self.watchdog.stepped(task.step)
            if self._boundary():  # rank 0's cadence asks for a save
                self.save()
            if self.agreed_stop:
                break
            if task.step % spe == 0:
                window = self._new_window()
                self.reporter.start_epoch(self.epoch + 1, self.epochs, 0, spe)
            out = task.train_step()
            self.step_file.write(task.step)
            if self.startup is None:
                self._first_step_done()
            if self.losses is not None:
                self.losses.add(task.step, out["loss"])
            self._accumulate(window, out)
            self.finish_write(block=False)
            if task.step % spe == 0:
                self._end_epoch(window)
            if time.monotonic() - self._last_status >= self.loop.status_every_seconds:
                self.write_status("running")
        self.reporter.close()
        if task.step < task.total_steps:
            return self._stop()
        return self._finish()

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

    def _record_hang(self, idle: float) -> None:
        """From the watchdog's thread, while the loop hangs: what the run's files say about it."""
        message = (f"hung: no training step for {idle:.1f} s after step {self.task.step} (--hang-timeout-seconds "
                   f"{self.loop.hang_timeout_seconds:g}); the trainer exited {EXIT_HUNG}; {self._kept()}")
        self.run.event("hang", self.task.step, idle_seconds=round(idle, 1), message=message)
        self.write_status("failed", error=message)

    def _new_window(self) -> dict:
        return {"loss": 0.0, "correct": 0, "images": 0, "steps": 0, "start": time.perf_counter(),
                "shown": 0.0}

    def _accumulate(self, window: dict, out: dict) -> None:
        # tensors are summed lazily (no device sync per step); .item() only when shown
        window["loss"] = window["loss"] + out["loss"].detach() * out["images"] \
            if isinstance(out["loss"], torch.Tensor) else window["loss"] + out["loss"] * out["images"]
        window["correct"] = window["correct"] + out["correct"]
        window["images"] += out["images"]
        window["steps"] += 1
        self._batch_images = out["images"]
        window["lr"] = out.get("lr")  # the rate this epoch's last step used (the scheduler has moved on)
        now = time.perf_counter()
        if now - window["shown"] >= 0.5:
            window["shown"] = now
            if not self.ranks.distributed:  # with several, only where all ranks check at once (epoch end, save)
                self._check_finite()  # the display syncs anyway
            loss, acc = self._window_means(window)
            rate = window["images"] * self.ranks.world_size / max(now - window["start"], 1e-9)
            self.images_per_sec = rate
            info = f"loss {loss:.4f} acc {100 * acc:.2f}% lr {out.get('lr', math.nan):.4g} {rate:.0f} img/s"
            spe = self.task.steps_per_epoch
            self.reporter.step(self.epoch + (self.task.step % spe > 0), self.epochs,
                               self.task.step % spe or spe, spe, info)

    @staticmethod
    def _window_means(window: dict) -> tuple[float, float]:
        n = max(window["images"], 1)
        return float(window["loss"]) / n, float(window["correct"]) / n

    def _end_epoch(self, window: dict) -> None:
        self._check_finite()  # before evaluating: at most one epoch passes after a first non-finite loss
        seconds = time.perf_counter() - window["start"]
        self.state["train_seconds"] += seconds
        if self.ranks.distributed:  # every rank trained on its shard: the epoch's figures are the sums
            loss_sum, correct, images = self.ranks.sum([float(window["loss"]), float(window["correct"]),
                                                        window["images"]])
            window.update(loss=loss_sum, correct=correct, images=int(images))
        loss, acc = self._window_means(window)
        self.images_per_sec = window["images"] / max(seconds, 1e-9)
        record = {"epoch": self.epoch, "step": self.task.step, "train_loss": loss, "train_accuracy": acc,
                  "lr": window.get("lr"),
                  "images_per_sec": self.images_per_sec, "epoch_seconds": seconds, "time": time.time()}
        metric = None
        if self.epoch % self.loop.eval_every_epochs == 0 or self.task.step >= self.task.total_steps:
            started = time.perf_counter()
            record.update(self.task.evaluate())
            record["eval_seconds"] = time.perf_counter() - started
            metric = record.get(self.primary_metric)
            if metric is not None and (self.state["best_metric"] is None or metric > self.state["best_metric"]):
                self.state["best_metric"] = metric
        self.state["history"].append(record)
        self.run.write_metrics(self.state["history"])
        shown = readable_fields(record, skip=("time", "epoch", "step"))
        self.reporter.end_epoch(f"epoch {self.epoch}/{self.epochs} step {self.task.step} {shown}")
        if self.task.step < self.task.total_steps:  # the last epoch is saved as the final checkpoint
            self.save(epoch_end=True, metric=metric)
        self.write_status("running")

    def _kept(self) -> str:
        last = self.last_checkpoint["step"]
        return f"the last committed checkpoint (step {last}) is intact" if last is not None else \
            "no checkpoint of this run is committed"

    def _not_saved(self) -> str:
        return f"{describe(self.last_write_error) if self.last_write_error else 'write failed'}; {self._kept()}"

    def _stop(self) -> Outcome:
        signal_name = self.agreed_stop
        by_rank = {"ranks": {str(rank): name for rank, name in self.stop_ranks.items()}} \
            if self.ranks.distributed else {}
        self.run.event("signal", self.task.step, signal=signal_name, **by_rank)
        self.reporter.message(f"{signal_name} received: saving at step {self.task.step} and stopping")
        ok = self._save_if_needed()
        self.write_status("stopped", stop_signal=signal_name)
        self.run.event("stop", self.task.step, signal=signal_name, checkpoint_ok=ok)
        message = None if ok else f"stopped at step {self.task.step} without its checkpoint: {self._not_saved()}"
        return Outcome(finished=False, step=self.task.step, signal=signal_name, checkpoint_ok=ok, message=message)

    def _save_if_needed(self) -> bool:
        """Rank 0 knows whether this step is saved already; every rank learns whether the save succeeded."""
        ok = self.finish_write(block=True)
        if self.ranks.broadcast(self.last_checkpoint["step"] == self.task.step and ok):
            return True
        return self.ranks.broadcast(self.save(wait=True))

    def _finish(self) -> Outcome:
        self._check_finite()
        final = self.task.final_metrics()
        self.state["final_metrics"] = final
        history = self.state["history"]
        # An earlier write that failed is reported here, but it must not keep the final checkpoint from
        # being written: the disk may have room again.
        self.finish_write(block=True)
        ok = self.ranks.broadcast(self.save(epoch_end=True, final=True,
                                            metric=history[-1].get(self.primary_metric) if history else None,
                                            wait=True))
        message = None if ok else f"the final checkpoint could not be written: {self._not_saved()}"
        self.write_status("completed" if ok else "failed", **final, **({"error": message} if message else {}))
        self.run.event("finish" if ok else "error", self.task.step, **final,
                       **({"message": message} if message else {}))
        if not ok:
            return Outcome(finished=True, step=self.task.step, checkpoint_ok=False, extra=final, message=message)
        shown = ", ".join(f"{k} {readable(k, v)}" for k, v in final.items())
        best = self.state["best_metric"]
        best_text = f", best {self.primary_metric} {readable(self.primary_metric, best)}" if best is not None else ""
        self.reporter.message(f"finished run {self.run.run_id}: step {self.task.step}{best_text}, {shown}")
        return Outcome(finished=True, step=self.task.step, extra=final)

    # -- stops that must not be retried as they are ---------------------------------------------
    def _collect_quietly(self) -> None:
        """Let an in-flight write finish and commit (its state was checked finite when it was taken)."""
        self.reporter.close()
        self.writer.wait()
        try:
            self.finish_write(block=False)
        except Diverged:
            pass  # the writer refused non-finite weights: nothing was committed

    def _diverged(self, diverged: Diverged) -> Outcome:
        self._collect_quietly()
        last = self.last_checkpoint["step"]
        where = f"the last checkpoint (step {last}) has finite weights" if last is not None else \
            "no checkpoint of this run was committed"
        hint = "lower the learning rate or add warm-up, and start a new run (or pass --allow-nonfinite to train on)"
        message = f"diverged: {diverged} (stopped at step {self.task.step}); {where}; {hint}"
        self.run.event("diverged", self.task.step, first_nonfinite_step=diverged.step, what=diverged.what,
                       last_checkpoint_step=last, message=message)
        self.write_status("failed", error=f"diverged: {diverged}", hint=f"{where}; {hint}")
        return Outcome(finished=False, step=self.task.step, checkpoint_ok=False, failure="diverged", message=message)

    def _peer_lost(self, error: BaseException) -> Outcome:
        """Another rank died or stopped answering (a collective failed or timed out): stop, keep what is
        committed. The job's supervisor (or the user) restarts the run from its last checkpoint."""
        self._collect_quietly()
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        message = (f"rank {self.ranks.rank} lost the other processes at step {self.task.step} "
                   f"({type(error).__name__}: {first_line[:300]}); {self._kept()}")
        self.run.event("error", self.task.step, message=message, cause="peer-lost", rank=self.ranks.rank)
        self.write_status("failed", error=message)
        return Outcome(finished=False, step=self.task.step, checkpoint_ok=False, failure="peer-lost", message=message)

    def _out_of_memory(self, error: BaseException) -> Outcome:
        step = self.task.step  # the step that ran out is step + 1; it changed nothing that is saved
        batch = getattr(self.task, "batch_size", None) or self._batch_images or "?"
        self._collect_quietly()
        kept = self._kept()
        message = (f"out of memory in step {step + 1} with batch size {batch}: {out_of_memory_text(error)}; "
                   f"lower the batch size or use a device with more memory; {kept}")
        self.run.event("error", step, message=message, cause="out-of-memory")
        self.write_status("failed", error=message,
                          hint=f"{kept}; resume it where the device has more memory, or start a new run with a "
                               "smaller batch size")
        return Outcome(finished=False, step=step, checkpoint_ok=False, failure="out-of-memory", message=message)
