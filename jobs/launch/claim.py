"""Claiming a run directory (rank 0): create it, take its lock, freeze its config. Nothing is written before
the lock is held, and a config that cannot be written leaves the old one intact."""
import time

from jobs.errors import UserError
from jobs.exit_codes import EXIT_LOCKED, EXIT_WRITE_FAILED
from jobs.launch.plan import Plan
from jobs.run.lock import RunLock, RunLocked
from jobs.run.run_dir import RunDir
from jobs.train.progress import Reporter


def claim(run: RunDir, lock: RunLock, plan: Plan, job: dict | None, world_size: int, force: bool,
          reporter: Reporter) -> int | None:
    """Take the run; an exit code if refused. `job`: the SLURM job's record, so that resume.py can resubmit it."""
    frozen = plan.frozen
    config = {"workload": plan.workload_ref, "task": plan.task_config, "loop": plan.loop,
              "job": job or (frozen or {}).get("job"), "world_size": world_size,
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
