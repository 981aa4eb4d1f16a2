"""What the toolkit asks of SLURM: is a job still there, what does the queue hold, the parameters of this job.
No torch: status.py, the supervisor and resume.py ask these too."""
import os
import shutil
import subprocess

from jobs.environment import JobEnvironment

COMMAND_TIMEOUT = 30  # seconds; a hung controller must not keep a job past its KillWait
DEFAULT_SIGNAL = "B:USR2@120"  # a job's --signal when neither SBATCH_SIGNAL nor its script says
# the job states in which a job is over (squeue shows them until MinJobAge; sacct after); every other state
# is a job that is still queued, held, running or on its way
ENDED_STATES = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                          "PREEMPTED", "REVOKED", "TIMEOUT"})
QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SPECIAL_EXIT",
                           "CONFIGURING"})


def available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


def ended(state: str | None) -> bool:
    """Whether a job in this state (job_state(): "" once it left the queue) is over; False if unknown (None)."""
    return state is not None and (state == "" or state in ENDED_STATES)


def run_command(args: list[str]) -> subprocess.CompletedProcess | None:
    """A SLURM command's result; None if it could not run or did not answer in time."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None


def job_state(job_id: str) -> str | None:
    """PENDING, RUNNING, ... while the job is known to squeue; "" once it left the queue; None if unknown."""
    if not shutil.which("squeue"):
        return None
    done = run_command(["squeue", "-h", "-j", str(job_id), "-o", "%T"])
    if done is None:
        return None
    if done.returncode != 0:
        return "" if "Invalid job id" in done.stderr else None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""


def job_is_running(job_id: str) -> bool | None:
    """True while queued or running (any state squeue lists but an ended one), False once over, None if unknown."""
    state = job_state(job_id)
    return None if state is None else not ended(state)


def queue() -> dict[str, dict] | None:
    """{job id: {"state", "time_left"}} of every job squeue lists; None where squeue cannot answer."""
    if not shutil.which("squeue"):
        return None
    done = run_command(["squeue", "-h", "-a", "-t", "all", "-o", "%i|%T|%L"])
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
    done = run_command(["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", "JobID,State"])
    if done is None or done.returncode != 0:
        return {}
    return parse_sacct(done.stdout)


def parse_sacct(text: str) -> dict[str, dict]:
    jobs = {}
    for line in text.splitlines():
        job_id, _, state = line.partition("|")
        if job_id.strip().replace("_", "", 1).isdigit() and state.strip():  # "123" or an array task's "123_4"
            # "CANCELLED by 0" -> CANCELLED; a requeued job has one line per job id (-X), its latest state
            jobs[job_id.strip()] = {"state": state.split()[0], "time_left": None}
    return jobs


def _show_job(job_id: str) -> dict:
    done = run_command(["scontrol", "show", "job", "-o", str(job_id)])
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


def job_record() -> dict | None:
    """The parameters of the SLURM job this process runs in, enough for resume.py to resubmit the run."""
    job_id = JobEnvironment().job_id
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


def duration_seconds(text: str | None) -> float | None:
    """A SLURM duration ("30", "10:00", "1:00:00", "2-12:00:00", "2-12") in seconds; None for UNLIMITED or none."""
    try:
        days, _, clock = text.rpartition("-") if "-" in text else ("0", "", text)
        parts = [int(p) for p in clock.split(":")]
        if "-" in text:  # days-hours[:minutes[:seconds]]
            parts += [0] * (3 - len(parts))
        else:  # minutes, minutes:seconds, hours:minutes:seconds
            parts = [0] * (3 - len(parts)) + parts if len(parts) > 1 else [0, parts[0], 0]
        hours, minutes, seconds = parts
        return float(((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds)
    except (TypeError, ValueError):
        return None
