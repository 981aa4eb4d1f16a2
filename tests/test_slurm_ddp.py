"""DDP over SLURM tasks on the dev cluster: a 2-task run (gloo, CPU) requeued by its time limit must end with
the weights of an uninterrupted 2-rank run, bit for bit; once through the batch script (sbatch -n 2, srun)
and once through submitit (scripts/submit.py --tasks-per-node 2); and a 2-task job cancelled by scancel,
then resubmitted by resume.py with its 2 tasks, ends with the same weights.

    pytest -m slurm tests/test_slurm_ddp.py -s

The jobs and the local reference run at once. Each job asks for 2 tasks with --overcommit (SBATCH_OVERCOMMIT:
2 tasks on 1 of node0's 2 CPUs), so that the two jobs run side by side. They are paced like the time-limit
runs of test_slurm_e2e.py (its docstring: slow checkpoint writes, >= 63 s of training, so that each run is
requeued at least twice by --time=1 and USR2@20).
"""
from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.slurm_cluster import REPO, TERMINAL, sbatch, scancel, wait_for, wait_job_state
from tests.test_distributed import Ranks as LocalRanks
from tests.test_slurm_e2e import (
    LONG,
    LONG_STEPS,
    WRITE_S,
    base_env,
    explain,
    lost_steps,
    read_events,
    script,
    status_json,
)

pytestmark = pytest.mark.slurm
SUBMITTED: list[int] = []


def job_end(job: int, run_dir, env: dict, runs, t0: float) -> dict:
    info = wait_job_state(job, TERMINAL, env, timeout=420)
    return {"job": job, "run_dir": run_dir, "info": info, "wall": time.monotonic() - t0,
            "final": status_json(runs, run_dir.name, env), "outputs": []}


def drive_sbatch(env: dict, runs, out) -> dict:
    t0 = time.monotonic()
    name = "ddp-sbatch"
    job = sbatch([f"--job-name={name}", "--time=1", "--ntasks=2", "--ntasks-per-node=2", "--cpus-per-task=1",
                  "--gres=gpu:0", "--mem=1G", f"--output={out}/{name}-%j.out", "slurm/train_ddp.sh", *LONG,
                  "--runs-dir", runs], dict(env, SBATCH_SIGNAL="USR2@20"), cwd=REPO)  # USR2 to every task
    SUBMITTED.append(job)
    res = job_end(job, runs / f"{name}-{job}", env, runs, t0)
    res["outputs"] = [out / f"{name}-{job}.out"]
    return res


def drive_submitit(env: dict, runs, out) -> dict:
    t0 = time.monotonic()
    done = script(["scripts/submit.py", *LONG, "--run-id", "ddp-submitit", "--runs-dir", runs, "--time", "1",
                   "--gpus", "0", "--cpus", "1", "--signal-delay", "20", "--tasks-per-node", "2"], env)
    found = re.search(r"as SLURM job (\d+)", done.stdout)
    assert done.returncode == 0 and found, f"submit.py failed: {done.stdout}{done.stderr}"
    job = int(found.group(1))
    SUBMITTED.append(job)
    res = job_end(job, runs / "ddp-submitit", env, runs, t0)
    folder = res["run_dir"] / "submitit" / str(job)
    res["outputs"] = [folder / f"{job}_{task}_log.{kind}" for task in (0, 1) for kind in ("out", "err")]
    return res


def drive_scancel_resume(env: dict, runs, out) -> dict:
    """Unpaced: scancel once the first checkpoint is in, then resume.py resubmits it as a 2-task job."""
    t0 = time.monotonic()
    env = {k: v for k, v in env.items() if k != "JOBS_TEST_SLOW_WRITE_SECONDS"}
    name = "ddp-cancel"
    job = sbatch([f"--job-name={name}", "--time=10", "--ntasks=2", "--ntasks-per-node=2", "--cpus-per-task=1",
                  "--gres=gpu:0", "--mem=1G", f"--output={out}/{name}-%j.out", "slurm/train_ddp.sh", *LONG,
                  "--runs-dir", runs], env, cwd=REPO)
    SUBMITTED.append(job)
    run_dir = runs / f"{name}-{job}"
    wait_for(lambda: [e for e in read_events(run_dir) if e["event"] == "checkpoint"], 180,
             what="the first checkpoint of the run to cancel")
    scancel(job, env)
    cancelled = wait_job_state(job, TERMINAL, env, timeout=120)
    done = script(["scripts/resume.py", "--run-id", run_dir.name, "--runs-dir", runs], env)
    found = re.search(r"as SLURM job (\d+)", done.stdout)
    assert done.returncode == 0 and found, f"resume.py failed: {done.stdout}{done.stderr}"
    new_job = int(found.group(1))
    SUBMITTED.append(new_job)
    res = job_end(new_job, run_dir, env, runs, t0)
    res.update(cancelled=cancelled, outputs=[out / f"{name}-{job}.out", out / f"{name}-{new_job}.out"])
    return res


def reference_digest(root) -> str:
    root.mkdir()
    ranks = LocalRanks(root, ["scripts/train.py", *LONG, "--runs-dir", str(root / "runs"), "--run-id", "ref"],
                       name="ddp-ref")
    assert ranks.wait(timeout=600) == [0, 0], ranks.output()
    return status_json(root / "runs", "ref", dict(os.environ))["model_digest"]


@pytest.fixture(scope="module")
def ddp_phase(slurm_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm_ddp")
    runs, out = root / "runs", root / "out"
    runs.mkdir()
    out.mkdir()
    env = dict(base_env(slurm_env), SBATCH_OVERCOMMIT="1", JOBS_TEST_SLOW_WRITE_SECONDS=str(WRITE_S))
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        futures = {"sbatch": pool.submit(drive_sbatch, env, runs, out),
                   "submitit": pool.submit(drive_submitit, env, runs, out),
                   "scancel": pool.submit(drive_scancel_resume, env, runs, out),
                   "reference": pool.submit(reference_digest, root / "reference")}
        results = {name: future.result() for name, future in futures.items()}
    print(f"\n[slurm-ddp] phase wall {time.monotonic() - started:.1f} s")
    yield results
    for job in SUBMITTED:
        scancel(job, slurm_env)


def check_ddp_run(name: str, res: dict, reference: str, min_requeues: int) -> list[dict]:
    events = read_events(res["run_dir"])
    requeues = [e for e in events if e["event"] == "requeue"]
    res["requeues"] = len(requeues)
    pairs = lost_steps(events)
    print(f"\n[slurm-ddp] {name}: wall {res['wall']:.1f} s, requeues {len(requeues)}, stop/resume steps {pairs}")
    why = explain(res)
    assert res["info"]["JobState"] == "COMPLETED", why
    assert len(requeues) >= min_requeues and all(e["signal"] == "SIGUSR2" for e in requeues), why
    assert not [e for e in events if e["event"] == "error"], why
    starts = [e for e in events if e["event"] in ("start", "resume")]
    assert all(e["world_size"] == 2 and e["launcher"] == "srun" for e in starts), why
    assert all(stop == resumed for stop, resumed in pairs) and len(pairs) == len(requeues), why  # no step lost
    # one save and one requeue per stop: every rank stopped at the same step
    signals = [e for e in events if e["event"] == "signal"]
    assert len(signals) == len(requeues) and all(set(e["ranks"]) <= {"0", "1"} and e["ranks"] for e in signals), why
    assert res["final"]["state"] == "completed" and res["final"]["step"] == LONG_STEPS, res["final"]
    assert res["final"]["world_size"] == 2, res["final"]
    assert res["final"]["model_digest"] == reference, why
    return events


def test_two_srun_tasks_requeued_by_the_time_limit_end_bit_exact(ddp_phase):
    check_ddp_run("sbatch -n 2 (srun)", ddp_phase["sbatch"], ddp_phase["reference"], min_requeues=2)


def test_a_cancelled_two_task_run_resubmitted_by_resume_py_ends_bit_exact(ddp_phase):
    res = ddp_phase["scancel"]
    events = read_events(res["run_dir"])
    why = explain(res)
    print(f"\n[slurm-ddp] scancel + resume.py: wall {res['wall']:.1f} s, stop/resume steps {lost_steps(events)}")
    assert res["cancelled"]["JobState"] == "CANCELLED" and res["info"]["JobState"] == "COMPLETED", why
    stops = [e for e in events if e["event"] == "stop"]
    assert len(stops) == 1 and stops[0]["signal"] == "SIGTERM" and stops[0]["checkpoint_ok"], why
    assert lost_steps(events) == [(stops[0]["step"], stops[0]["step"])], why
    resumed = [e for e in events if e["event"] == "resume"]
    assert resumed and all(e["world_size"] == 2 for e in resumed), why  # resubmitted with its 2 tasks
    assert res["final"]["model_digest"] == ddp_phase["reference"], why


def test_two_submitit_tasks_requeued_end_bit_exact(ddp_phase):
    check_ddp_run("submitit --tasks-per-node 2", ddp_phase["submitit"], ddp_phase["reference"], min_requeues=1)
