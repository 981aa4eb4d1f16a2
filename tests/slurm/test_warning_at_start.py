"""A SLURM warning (USR2) sent the moment a job starts must not kill it.

Preemption sends USR2 at once, so it can reach a job whose batch shell has not yet exec'd the supervisor,
or whose trainer has not yet installed its handler. USR2's default action kills the process, and a job
killed by a signal before SLURM requeues it ends FAILED (ExitCode 0:12), its run never continued. The
batch scripts start with `trap '' USR2` (without it, 3 of 3 jobs FAILED 0:12 with the signal 0, 50 and
100 ms after the job turned RUNNING); the ignore survives the execs into the supervisor, which holds a
warning back until the trainer can catch it.

The SLURM test sends the signal the moment the job's batch step ignores USR2 (or already catches it,
once the supervisor is in): the earliest instant a batch script can protect itself. Before that, no
script can: a USR2 that lands while SLURM starts the shell kills it before its first line runs. Measured
on the dev cluster with a two-line script (`trap '' USR2; sleep 2`) signalled as soon as squeue said
RUNNING: 2 of 20 jobs FAILED 0:12 (slurmd: "task 0 died by signal: 12", 14 ms after the launch). SLURM
sends `--signal` warnings from the controller's periodic check, not in that instant; a run whose job did
die there is continued with scripts/resume.py. That each script's ignore reaches the supervisor is
checked without SLURM, exactly, by the first test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.slurm_cluster import REPO, TERMINAL, job_info, sbatch, scancel, squeue_state, wait_for, wait_job_state

TINY = ["--synthetic", "600", "--size", "1", "--epochs", "1", "--batch-size", "64", "--device", "cpu"]


USR2_BIT = 1 << (12 - 1)  # SigIgn/SigCgt in /proc/PID/status are masks with bit n-1 for signal n


def batch_step_handles_usr2(job: int, env: dict) -> bool:
    """Whether a process of the job's batch step ignores USR2 (its `trap '' USR2` has run) or catches it
    (the supervisor has replaced it). The dev cluster's nodes share this machine's processes and files:
    `scontrol listpids` asks the batch host's slurmd (named: none of them is this host's name)."""
    node = job_info(job, env).get("BatchHost")
    if not node:
        return False
    listed = subprocess.run(["scontrol", "listpids", str(job), node], env=env, capture_output=True, text=True,
                            timeout=30)
    for line in listed.stdout.splitlines()[1:]:  # PID JOBID STEPID LOCALID GLOBALID
        fields = line.split()
        if len(fields) < 3 or fields[2] != "batch":
            continue
        try:
            status = Path(f"/proc/{fields[0]}/status").read_text()
        except OSError:
            continue
        masks = [int(row.split()[1], 16) for row in status.splitlines() if row.startswith(("SigIgn:", "SigCgt:"))]
        if any(mask & USR2_BIT for mask in masks):
            return True
    return False


@pytest.mark.parametrize("script", ["train_standard.sh", "train_bottleneck.sh", "train_ddp.sh"])
def test_batch_scripts_hand_an_ignored_usr2_to_the_supervisor(script, tmp_path):
    """The batch script's `trap '' USR2` survives its execs into the supervisor's interpreter, which
    catches it from its first lines on. A stand-in interpreter (exec_train.sh runs $PYTHON) reports it."""
    probe = tmp_path / "python"
    probe.write_text(f"#!/bin/sh\ngrep SigIgn /proc/$$/status > {tmp_path}/sigign\n")
    probe.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PYTHON=str(probe), RUN_ID="probe")
    done = subprocess.run(["bash", f"slurm/{script}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert int((tmp_path / "sigign").read_text().split()[1], 16) & USR2_BIT


@pytest.mark.slurm
def test_usr2_at_job_start_neither_kills_nor_fails_the_job(slurm_env, tmp_path):
    runs = tmp_path / "runs"
    job = sbatch(["--job-name=early", "--time=5", "--cpus-per-task=1", "--gres=gpu:0", "--mem=1G",
                  f"--output={tmp_path}/%j.out", "slurm/train_standard.sh", *TINY, "--runs-dir", runs],
                 slurm_env, cwd=REPO)
    try:
        wait_for(lambda: squeue_state(job, slurm_env) == "RUNNING", 60, interval=0.01, what=f"job {job} running")
        wait_for(lambda: batch_step_handles_usr2(job, slurm_env), 60, interval=0.002,
                 what=f"job {job}'s batch shell protected from USR2")
        sent = subprocess.run(["scancel", "--signal=USR2", "--batch", str(job)], env=slurm_env,
                              capture_output=True, text=True, timeout=30)
        assert sent.returncode == 0, sent.stderr
        sent_at = time.monotonic()
        info = wait_job_state(job, TERMINAL, slurm_env, timeout=180)
    finally:
        scancel(job, slurm_env)
    log = next(tmp_path.glob("*.out"), None)
    brief = " ".join(f"{k}={info.get(k)}" for k in ("JobState", "ExitCode", "Reason", "Restarts"))
    why = f"{brief}\n{log.read_text() if log else '(no job output)'}"
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", why
    # the run itself ended: either the warning came before the supervisor's handler (ignored) or it was
    # honoured (a step-boundary save and a requeue), and the run then trained to its end
    status = subprocess.run([sys.executable, "scripts/status.py", "--json", "--runs-dir", runs,
                             "--run-id", f"early-{job}"], cwd=REPO, env=slurm_env, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "completed", status.stdout
    print(f"\n[slurm] USR2 at start: job {job} {info['JobState']} restarts {info['Restarts']} "
          f"({time.monotonic() - sent_at:.1f} s after the signal)")
