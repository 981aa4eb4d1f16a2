"""Open a run (new or resumed), hold its lock, and drive the loop to an exit code."""
import time
from pathlib import Path

from jobs import distributed, slurm
from jobs.checkpoint import CheckpointStore
from jobs.distributed import Ranks
from jobs.errors import UserError
from jobs.exit_codes import (
    EXIT_DIVERGED,
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_OUT_OF_MEMORY,
    EXIT_STOPPED,
    EXIT_WRITE_FAILED,
)
from jobs.lock import RunLock, RunLocked
from jobs.loop import LoopConfig, Outcome, Trainer
from jobs.manifest import committed_entries
from jobs.progress import Reporter
from jobs.rng import restore_rng
from jobs.run_dir import RunDir, check_runs_dir, resume_command, unknown_run_message
from jobs.signals import StopFlag
from jobs.startup import StartupClock, use_compile_cache
from jobs.task import load_workload

NEW, RESUME, RESUME_IF_EXISTS = "new", "resume", "resume-if-exists"


def config_changes(frozen: dict, given: dict, safe: frozenset, overrides: set) -> dict:
    """The fields `given` may change; UserError for any other difference."""
    changed = {k for k in frozen.keys() | given.keys() if frozen.get(k) != given.get(k)}
    unsafe = sorted(changed - safe)
    if unsafe:
        details = "; ".join(f"{k}: run has {frozen.get(k)!r}, given {given.get(k)!r}" for k in unsafe)
        raise UserError(f"this config contradicts the run being resumed ({details}). Resume it with its own "
                        "config (scripts/resume.py --run-id ID) or start a new run id")
    unasked = sorted(changed - set(overrides))
    if unasked:
        details = "; ".join(f"{k}: run has {frozen.get(k)!r}, given {given.get(k)!r}" for k in unasked)
        flags = " ".join(f"--override {k}" for k in unasked)
        raise UserError(f"this config changes the run being resumed ({details}); pass {flags} to allow it")
    return {k: given.get(k) for k in sorted(changed)}


def _check_not_shorter(run: RunDir, task, changes: dict) -> None:
    """A change (e.g. fewer epochs) must not end the run before the steps it has already trained."""
    trained = max((e["step"] for e in committed_entries(run.path)), default=0)
    if trained > task.total_steps:
        details = "; ".join(f"{k} {v!r}" for k, v in changes.items())
        raise UserError(f"run {run.run_id!r} has already trained {trained} steps, more than the {task.total_steps} "
                        f"that {details} gives; ask for at least as much as it has done")


def launch(workload_ref: str | None, task_config: dict | None, runs_dir: Path, run_id: str, *, mode: str,
           loop: LoopConfig | None = None, overrides: dict | None = None, force: bool = False,
           job: dict | None = None, reporter: Reporter | None = None, on_stop=None) -> int:
    """Train run `run_id` to the end or to a stop request; returns an exit code (jobs.exit_codes).

    workload_ref/task_config=None (resume.py) mean the run's frozen ones, updated with `overrides`.
    `on_stop(run, outcome, stop_flag)` runs after a signal-stop has been saved (SLURM requeue).
    Launched as several processes (srun, submitit, torchrun: jobs.distributed), every rank trains and
    rank 0 alone decides, holds the lock and writes; its decisions and errors reach the other ranks."""
    clock = StartupClock()
    ranks = distributed.setup()
    reporter = reporter or Reporter()
    if not ranks.is_writer:
        reporter = Reporter(interactive=False, quiet=True)  # rank 0 speaks for the run
    try:
        return _launch(workload_ref, task_config, Path(runs_dir), run_id, mode, loop, overrides, force, job,
                       reporter, on_stop, ranks, clock)
    finally:
        distributed.teardown(ranks)


def on_rank0(ranks: Ranks, decide):
    """`decide()` on rank 0; its result, or its UserError, on every rank."""
    result, error = None, None
    if ranks.is_writer:
        try:
            result = decide()
        except UserError as e:
            error = str(e)
    result, error = ranks.broadcast((result, error))
    if error is not None:
        raise UserError(error, quiet=not ranks.is_writer)
    return result


def on_every_rank(ranks: Ranks, work):
    """`work()` on every rank; a UserError on any rank stops them all (rank 0 says which)."""
    result, error = None, None
    try:
        result = work()
    except UserError as e:
        if not ranks.distributed:
            raise
        error = str(e)
    ranks.all_ok(error)
    return result


def _plan(run: RunDir, workload_ref: str | None, task_config: dict | None, mode: str, loop: LoopConfig | None,
          overrides: dict | None, world_size: int) -> dict:
    """Rank 0: the config to train with, checked against the run being resumed (if any)."""
    check_runs_dir(run.path.parent)
    exists = run.exists()
    if mode == NEW and exists:
        raise UserError(f"run {run.run_id!r} already exists in {run.path.parent}; continue it with "
                        f"`python scripts/resume.py --run-id {run.run_id}` or pass --resume-if-exists")
    if mode == RESUME and not exists:
        raise UserError(unknown_run_message(run.path.parent, run.run_id))
    overrides = dict(overrides or {})
    changes = {}
    frozen = run.read_config() if exists else None
    workload_ref = workload_ref or frozen["workload"]
    workload = load_workload(workload_ref)
    # a workload may fill in the fields a config leaves out (its defaults), and those added since a run was
    # frozen (as that run had them): both sides are completed before they are compared, and frozen whole
    complete = getattr(workload, "complete", lambda config: config)
    task_config = None if task_config is None else complete(task_config)
    if exists:
        trained_by = frozen.get("world_size", 1)
        if trained_by != world_size:
            raise UserError(f"run {run.run_id!r} was trained by {trained_by} process(es) (world size {trained_by}); "
                            f"this launch has {world_size}: resume it with {trained_by} (e.g. srun -n {trained_by} "
                            f"or torchrun --nproc-per-node {trained_by}), or start a new run id")
        frozen["task"] = complete(frozen["task"])
        given = dict(frozen["task"]) if task_config is None else dict(task_config)
        given.update(overrides)
        changes = config_changes(frozen["task"], given, workload.safe_to_change, set(overrides))
        task_config = given
        loop = loop or LoopConfig(**frozen.get("loop", {}))
    loop = loop or LoopConfig()
    workload.validate(task_config)
    return {"workload_ref": workload_ref, "task_config": task_config, "loop": loop.to_dict(), "changes": changes,
            "exists": exists, "frozen": frozen}


def _launch(workload_ref, task_config, runs_dir: Path, run_id: str, mode: str, loop, overrides, force, job,
            reporter: Reporter, on_stop, ranks: Ranks, clock: StartupClock) -> int:
    run = on_every_rank(ranks, lambda: RunDir(runs_dir, run_id, read_only=not ranks.is_writer))  # a bad run id
    plan = on_rank0(ranks, lambda: _plan(run, workload_ref, task_config, mode, loop, overrides, ranks.world_size))
    workload, loop, exists, changes = load_workload(plan["workload_ref"]), LoopConfig(**plan["loop"]), \
        plan["exists"], plan["changes"]
    use_compile_cache(runs_dir)
    # loads data: bad data (on any rank) is a UserError before anything is written
    task = on_every_rank(ranks, lambda: workload.build(plan["task_config"]))
    clock.mark("build")
    if changes:
        on_rank0(ranks, lambda: _check_not_shorter(run, task, changes))

    lock = RunLock(run.path, slurm_job_running=slurm.job_is_running, warn=reporter.warn,
                   world_size=ranks.world_size) if ranks.is_writer else None
    # Signals are caught from here on; TERM that SLURM sends after our own requeue finds the flag too.
    with StopFlag() as stop:
        try:
            refused = on_rank0(ranks, lambda: _take_run(run, lock, force, reporter, plan, job, ranks.world_size))
            if refused is not None:
                return refused
            outcome = _train(run, workload, task, loop, reporter, exists, changes, stop, clock, ranks)
        finally:
            if lock is not None:
                lock.release()
        return _exit_code(outcome, run, runs_dir, loop, reporter, stop, on_stop, ranks)


def _take_run(run: RunDir, lock: RunLock, force: bool, reporter: Reporter, plan: dict, job: dict | None,
              world_size: int) -> int | None:
    """Rank 0: create the run directory, take the lock, write the config. An exit code if refused."""
    frozen = plan["frozen"]
    # inside SLURM, the job's parameters are recorded so that resume.py can resubmit the run
    config = {"workload": plan["workload_ref"], "task": plan["task_config"], "loop": plan["loop"],
              "job": job or slurm.job_record() or (frozen or {}).get("job"), "world_size": world_size,
              "created": (frozen or {}).get("created", time.time())}
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the run directory {run.path}: {e.strerror}") from None
    try:
        broken = lock.acquire(force=force)
    except RunLocked as e:
        reporter.warn(f"error: run {run.run_id!r}: {e}")
        return EXIT_LOCKED
    except OSError as e:  # a read-only or vanished runs directory: the lock file cannot be opened
        raise UserError(f"cannot lock run {run.run_id!r} in {run.path}: {e.strerror}") from None
    if frozen is None or config != frozen:
        try:
            run.create(config)
        except OSError as e:  # nothing trained yet: a clean error, the old config (if any) intact
            lock.release()
            reporter.warn(f"error: cannot write {run.config_file}: {e.strerror}")
            return EXIT_WRITE_FAILED
    # from here on a failed write of events, metrics or status is reported once, not fatal
    failures = run.tolerate_write_failures(reporter.warn)
    if lock.record_error is not None:  # written once, at the start: nothing to retry
        failures.failed("lock record", lock.record_error, message=(
            f"cannot write the lock's holder record ({lock.record_error.strerror}): the lock itself "
            "holds, but another host cannot see who holds this run"))
    if broken:
        run.event("lock-broken", holder=broken, forced=force)
        reporter.warn(f"warning: broke the lock left by pid {broken.get('pid')} on {broken.get('host')}")
    return None


def _exit_code(outcome: Outcome | None, run: RunDir, runs_dir: Path, loop: LoopConfig, reporter: Reporter,
               stop: StopFlag, on_stop, ranks: Ranks) -> int:
    """The exit code of a training that ended (after the lock is released: a requeued job may start
    before this process has exited); a signal-stop that was saved is requeued or its resume explained."""
    if outcome is None or (outcome.finished and outcome.checkpoint_ok):
        return EXIT_OK
    resume = resume_command(run.run_id, runs_dir)
    if outcome.failure == "diverged":
        reporter.warn(f"error: {outcome.message}")
        return EXIT_DIVERGED
    if outcome.failure == "out-of-memory":
        reporter.warn(f"error: {outcome.message}")
        return EXIT_OUT_OF_MEMORY
    if outcome.failure == "peer-lost":
        reporter.warn(f"error: {outcome.message}; continue with {resume}")
        return EXIT_FAILED
    if not outcome.checkpoint_ok:
        reporter.warn(f"error: {outcome.message}; once the disk has room again, continue with {resume}")
        return EXIT_WRITE_FAILED
    if not ranks.is_writer:
        return EXIT_STOPPED  # rank 0 requeues the job, or says how to continue
    if on_stop is not None:
        on_stop(run, outcome, stop)
    elif not (outcome.signal == "SIGUSR2" and slurm.requeue_after_warning(run, outcome, loop.max_requeues,
                                                                         reporter)):
        reporter.message(f"stopped at step {outcome.step}, checkpoint saved; continue with {resume}")
    return EXIT_STOPPED


def _train(run: RunDir, workload, task, loop: LoopConfig, reporter: Reporter, exists: bool, changes: dict,
           stop: StopFlag, clock: StartupClock, ranks: Ranks) -> Outcome | None:
    """Restore the newest good checkpoint and run the loop; None if the run was already finished."""
    store = CheckpointStore(run.path, loop.keep_last, loop.keep_every_epochs, warn=reporter.warn)
    try:
        if ranks.is_writer:
            store.remove_temp_files()
    except OSError:
        pass  # a read-only directory: leftovers stay (readers never take a temp file for a checkpoint)

    def fallback(entry, reason):
        run.event("fallback", entry["step"], file=entry["file"], reason=reason)
        reporter.warn(f"warning: checkpoint {entry['file']} is unusable ({reason}); trying the previous one")

    # rank 0 reads and verifies; every rank gets the same state (then its own RNG and generator states)
    loaded = on_rank0(ranks, lambda: store.load_latest(on_fallback=fallback))
    loop_state, resumed_from = None, None
    if loaded:
        state, resumed_from = loaded
        task.load_state_dict(state["task"])
        mine = state["ranks"][ranks.rank] if "ranks" in state else {"rng": state["rng"]}
        if mine.get("task"):  # what differs between ranks (e.g. each one's augmentation generator)
            task.load_rank_state_dict(mine["task"])
        restore_rng(mine["rng"])  # after building the task: its construction drew from the global RNGs
        loop_state = state["loop"]
        # metrics of epochs whose checkpoint never committed are replaced by the committed history
        run.write_metrics(loop_state["history"])
    if task.step >= task.total_steps:
        final = (loop_state or {}).get("final_metrics", {})
        shown = ", ".join(f"{k} {v:.4f}" for k, v in final.items())
        reporter.message(f"run {run.run_id} is already finished (step {task.step}/{task.total_steps}"
                         f"{', ' + shown if shown else ''}); pass --epochs N to extend it")
        return None
    event = "resume" if exists else "start"
    run.event(event, task.step, changes=changes or None,
              checkpoint=resumed_from["file"] if resumed_from else None,
              slurm_restart_count=slurm.restart_count(),
              **({"world_size": ranks.world_size, "launcher": ranks.launcher} if ranks.distributed else {}))
    restarts = len(run.events("resume"))
    processes = f", {ranks.world_size} processes ({ranks.launcher})" if ranks.distributed else ""
    reporter.message(f"{event} run {run.run_id} ({task.describe()}{processes}) at step {task.step}/{task.total_steps}"
                     f" in {run.path}")
    clock.mark("restore")
    trainer = Trainer(task, run, store, loop, stop, reporter, workload.primary_metric, loop_state, restarts, clock,
                      ranks)
    if resumed_from:
        trainer.last_checkpoint = {"step": resumed_from["step"], "time": resumed_from["time"]}
    try:
        return trainer.run_to_end()
    except BaseException as e:
        trainer.writer.wait()
        run.event("error", task.step, message=f"{type(e).__name__}: {e}")
        trainer.write_status("failed", error=f"{type(e).__name__}: {e}")
        raise

