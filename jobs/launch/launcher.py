"""Open a run (new or resumed), hold its lock, train it, and turn the outcome into an exit code.

Launched as several processes (srun, submitit, torchrun: jobs.environment), every rank trains and rank 0 alone
plans, holds the lock and writes; its decisions and errors reach the other ranks."""
from pathlib import Path

from jobs.distributed import process_group
from jobs.distributed.ranks import Ranks
from jobs.goodput.ledger import NoLedger
from jobs.launch.claim import claim
from jobs.launch.elastic import check_resizable
from jobs.launch.plan import NEW, RESUME, RESUME_IF_EXISTS, Plan, check_not_shorter, make_plan
from jobs.launch.restore import announce, restore
from jobs.readable import readable
from jobs.run.lock import RunLock
from jobs.run.run_dir import RunDir, resume_command
from jobs.signals import StopFlag
from jobs.slurm.queries import job_is_running, job_record
from jobs.slurm.requeue import requeue_after_warning
from jobs.train.config import LoopConfig
from jobs.train.outcome import Ending, Outcome, error_line
from jobs.train.progress import Reporter
from jobs.train.startup import StartupClock, use_compile_cache
from jobs.train.trainer import Trainer
from jobs.workload import load_workload

__all__ = ["NEW", "RESUME", "RESUME_IF_EXISTS", "launch"]


def launch(workload_ref: str | None, task_config: dict | None, runs_dir: Path, run_id: str, *, mode: str,
           loop: LoopConfig | None = None, overrides: dict | None = None, force: bool = False,
           job: dict | None = None, reporter: Reporter | None = None, on_stop=None) -> int:
    """Train run `run_id` to the end or to a stop request; returns an exit code (jobs.exit_codes).

    workload_ref/task_config=None (resume.py) mean the run's frozen ones, updated with `overrides`.
    `on_stop(run, outcome, stop_flag)` runs after a signal-stop has been saved (submitit's requeue)."""
    clock = StartupClock()
    ranks = process_group.setup()
    reporter = reporter or Reporter()
    if not ranks.is_writer:
        reporter = Reporter(interactive=False, quiet=True)  # rank 0 speaks for the run
    try:
        run = ranks.on_every_rank(lambda: RunDir(runs_dir, run_id, read_only=not ranks.is_writer))  # a bad run id
        plan = ranks.on_rank0(lambda: make_plan(run, workload_ref, task_config, mode, loop, overrides,
                                                ranks.world_size))
        return _train_run(run, plan, force, job, reporter, on_stop, ranks, clock)
    finally:
        process_group.teardown(ranks)


def _train_run(run: RunDir, plan: Plan, force: bool, job: dict | None, reporter: Reporter, on_stop, ranks: Ranks,
               clock: StartupClock) -> int:
    """Build the task, claim the run, restore it, train it; the exit code."""
    workload, loop = load_workload(plan.workload_ref), LoopConfig(**plan.loop)
    use_compile_cache(run.path.parent)
    # loads data: bad data (on any rank) is a UserError before anything is written
    task = ranks.on_every_rank(lambda: workload.build(plan.task_config))
    clock.mark("build")
    if plan.changes:
        ranks.on_rank0(lambda: check_not_shorter(run, task, plan.changes))
    if plan.resized_from:
        ranks.on_rank0(lambda: check_resizable(task, run.run_id, plan.resized_from, ranks.world_size))
    lock = RunLock(run.path, slurm_job_running=job_is_running, warn=reporter.warn,
                   world_size=ranks.world_size) if ranks.is_writer else None
    # Signals are caught from here on; TERM that SLURM sends after our own requeue finds the flag too.
    with StopFlag() as stop:
        try:
            refused = ranks.on_rank0(lambda: claim(run, lock, plan, job or job_record(), ranks.world_size, force,
                                                   reporter))
            if refused is not None:
                return refused
            loop_state, entry, resized_from = restore(run, task, ranks, reporter)
            ledger = NoLedger()
            if task.step >= task.total_steps:
                outcome = _already_finished(run, task, loop_state, reporter)
            else:
                restarts = announce(run, task, ranks, reporter, plan.exists, plan.changes, entry, plan.loop_changes,
                                    resized_from)
                clock.mark("restore")
                trainer = Trainer(task, run, loop, stop, reporter, getattr(workload, "primary_metric", None),
                                  ranks=ranks, clock=clock, restarts=restarts, loop_state=loop_state,
                                  resumed_from=entry)
                ledger = trainer.ledger
                outcome = trainer.train()
        finally:
            if lock is not None:
                lock.release()
        exit_code = _exit_code(outcome, run, loop, reporter, stop, on_stop, ranks)
        ledger.end(outcome.ending.value)  # its requeue and exit counted: the start's last write
        return exit_code


def _already_finished(run: RunDir, task, loop_state, reporter: Reporter) -> Outcome:
    final = (loop_state.final_metrics if loop_state else None) or {}
    shown = ", ".join(f"{k} {readable(k, v)}" for k, v in final.items())
    reporter.message(f"run {run.run_id} is already finished (step {task.step}/{task.total_steps}"
                     f"{', ' + shown if shown else ''}); pass --epochs N to extend it")
    return Outcome(Ending.ALREADY_FINISHED, task.step, final_metrics=final)


def _exit_code(outcome: Outcome, run: RunDir, loop: LoopConfig, reporter: Reporter, stop: StopFlag, on_stop,
               ranks: Ranks) -> int:
    """The exit code of a training that ended (after the lock is released: a requeued job may start before this
    process has exited); a signal-stop that was saved is requeued or its resume explained."""
    resume = resume_command(run.run_id, run.path.parent)
    line = error_line(outcome, resume)
    if line is not None:
        reporter.warn(line)
    if outcome.ending is Ending.STOPPED and ranks.is_writer:  # rank 0 requeues the job, or says how to continue
        if on_stop is not None:
            on_stop(run, outcome, stop)
        elif not (outcome.signal == "SIGUSR2" and requeue_after_warning(run, outcome, loop.max_requeues, reporter)):
            reporter.message(f"stopped at step {outcome.step}, checkpoint saved; continue with {resume}")
    return outcome.exit_code
