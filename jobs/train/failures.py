"""What ended a training early, turned into its Outcome: the event, the status and the one-line message.
A divergence and running out of memory are not retried as they are; a lost peer is (the supervisor's crash
rules); anything else is a bug or an interrupt, recorded and re-raised with its traceback."""
from jobs.distributed.process_group import is_peer_failure
from jobs.distributed.ranks import Ranks
from jobs.errors import ContractError
from jobs.exit_codes import EXIT_HUNG
from jobs.run.run_dir import RunDir
from jobs.train.checkpointer import Checkpointer
from jobs.train.divergence import Diverged
from jobs.train.memory import OUT_OF_MEMORY, out_of_memory_text
from jobs.train.metrics import Metrics
from jobs.train.outcome import Ending, Outcome, kept
from jobs.train.telemetry import Telemetry
from jobs.workload import Task

DIVERGED_HINT = "lower the learning rate or add warm-up, and start a new run (or pass --allow-nonfinite to train on)"


class Failures:
    def __init__(self, task: Task, run: RunDir, telemetry: Telemetry, checkpointer: Checkpointer, metrics: Metrics,
                 ranks: Ranks):
        self.task, self.run, self.telemetry, self.checkpointer = task, run, telemetry, checkpointer
        self.metrics, self.ranks = metrics, ranks

    def outcome_of(self, error: BaseException) -> Outcome | None:
        """The outcome of an error the loop stops on cleanly; None for one it must not hide."""
        if isinstance(error, Diverged):
            return self._diverged(error)
        if isinstance(error, OUT_OF_MEMORY):
            return self._out_of_memory(error)
        if isinstance(error, ContractError):
            return self._contract(error)
        if isinstance(error, Exception) and self.ranks.distributed and is_peer_failure(error):
            return self._peer_lost(error)
        return None

    def _settle(self) -> str:
        """Let the write in flight commit; what the run still has."""
        self.telemetry.close()
        self.checkpointer.settle()
        return kept(self.checkpointer.last.step)

    def _diverged(self, diverged: Diverged) -> Outcome:
        where = self._settle()
        step = self.task.step
        message = f"diverged: {diverged} (stopped at step {step}); {where}; {DIVERGED_HINT}"
        self.run.event("diverged", step, first_nonfinite_step=diverged.step, what=diverged.what,
                       last_checkpoint_step=self.checkpointer.last.step, message=message)
        self.telemetry.status("failed", error=f"diverged: {diverged}", hint=f"{where}; {DIVERGED_HINT}")
        return Outcome(Ending.DIVERGED, step, message=message)

    def _out_of_memory(self, error: BaseException) -> Outcome:
        step = self.task.step  # the step that ran out is step + 1; it changed nothing that is saved
        last = self.metrics.last_count
        batch = getattr(self.task, "batch_size", None) or (f"{last} {self.metrics.unit}" if last else "?")
        where = self._settle()
        message = (f"out of memory in step {step + 1} with batch size {batch}: {out_of_memory_text(error)}; "
                   f"lower the batch size or use a device with more memory; {where}")
        self.run.event("error", step, message=message, cause="out-of-memory")
        self.telemetry.status("failed", error=message, hint=f"{where}; resume it where the device has more memory, "
                                                            "or start a new run with a smaller batch size")
        return Outcome(Ending.OUT_OF_MEMORY, step, message=message)

    def _contract(self, error: ContractError) -> Outcome:
        where = self._settle()
        step = self.task.step
        message = f"the workload broke the contract at step {step}: {error}; {where}"
        self.run.event("error", step, message=message, cause="contract")
        self.telemetry.status("failed", error=message, hint=f"{where}; fix the workload's code, then resume with: "
                                                            f"python scripts/resume.py --run-id {self.run.run_id}")
        return Outcome(Ending.CONTRACT, step, message=message)

    def _peer_lost(self, error: BaseException) -> Outcome:
        """Another rank died or stopped answering (a collective failed or timed out): stop, keep what is
        committed. The job's supervisor (or the user) restarts the run from its last checkpoint."""
        where = self._settle()
        step = self.task.step
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        message = (f"rank {self.ranks.rank} lost the other processes at step {step} "
                   f"({type(error).__name__}: {first_line[:300]}); {where}")
        self.run.event("error", step, message=message, cause="peer-lost", rank=self.ranks.rank)
        self.telemetry.status("failed", error=message)
        self.ranks.peer_lost = True  # its group is broken: jobs.distributed.process_group leaves it as it is
        return Outcome(Ending.PEER_LOST, step, message=message)

    def crashed(self, error: BaseException) -> None:
        """An error the loop does not handle (a bug, a second Ctrl-C): recorded; the caller re-raises it."""
        self.checkpointer.settle()
        self.run.event("error", self.task.step, message=f"{type(error).__name__}: {error}")
        self.telemetry.status("failed", error=f"{type(error).__name__}: {error}")

    def hung(self, idle: float, seconds: float) -> None:
        """From the watchdog's thread, while the loop hangs: what the run's files say about it."""
        message = (f"hung: no training step for {idle:.1f} s after step {self.task.step} (--hang-timeout-seconds "
                   f"{seconds:g}); the trainer exited {EXIT_HUNG}; {kept(self.checkpointer.last.step)}")
        self.run.event("hang", self.task.step, idle_seconds=round(idle, 1), message=message)
        self.telemetry.status("failed", error=message)
