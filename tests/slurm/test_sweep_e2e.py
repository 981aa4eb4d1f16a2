"""A sweep on the dev cluster (slurm/dev-cluster): `scripts/submit.py --sweep` submits one job array of four
tasks under a one-minute limit; each task warns itself, saves, requeues *itself alone* (`scontrol requeue
<array>_<i>`) and continues until its run is done, and ends with the weights of its uninterrupted local
reference (the final checkpoint's model_digest); `status.py --sweep` and `report.py --sweep` show the four.

    flock /tmp/slurm-dev-cluster.lock python -m pytest tests/slurm/test_sweep_e2e.py -s   # -s: walls, requeues

Pacing as in tests/slurm/test_slurm_e2e.py: the checkpoint writes are slowed (JOBS_TEST_SLOW_WRITE_SECONDS,
a save every K steps), so STEPS steps take >= 42 s of training however fast the CPU: longer than the first
job's window (its USR2 comes 10-40 s after it starts), so every task is requeued at least once. The four
references train here at the same time as the array. About 2.6 minutes on a 2-core machine (each task requeued
4-5 times); SLURM's restarts of each task are its own requeues (a requeue of the array would count in all).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers_runs import final_digest
from tests.slurm_cluster import REPO, TERMINAL, job_info, scancel, wait_job_state

pytestmark = pytest.mark.slurm

PY = sys.executable
NAME = "e2e-sweep"
# 1100 synthetic images: 990 to train on, 30 steps of 32 per epoch, 120 steps of a ResNet-8
COMMON = ["--size", "1", "--batch-size", "32", "--device", "cpu", "--synthetic", "1100", "--epochs", "4"]
STEPS = 120
K, WRITE_S = 2, 0.7  # at most K steps per WRITE_S: >= 42 s of training
GRID = ["--sweep", "seed=0,1", "--sweep", "lr=0.1,0.05"]  # four runs of one cost (bottleneck blocks: 1.5x)
SLURM = ["--time", "1", "--signal-delay", "20", "--gpus", "0", "--cpus", "1", "--mem", "1"]
TIMEOUT = 420  # seconds for the array; a healthy one takes 90-150 s


def run(args: list, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PY, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def events(run_dir: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    except FileNotFoundError:
        return []


def explain(run_dir: Path, output: Path) -> str:
    """The run's events but checkpoints, and the end of its task's output: what to read when a check fails."""
    lines = [f"  {e['event']} step {e['step']} job {e['slurm_job_id']} "
             f"{ {k: v for k, v in e.items() if k not in ('time', 'event', 'host', 'pid', 'step', 'slurm_job_id')} }"
             for e in events(run_dir) if e["event"] != "checkpoint"]
    tail = output.read_text().splitlines()[-20:] if output.exists() else ["(no output)"]
    return f"\nevents of {run_dir.name}:\n" + "\n".join(lines) + f"\n--- {output}:\n" + "\n".join(tail)


def lost_steps(run_events: list[dict]) -> list[tuple[int, int]]:
    """(stop step, next resume step) of every stop that was resumed."""
    pairs, stop = [], None
    for e in run_events:
        if e["event"] == "stop":
            stop = e["step"]
        elif e["event"] == "resume" and stop is not None:
            pairs.append((stop, e["step"]))
            stop = None
    return pairs


def reference(task: dict, root: Path, env: dict) -> str:
    """The task's run trained here without interruption: its final model digest."""
    run_id = f"ref-{task['index']}"
    done = run(["scripts/train.py", *COMMON, *task["flags"], "--runs-dir", root, "--run-id", run_id], env)
    assert done.returncode == 0, f"reference {run_id} failed: {done.stdout}{done.stderr}"
    return final_digest(root / run_id)


def test_a_sweep_is_one_array_whose_tasks_requeue_alone_and_end_bit_exact(slurm_env, tmp_path):
    env = {k: v for k, v in slurm_env.items() if not k.startswith(("SBATCH_", "SLURM_JOB", "JOBS_TEST_"))}
    env.update(OMP_NUM_THREADS="1", PYTHON=PY)
    runs, refs = tmp_path / "runs", tmp_path / "refs"
    t0 = time.monotonic()
    done = run(["scripts/submit.py", *COMMON, "--checkpoint-every-steps", K, *GRID, "--sweep-name", NAME,
                "--runs-dir", runs, *SLURM], dict(env, JOBS_TEST_SLOW_WRITE_SECONDS=str(WRITE_S)))
    found = re.search(r"as SLURM job array (\d+)", done.stdout)
    assert done.returncode == 0 and found, f"submit.py failed: {done.stdout}{done.stderr}"
    array = found.group(1)
    try:
        sweep = json.loads((runs / "sweeps" / f"{NAME}.json").read_text())
        assert sweep["array_job_id"] == array and len(sweep["tasks"]) == 4, sweep
        with ThreadPoolExecutor(4) as pool:  # the references train while the array runs
            digests = [pool.submit(reference, task, refs, env) for task in sweep["tasks"]]
            infos = [wait_job_state(f"{array}_{i}", TERMINAL, env, timeout=TIMEOUT) for i in range(4)]
            digests = [d.result(timeout=TIMEOUT) for d in digests]
        wall = time.monotonic() - t0
        # the array's own record: SLURM's restarts per task (a requeue of the whole array would count in all)
        infos = [job_info(f"{array}_{i}", env) or info for i, info in enumerate(infos)]
    finally:
        scancel(int(array), env)
    status = run(["scripts/status.py", "--sweep", NAME, "--runs-dir", runs, "--json"], env)
    assert status.returncode == 0, status.stderr
    summaries = json.loads(status.stdout)["runs"]
    for task, info, summary, digest in zip(sweep["tasks"], infos, summaries, digests, strict=True):
        run_dir, output = runs / task["run_id"], runs / f"slurm-{array}_{task['index']}.out"
        why = explain(run_dir, output)
        run_events = events(run_dir)
        requeues = [e for e in run_events if e["event"] == "requeue"]
        crashes = [e for e in run_events if e["event"] == "crash"]
        print(f"\n[sweep-e2e] task {task['index']} {task['run_id']}: JobState {info.get('JobState')}, "
              f"Restarts {info.get('Restarts')}, requeues {len(requeues)}, crashes {len(crashes)}")
        assert info["JobState"] == "COMPLETED", f"{info.get('JobState')} {info.get('ExitCode')}" + why
        # each task requeued by its own warnings only: as many restarts as its own requeue events
        assert len(requeues) >= 1 and int(info["Restarts"]) == len(requeues), why
        assert all(e.get("signal") == "SIGUSR2" for e in requeues), why
        assert not [e for e in run_events if e["event"] == "error"], why
        assert not crashes, why  # a requeue's TERM that reaches an exiting trainer is no crash (jobs.supervise)
        pairs = lost_steps(run_events)
        assert len(pairs) == len(requeues) and all(stop == resumed for stop, resumed in pairs), why  # none lost
        assert summary["run_id"] == task["run_id"] and summary["values"] == task["values"], summary
        assert summary["state"] == "completed" and summary["step"] == STEPS, summary
        assert summary["restarts"] == len(requeues) and summary["slurm_job_id"] == f"{array}_{task['index']}"
        assert summary["model_digest"] == final_digest(run_dir) == digest, why
    print(f"\n[sweep-e2e] array {array}: 4 tasks completed in {wall:.1f} s")
    table = run(["scripts/status.py", "--sweep", NAME, "--runs-dir", runs], env)
    title, header, *rows = table.stdout.splitlines()
    assert title == f"sweep {NAME}: 4 runs (4 completed); SLURM job array {array}", table.stdout
    assert header.split()[:5] == ["task", "run", "seed", "lr", "state"]
    assert [row.split()[1:5] for row in rows] == [[t["run_id"], *t["values"].values(), "completed"]
                                                  for t in sweep["tasks"]], table.stdout
    report = run(["scripts/report.py", "--sweep", NAME, "--runs-dir", runs, "--output", tmp_path / "sweep.png"], env)
    assert report.returncode == 0, report.stderr
    header, *rows = [line.strip("| ").split(" | ") for line in report.stdout.splitlines() if line.startswith("| ")]
    assert header[:3] == ["run", "seed", "lr"] and len(rows) == 4, report.stdout
    assert [row[:3] for row in rows] == [[t["run_id"], *t["values"].values()] for t in sweep["tasks"]]
    assert all(int(row[header.index("restarts")]) >= 1 for row in rows), report.stdout
    assert (tmp_path / "sweep.png").stat().st_size > 20_000
