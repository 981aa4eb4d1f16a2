"""Where every run stands: read from the run directories (and squeue), never from a live process."""
import socket
import time
from pathlib import Path

from jobs.checkpoint.manifest import committed_entries
from jobs.goodput.accounting import account
from jobs.run.processes import alive
from jobs.run.run_dir import RunDir, known_run_ids
from jobs.slurm import queries


def _queued_or_running(slurm_state: str | None) -> str | None:
    """"queued" or "running" while SLURM still has the job; None once it is over, or if unknown."""
    if slurm_state is None or queries.ended(slurm_state):
        return None
    return "queued" if slurm_state in queries.QUEUED_STATES else "running"


def run_state(status: dict, slurm_info: dict | None, now: float) -> tuple[str, str | None]:
    """(state, hint): running / queued / stopped / completed / failed / stale / new."""
    state = status.get("state")
    slurm_state = (slurm_info or {}).get("state")
    resume_hint = "resume with: python scripts/resume.py --run-id {run_id}"
    if state is None:
        return ("queued", None) if slurm_state in queries.QUEUED_STATES else ("new", resume_hint)
    if state in ("completed", "failed"):  # a failed run's own hint (diverged, out of memory) comes first
        return state, None if state == "completed" else status.get("hint") or resume_hint
    if state == "stopped":
        in_slurm = _queued_or_running(slurm_state)
        return (in_slurm, None) if in_slurm else ("stopped", resume_hint)
    # "running" as last written: is its writer still there?
    if status.get("host") == socket.gethostname() and not alive(status.get("pid")):
        return "stopped", "the process died without a final save; " + resume_hint
    if status.get("slurm_job_id") and slurm_info is not None and _queued_or_running(slurm_state) is None:
        return "stopped", f"SLURM job {status['slurm_job_id']} is gone; " + resume_hint
    beat = status.get("heartbeat") or 0
    if now - beat > max(3 * status.get("status_every_seconds", 10), 120):
        return "stale", f"no heartbeat for {now - beat:.0f} s"
    return "running", None


def in_workload_words(status: dict) -> dict:
    """A status file with the generic names; one written before the core spoke the workload's words (the
    ResNet's names: best_accuracy, images_per_sec, test_* flat) is read as it meant."""
    if "best_accuracy" not in status or "primary_metric" in status:
        return status
    return {**status, "primary_metric": "val_accuracy", "best_metric": status["best_accuracy"],
            "last_metric": status.get("last_accuracy"), "unit": "images", "rate": status.get("images_per_sec"),
            "final_metrics": {k: v for k, v in status.items() if k.startswith("test_")}}


def _job_id(status: dict, config: dict) -> str | None:
    """The SLURM job the run ran in last (status), or was submitted as (the job record in its config)."""
    return status.get("slurm_job_id") or (config.get("job") or {}).get("slurm_job_id")


def run_summary(run: RunDir, status: dict, config: dict, queue: dict | None, now: float) -> dict:
    status = in_workload_words(status)
    entries = committed_entries(run.path)
    newest = entries[-1] if entries else {}
    job_id = _job_id(status, config)
    slurm_info = (queue or {}).get(job_id) if job_id else None
    state, hint = run_state(status, slurm_info if queue is not None else None, now)
    task = config.get("task", {})
    resumes = run.events("resume")
    sizes = [e.get("world_size", 1) for e in run.events("start")[:1] + resumes]
    goodput = account(run.path)
    return {
        "run_id": run.run_id, "model": status.get("model"), "state": state,
        "world_size": config.get("world_size", 1),  # the processes that train it (DDP)
        # the numbers of processes it was trained by, in turn: a resume with another number is not bit-exact
        "world_sizes": [n for i, n in enumerate(sizes) if i == 0 or n != sizes[i - 1]] or None,
        "bit_exact": not any("resized" in e for e in resumes),
        "hint": hint.format(run_id=run.run_id) if hint else None,
        "epoch": status.get("epoch", 0), "epochs": status.get("epochs", task.get("epochs")),
        "step": status.get("step", newest.get("step", 0)), "total_steps": status.get("total_steps"),
        "restarts": len(resumes),  # every resume: requeues, resume.py, --resume-if-exists
        "slurm_restart_count": resumes[-1].get("slurm_restart_count") if resumes else None,  # SLURM's own count
        "last_checkpoint_step": newest.get("step"), "last_checkpoint_time": newest.get("time"),
        "checkpoint_age_seconds": now - newest["time"] if newest else None,
        "primary_metric": status.get("primary_metric"), "best_metric": status.get("best_metric"),
        "last_metric": status.get("last_metric"), "final_metrics": status.get("final_metrics") or {},
        "unit": status.get("unit"), "rate": status.get("rate"),
        "eta_seconds": status.get("eta_seconds") if state == "running" else None,
        "slurm_job_id": job_id, "slurm_state": (slurm_info or {}).get("state"),
        "slurm_time_left": (slurm_info or {}).get("time_left"),
        "goodput": (goodput or {}).get("goodput"), "goodput_detail": goodput,  # jobs.goodput.accounting
        "checkpoint_interval_seconds": status.get("checkpoint_interval_seconds"),
        "model_digest": newest.get("model_digest"), "heartbeat": status.get("heartbeat"),
        "path": str(run.path),
    }


def collect(runs_dir: Path, run_ids: list[str] | None = None) -> list[dict]:
    runs = [RunDir(runs_dir, run_id) for run_id in run_ids or known_run_ids(runs_dir)]
    read = [(run, run.read_status(), run.read_config()) for run in runs]
    queue = queries.queue()
    if queue is not None:  # jobs that left squeue: their final state from sacct, where accounting runs
        queue.update(queries.accounting([job for job in (_job_id(status, config) for _, status, config in read)
                                         if job and job not in queue]))
    now = time.time()
    return [run_summary(run, status, config, queue, now) for run, status, config in read]
