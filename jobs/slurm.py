"""What the toolkit asks of SLURM: is a job still there, requeue this job, how often was it restarted."""
import os
import shutil
import subprocess

from jobs.run_dir import RunDir, slurm_job_id

COMMAND_TIMEOUT = 30  # seconds; a hung controller must not keep a job past its KillWait


def available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


def restart_count() -> int | None:
    value = os.environ.get("SLURM_RESTART_COUNT")
    return int(value) if value and value.isdigit() else None


def task_id() -> str:
    """This task's number in its job step ("0" outside a step, or for the only task): with several tasks
    (srun, submitit), task 0 decides about requeues and the others follow."""
    return os.environ.get("SLURM_PROCID", "0")


def _run(args: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None


def job_state(job_id: str) -> str | None:
    """PENDING, RUNNING, ... while the job is known to squeue; "" once it left the queue; None if unknown."""
    if not shutil.which("squeue"):
        return None
    done = _run(["squeue", "-h", "-j", str(job_id), "-o", "%T"])
    if done is None:
        return None
    if done.returncode != 0:
        return "" if "Invalid job id" in done.stderr else None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""


def job_is_running(job_id: str) -> bool | None:
    """True while queued or running (any state squeue still lists), False once gone, None if unknown."""
    state = job_state(job_id)
    return None if state is None else state != "" and state not in ("COMPLETED", "CANCELLED", "FAILED",
                                                                      "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def requeue_job(job: str) -> str | None:
    """`scontrol requeue JOB`: None if SLURM took it, else why not."""
    done = _run(["scontrol", "requeue", job])
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
    requeue_refusal() says why not. A failure is logged; the checkpoint is safe."""
    job = slurm_job_id()
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


def queue() -> dict[str, dict] | None:
    """{job id: {"state", "time_left"}} of every job squeue lists; None where squeue cannot answer."""
    if not shutil.which("squeue"):
        return None
    done = _run(["squeue", "-h", "-a", "-t", "all", "-o", "%i|%T|%L"])
    if done is None or done.returncode != 0:
        return None
    jobs = {}
    for line in done.stdout.splitlines():
        job_id, state, time_left = (line.split("|") + ["", ""])[:3]
        state = state.strip()
        # squeue keeps showing the last time left of a job that has ended: meaningless there
        jobs[job_id.strip()] = {"state": state, "time_left": time_left.strip() if state in ("RUNNING", "PENDING",
                                                                                              "SUSPENDED") else None}
    return jobs


def accounting(job_ids: list[str]) -> dict[str, dict]:
    """{job id: {"state", "time_left": None}} from sacct, for jobs squeue no longer lists (after
    MinJobAge). {} without accounting ("Slurm accounting storage is disabled") or without sacct."""
    if not job_ids or not shutil.which("sacct"):
        return {}
    done = _run(["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", "JobID,State"])
    if done is None or done.returncode != 0:
        return {}
    return parse_sacct(done.stdout)


def parse_sacct(text: str) -> dict[str, dict]:
    jobs = {}
    for line in text.splitlines():
        job_id, _, state = line.partition("|")
        if job_id.strip().isdigit() and state.strip():
            # "CANCELLED by 0" -> CANCELLED; a requeued job has one line per job id (-X), its latest state
            jobs[job_id.strip()] = {"state": state.split()[0], "time_left": None}
    return jobs


def _show_job(job_id: str) -> dict:
    done = _run(["scontrol", "show", "job", "-o", str(job_id)])
    if done is None or done.returncode != 0:
        return {}
    fields = {}
    for token in done.stdout.split():
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


def _signal_spec(script: str | None) -> str:
    """The job's --signal: SBATCH_SIGNAL if set, else the script's #SBATCH line (scontrol does not show it)."""
    if os.environ.get("SBATCH_SIGNAL"):
        return os.environ["SBATCH_SIGNAL"]
    try:
        for line in open(script or "", encoding="utf-8", errors="replace"):
            if line.startswith("#SBATCH") and "--signal=" in line:
                return line.split("--signal=", 1)[1].split()[0]
    except OSError:
        pass
    return DEFAULT_SIGNAL


DEFAULT_SIGNAL = "B:USR2@120"


def job_record() -> dict | None:
    """The parameters of the SLURM job this process runs in, enough for resume.py to resubmit the run."""
    job_id = slurm_job_id()
    if not job_id:
        return None
    info = _show_job(job_id)

    def field(key):
        value = info.get(key)
        return None if value in (None, "", "(null)", "N/A", "0") else value

    gres = field("TresPerNode")
    return {"slurm_job_id": job_id, "partition": field("Partition"), "time_limit": field("TimeLimit"),
            "cpus": field("NumCPUs"), "mem": field("MinMemoryNode"), "account": field("Account"),
            "qos": field("QOS"), "gres": gres.replace("gres:", "", 1) if gres else None,
            "output": field("StdOut"), "workdir": field("WorkDir"), "job_name": field("JobName"),
            "signal": _signal_spec(field("Command")),
            # a job of several tasks (DDP): resubmitted with as many, each with its CPUs, under srun
            "ntasks": field("NumTasks"), "nodes": field("NumNodes"), "cpus_per_task": field("CPUs/Task")}


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
    done = _run(args + ["--wrap", f"trap '' USR2; {command}"])
    if done is None or done.returncode != 0:
        raise RuntimeError("sbatch failed: " + (done.stderr.strip() if done is not None else "timed out"))
    return done.stdout.strip().split(";")[0]
