"""A sweep's runs (scripts/status.py --sweep): one row per task of its job array, the swept values as columns;
a task whose run does not exist yet is "pending" while SLURM still holds it (no torch)."""
from pathlib import Path

from jobs.readable import readable
from jobs.run.run_dir import RunDir
from jobs.slurm.array import array_tasks
from jobs.status.summary import collect
from jobs.status.table import plain_table, share

STATS = ("state", "model", "epoch", "step", "best", "last", "restarts", "goodput", "SLURM job")
RIGHT = {"task", "step", "restarts", "goodput"}


def _not_started(task: dict, slurm: dict | None, array_job_id: str | None) -> dict:
    """The row of a task without a run directory: queued, starting (SLURM runs it, its trainer has not made
    the run yet), or gone from the queue before it started."""
    queued = (slurm or {}).get(task["index"])
    state = "pending" if slurm is None or queued else "never started"
    if queued and queued["state"] in ("RUNNING", "CONFIGURING", "COMPLETING"):
        state = "starting"
    return {"run_id": task["run_id"], "state": state, "model": None, "epoch": 0, "epochs": None, "step": 0,
            "primary_metric": None, "best_metric": None, "last_metric": None, "restarts": 0, "goodput": None,
            "final_metrics": {}, "model_digest": None,
            "slurm_job_id": f"{array_job_id}_{task['index']}" if array_job_id else None,
            "slurm_state": (queued or {}).get("state")}


def sweep_runs(runs_dir: Path, sweep: dict) -> list[dict]:
    """Every task's run summary (jobs.status.summary) with its `task` index and swept `values`."""
    started = [t["run_id"] for t in sweep["tasks"] if RunDir(runs_dir, t["run_id"]).exists()]
    summaries = {run["run_id"]: run for run in collect(runs_dir, started)} if started else {}
    array_job_id = sweep.get("array_job_id")
    slurm = array_tasks(array_job_id) if array_job_id and len(summaries) < len(sweep["tasks"]) else None
    return [{"task": t["index"], "values": t["values"],
             **(summaries.get(t["run_id"]) or _not_started(t, slurm, array_job_id))} for t in sweep["tasks"]]


def sweep_table(sweep: dict, runs: list[dict]) -> str:
    """The runs as plain aligned text: task, run, one column per swept key, then where each run stands."""
    keys = list(sweep["axes"])
    rows = []
    for run in runs:
        metric = run["primary_metric"] or ""
        job = run["slurm_job_id"] or "-"
        if run.get("slurm_state"):
            job += f" {run['slurm_state']}"
        rows.append([str(run["task"]), run["run_id"], *(run["values"][k] for k in keys), run["state"],
                     run["model"] or "-", f"{run['epoch']}/{run['epochs'] or '-'}", str(run["step"]),
                     readable(metric, run["best_metric"]), readable(metric, run["last_metric"]),
                     str(run["restarts"]), share(run.get("goodput")), job])
    states = [run["state"] for run in runs]
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    title = f"sweep {sweep['name']}: {len(runs)} runs ({counts}); SLURM job array {sweep.get('array_job_id') or '-'}"
    return title + "\n" + plain_table(["task", "run", *keys, *STATS], rows, RIGHT)
