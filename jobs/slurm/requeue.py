"""Putting a run's job back in the queue: after a time-limit warning, after a crash, or as a new job (resume.py)."""
from jobs.environment import JobEnvironment
from jobs.run.run_dir import RunDir
from jobs.slurm.queries import DEFAULT_SIGNAL, run_command


def requeue_job(job: str) -> str | None:
    """`scontrol requeue JOB`: None if SLURM took it, else why not."""
    done = run_command(["scontrol", "requeue", job])
    if done is not None and done.returncode == 0:
        return None
    return f"scontrol requeue {job} failed: " + (done.stderr.strip() if done is not None else "timed out")


STALLED_JOBS = 2  # jobs in a row without a step after which a run stops requeuing itself


def requeue_refusal(requeues: list[dict], step: int, max_requeues: int) -> str | None:
    """Why a run stopped at `step` must not requeue itself again (None: it may), given its requeue events.

    Past `max_requeues`; or when the last STALLED_JOBS jobs all made no step (a job that cannot make progress
    would requeue forever). One job without a step is forgiven: under load, a start (several processes
    importing torch) can outlast the window before the next warning."""
    if len(requeues) >= max_requeues:
        return f"requeue cap reached ({len(requeues)} of --max-requeues {max_requeues})"
    if len(requeues) >= STALLED_JOBS and all(e.get("step") == step for e in requeues[-STALLED_JOBS:]):
        return f"no progress in the last {STALLED_JOBS} jobs (still at step {step})"
    return None


def requeue_after_warning(run: RunDir, outcome, max_requeues: int, reporter) -> bool:
    """After a USR2 (time-limit warning) stop was saved: ask SLURM to requeue this job, unless
    requeue_refusal() says why not (inside salloc there is no batch job to requeue). A failure is logged; the
    checkpoint is safe."""
    job = JobEnvironment().batch_job_id
    if not job:
        return False
    requeues = run.events("requeue")
    reason = requeue_refusal(requeues, outcome.step, max_requeues)
    if reason is None:
        reason = requeue_job(job)
        if reason is None:
            run.event("requeue", outcome.step, signal=outcome.signal)
            reporter.message(f"requeued SLURM job {job}; it continues from step {outcome.step}")
            return True
    run.event("error", outcome.step, message=f"not requeued: {reason}")
    reporter.warn(f"warning: not requeued: {reason}")  # the caller then says how to continue
    return False


def resubmit(record: dict, command: str) -> str:
    """sbatch `command` with the recorded job's parameters; returns the new job id."""
    options = {"--partition": record.get("partition"), "--time": record.get("time_limit"),
               "--cpus-per-task": record.get("cpus"), "--mem": record.get("mem"), "--account": record.get("account"),
               "--qos": record.get("qos"), "--gres": record.get("gres"), "--output": record.get("output"),
               "--chdir": record.get("workdir"), "--job-name": record.get("job_name"),
               "--signal": record.get("signal") or DEFAULT_SIGNAL}
    tasks = int(record.get("ntasks") or 1)
    if tasks > 1:
        options.update({"--ntasks": tasks, "--nodes": record.get("nodes"),
                        "--cpus-per-task": record.get("cpus_per_task")})
        command = f"exec srun --kill-on-bad-exit=0 {command.removeprefix('exec ')}"
        options["--signal"] = options["--signal"].removeprefix("B:")  # the warning to every task, not srun
    args = ["sbatch", "--parsable", "--requeue", "--open-mode=append"]
    args += [f"{key}={value}" for key, value in options.items() if value]
    # USR2 ignored until the trainer's handler is in (see slurm/train_standard.sh)
    done = run_command(args + ["--wrap", f"trap '' USR2; {command}"])
    if done is None or done.returncode != 0:
        raise RuntimeError("sbatch failed: " + (done.stderr.strip() if done is not None else "timed out"))
    return done.stdout.strip().split(";")[0]
