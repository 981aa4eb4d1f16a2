"""What the supervisor does once its trainer died abnormally: record a `crash` event and, when the rules
below allow, have the run continue from its last committed checkpoint: inside a SLURM batch job by
requeueing the job, anywhere else (a workstation, tmux, salloc or a bare srun) by running the same trainer
command again in place, as its child again. A trainer that died of a signal the supervisor forwarded to it
(SLURM's TERM reaching a trainer that is exiting after its own requeue, a cancel, a Ctrl-C) is no crash: the
supervisor exits as it did, nothing recorded.

A trainer is retried only when all of these hold:
- it died by a signal, or exited with a code jobs.exit_codes.RETRIED_BY_SUPERVISOR names (1, an unhandled
  error; 6, its checkpoint could not be written; 7, hung); every other code is final;
- no TERM reached the supervisor (in a batch job SLURM is cancelling or preempting it, and decides itself;
  elsewhere, where INT counts too, the user or the system is stopping it);
- outside a batch job, it is the only process of its launch (one task of several cannot be restarted alone);
- the run committed a checkpoint newer than the step this trainer started from (it made progress);
- no earlier crash of the run happened at the same step (a crash that repeats itself);
- fewer than `max_crash_retries` crashes were retried, requeued or in place (the run's loop config,
  --max-crash-retries).
A batch job is one that sbatch started: SLURM_JOB_ID with ENVIRONMENT=BATCH, which sbatch sets for the batch
script and its srun steps inherit (jobs.environment.JobEnvironment.batch_job_id); salloc and srun alone do not.
"""
import argparse
import signal
import sys
from pathlib import Path

from jobs.checkpoint.manifest import committed_step
from jobs.environment import JobEnvironment
from jobs.exit_codes import DEFAULT_MAX_CRASH_RETRIES, EXIT_HUNG
from jobs.run.files import read_json
from jobs.run.run_dir import DEFAULT_RUNS_DIR, RunDir, resume_command
from jobs.slurm.requeue import requeue_job


def run_of(command: list[str]) -> RunDir | None:
    """The run a trainer command works on, from its --run-id and --runs-dir (the jobs.cli flags)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--run-id")
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR)
    known, _ = parser.parse_known_args(command[1:])
    try:
        return RunDir(Path(known.runs_dir), known.run_id) if known.run_id else None
    except Exception:  # a bad run id: the trainer itself says so (exit 2)
        return None


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    if returncode == EXIT_HUNG:
        return f"exit code {returncode}: hung, no step within --hang-timeout-seconds"
    return f"exit code {returncode}"


def crash_decision(*, returncode: int, received: set[str], batch_job: str | None, tasks: int,
                   start_step: int | None, committed: int | None, crash_step: int | None, crashes: list[dict],
                   max_retries: int) -> tuple[bool, str]:
    """(retry?, why): the rules of the module docstring, in order. `received`: the names of the signals the
    supervisor got; `batch_job`: the SLURM batch job to requeue, None to retry in place; `tasks`: the
    processes of the launch the supervisor is part of."""
    if batch_job and "SIGTERM" in received:
        return False, "SLURM is stopping the job (SIGTERM reached it)"
    stopped_by = [name for name in ("SIGTERM", "SIGINT") if name in received]
    if not batch_job and stopped_by:
        return False, f"the supervisor is being stopped ({stopped_by[0]} reached it)"
    if not batch_job and tasks > 1:
        return False, f"it is one of {tasks} tasks outside a batch job, which cannot be restarted alone"
    if start_step is None:
        return False, "it died before its first step"
    if committed is None or committed <= start_step:
        return False, f"no progress: no checkpoint committed since it started at step {start_step}"
    if crash_step is not None and any(c.get("step") == crash_step for c in crashes):
        return False, f"it crashed at step {crash_step} before"
    retried = sum(1 for c in crashes if c.get("requeued") or c.get("retried"))
    if retried >= max_retries:
        return False, f"crash retry cap reached ({retried} of --max-crash-retries {max_retries})"
    return True, f"crash retry {retried + 1} of {max_retries}"


def handle_crash(command: list[str], returncode: int, start_step: int | None, crash_step: int | None,
                 received: set[str], standby: str | None = None) -> tuple[int, bool]:
    """Record the crash of the trainer `command`, and requeue its batch job if the rules allow. (exit code,
    retry in place?): the supervisor runs `command` again when the second is True, else exits with the first.
    `standby`: the state of the supervisor's warm standby (jobs.supervise.standby), which a retry in place uses."""
    exit_code = 128 - returncode if returncode < 0 else returncode  # like a shell: 137 for SIGKILL
    what = describe_exit(returncode)
    environment = JobEnvironment()
    if environment.task_id != "0":
        # one task of several (srun): rank 0's trainer sees the loss, stops, and its supervisor decides
        print(f"supervise: the trainer of task {environment.task_id} ended ({what})", file=sys.stderr)
        return exit_code, False
    run = run_of(command)
    if run is None:
        print(f"supervise: the trainer ended ({what}); no --run-id in its command, so no retry", file=sys.stderr)
        return exit_code, False
    run.tolerate_write_failures(lambda text: print(text, file=sys.stderr, flush=True))
    config = _read_json_quietly(run.config_file)
    max_retries = (config.get("loop") or {}).get("max_crash_retries", DEFAULT_MAX_CRASH_RETRIES)
    committed = committed_step(run.path)
    job = environment.batch_job_id
    retry, reason = crash_decision(
        returncode=returncode, received=received, batch_job=job, tasks=environment.tasks, start_step=start_step,
        committed=committed, crash_step=crash_step, crashes=run.events("crash"), max_retries=max_retries)
    if retry and job:
        failed = requeue_job(job)
        if failed:
            retry, reason = False, failed
    step_text = f"in step {crash_step + 1}" if crash_step is not None else "before its first step"
    run.event("crash", crash_step, exit_status=what, exit_code=exit_code, start_step=start_step,
              committed_step=committed, requeued=bool(retry and job), retried=bool(retry and not job), reason=reason,
              standby=standby if retry and not job else None)
    died = f"supervise: the trainer of run {run.run_id} died {step_text} ({what})"
    if retry and job:
        run.event("requeue", committed, via="crash")
        print(f"{died}; requeued SLURM job {job} ({reason}); it continues from step {committed}",
              file=sys.stderr, flush=True)
    elif retry:
        warm = {"ready": " in its warm standby", "starting": " in its standby (still importing)"}.get(standby, "")
        print(f"{died}; retrying in place{warm} ({reason}); it continues from step {committed}", file=sys.stderr,
              flush=True)
    else:
        print(f"{died}; not {'requeued' if job else 'retried'}: {reason}; continue with "
              f"{resume_command(run.run_id, run.path.parent)}", file=sys.stderr, flush=True)
    return exit_code, bool(retry and not job)


def _read_json_quietly(path: Path) -> dict:
    try:
        return read_json(path) or {}
    except (OSError, ValueError):
        return {}
