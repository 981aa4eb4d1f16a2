"""The training loop: a task's steps from where it stands to its end or to a stop request, saving at step
boundaries only (docs/design.md, invariant 4). The loop reads top to bottom; its components do the rest:
the stop agreement, the checkpointer, the metrics, the telemetry and the failures' outcomes."""
from jobs.checkpoint import layout
from jobs.checkpoint.store import CheckpointStore
from jobs.distributed.ranks import Ranks
from jobs.goodput.ledger import Ledger, NoLedger
from jobs.readable import readable
from jobs.run.run_dir import RunDir
from jobs.signals import StopFlag
from jobs.train.checkpointer import Checkpointer, auto_cadence
from jobs.train.config import LoopConfig
from jobs.train.contract import one_step, plain_metrics, step_figures
from jobs.train.divergence import LossWatch
from jobs.train.failures import Failures
from jobs.train.hang_watchdog import HangWatchdog
from jobs.train.metrics import LoopState, Metrics
from jobs.train.outcome import Ending, Outcome
from jobs.train.progress import Reporter
from jobs.train.startup import StartupClock, seconds_since_process_start
from jobs.train.stop_agreement import StopAgreement
from jobs.train.telemetry import Telemetry
from jobs.workload import Task, unit_of


class Trainer:
    """Runs `task` in run directory `run`, continuing from `loop_state` and the checkpoint `resumed_from` (its
    manifest entry) when it resumes.

    With several processes (`ranks`), every rank runs this same loop in lockstep: the stop agreement makes all
    ranks stop, save and evaluate at the same steps; rank 0 writes, the others only compute."""

    def __init__(self, task: Task, run: RunDir, loop: LoopConfig, stop: StopFlag, reporter: Reporter,
                 primary_metric: str | None, *, ranks: Ranks, clock: StartupClock, restarts: int = 0,
                 loop_state: LoopState | None = None, resumed_from: dict | None = None):
        self.task, self.run, self.ranks, self.reporter = task, run, ranks, reporter
        self.losses = LossWatch(ranks, enabled=loop.stop_on_nonfinite)
        self.metrics = Metrics(loop_state or LoopState(), primary_metric, loop.eval_every_epochs, ranks, unit_of(task))
        store = CheckpointStore(run.path, loop.keep_last, loop.keep_every_epochs, warn=reporter.warn,
                                weights_of=layout.weights, refuse_nonfinite=loop.stop_on_nonfinite)
        cadence = auto_cadence(run, loop) if ranks.is_writer else None  # from the earlier starts (read first)
        self.ledger = Ledger(run.path, resume_step=task.step, world_size=ranks.world_size,
                             cadence=loop.checkpoint_every_seconds, since_start=seconds_since_process_start()) \
            if ranks.is_writer else NoLedger()
        self.checkpointer = Checkpointer(task, self.metrics, run, store, loop, ranks, self.losses,
                                         run.failures or run.tolerate_write_failures(reporter.warn), resumed_from,
                                         self.ledger, cadence)
        self.stop = StopAgreement(stop, ranks)
        self.telemetry = Telemetry(task, run, reporter, self.metrics, self.checkpointer, loop, ranks, restarts, clock)
        self.failures = Failures(task, run, self.telemetry, self.checkpointer, self.metrics, ranks)
        seconds = loop.hang_timeout_seconds
        self.watchdog = HangWatchdog(seconds, lambda idle: self.failures.hung(idle, seconds))

    def train(self) -> Outcome:
        try:
            self.telemetry.start()
            self.watchdog.start()
            return self._loop()
        except BaseException as error:
            outcome = self.failures.outcome_of(error)
            if outcome is None:
                self.failures.crashed(error)
                self.ledger.end("crashed")
                raise
            return outcome
        finally:
            self.watchdog.stop()

    def _loop(self) -> Outcome:
        task, spe = self.task, self.task.steps_per_epoch
        if task.step % spe:  # resumed inside an epoch (whose sums so far the metrics took from the checkpoint)
            self.telemetry.start_epoch()
        while task.step < task.total_steps:
            self.watchdog.stepped(task.step)
            if self.stop.at_boundary(save_due=self.checkpointer.due()):  # rank 0's cadence asks for a save
                self.telemetry.before_save()
                self.checkpointer.save()
            if self.stop.signal:
                return self._stop()
            if task.step % spe == 0:
                self.metrics.start_epoch()
                self.telemetry.start_epoch()
            before = task.step
            out = step_figures(task.train_step())
            one_step(before, task.step)
            self.telemetry.stepped(out)
            self.losses.add(task.step, out["loss"])
            if self.metrics.add(out):  # time to show the figures again
                if not self.ranks.distributed:  # with several, only where all ranks check at once
                    self.losses.check()  # the display syncs anyway
                self.telemetry.show_progress()
            self.checkpointer.collect(block=False)
            if task.step % spe == 0:
                self._end_epoch()
            self.telemetry.heartbeat()
        return self._finish()

    def _end_epoch(self) -> None:
        self.losses.check()  # before evaluating: at most one epoch passes after a first non-finite loss
        with self.ledger.within("evaluation"):
            record = self.metrics.end_epoch(self.task)
        self.telemetry.end_epoch(record)
        epoch = self.task.step // self.task.steps_per_epoch
        epoch_saved = epoch % self.checkpointer.loop.checkpoint_every_epochs == 0
        if self.task.step < self.task.total_steps and epoch_saved:  # the last epoch is saved as the final checkpoint
            self.checkpointer.save(epoch_end=True, metric=record.get(self.metrics.primary_metric or ""))
        self.telemetry.status("running")

    def _stop(self) -> Outcome:
        self.ledger.enter("final")
        self.telemetry.close()
        signal, step = self.stop.signal, self.task.step
        by_rank = {"ranks": {str(rank): name for rank, name in self.stop.by_rank.items()}} \
            if self.ranks.distributed else {}
        self.run.event("signal", step, signal=signal, **by_rank)
        self.reporter.message(f"{signal} received: saving at step {step} and stopping")
        ok = self.checkpointer.save_if_needed()
        self.telemetry.status("stopped", stop_signal=signal)
        self.run.event("stop", step, signal=signal, checkpoint_ok=ok)
        if ok:
            return Outcome(Ending.STOPPED, step, signal=signal)
        return Outcome(Ending.NOT_SAVED, step, signal=signal,
                       message=f"stopped at step {step} without its checkpoint: {self.checkpointer.not_saved()}")

    def _finish(self) -> Outcome:
        self.ledger.enter("final")
        self.telemetry.close()
        self.losses.check()
        step, final = self.task.step, plain_metrics(self.task.final_metrics(), "final_metrics()")
        self.metrics.state.final_metrics = final
        # An earlier write that failed is reported here, but it must not keep the final checkpoint from
        # being written: the disk may have room again.
        self.checkpointer.collect(block=True)
        ok = self.ranks.broadcast(self.checkpointer.save(epoch_end=True, final=True, metric=self.metrics.last_metric,
                                                         wait=True))
        if not ok:
            message = f"the final checkpoint could not be written: {self.checkpointer.not_saved()}"
            self.telemetry.status("failed", final_metrics=final, error=message)
            self.run.event("error", step, **final, message=message)
            return Outcome(Ending.NOT_SAVED, step, message=message, final_metrics=final)
        self.telemetry.status("completed", final_metrics=final)
        self.run.event("finish", step, **final)
        best, name = self.metrics.state.best_metric, self.metrics.primary_metric
        best_text = f", best {name} {readable(name, best)}" if best is not None else ""
        shown = ", ".join(f"{k} {readable(k, v)}" for k, v in final.items())
        self.reporter.message(f"finished run {self.run.run_id}: step {step}{best_text}, {shown}")
        return Outcome(Ending.FINISHED, step, final_metrics=final)
