"""What status.py shows of a job that SLURM has forgotten but its accounting has not."""
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.slurm_cluster import REPO, sbatch, scancel, squeue_state, wait_for


@pytest.mark.slurm
def test_status_shows_the_final_state_of_a_job_that_left_the_queue(slurm_env, tmp_path):
    """The dev cluster keeps accounting (slurmdbd on MariaDB), as real clusters do: a job that slurmctld has
    forgotten is still known to sacct, and status.py shows it. For this test alone MinJobAge is 2 s, so that
    the cancelled job leaves slurmctld's memory (it purges about every 60 s); then it is 600 s again."""
    env = dict(slurm_env, OMP_NUM_THREADS="1")
    conf = Path(env["SLURM_CONF"])
    original = conf.read_text()
    assert "MinJobAge=600" in original and "accounting_storage/slurmdbd" in original
    runs = tmp_path / "runs"
    trainer = [sys.executable, "scripts/train.py", "--synthetic", "600", "--size", "1", "--batch-size", "32",
               "--epochs", "50", "--device", "cpu", "--run-id", "acct", "--runs-dir", str(runs)]
    try:
        conf.write_text(original.replace("MinJobAge=600", "MinJobAge=2"))
        subprocess.run(["scontrol", "reconfigure"], env=env, check=True, timeout=30)
        job = sbatch(["--time=5", "--cpus-per-task=1", "--gres=gpu:0", f"--output={tmp_path}/acct-%j.out",
                      "--wrap", "exec " + shlex.join([sys.executable, "-m", "jobs.supervise", "--", *trainer])],
                     env, cwd=REPO)
        wait_for(lambda: (runs / "acct" / "status.json").exists(), 120, what="the run's start")
        scancel(job, env)

        def forgotten() -> bool:
            shown = subprocess.run(["scontrol", "show", "job", str(job)], env=env, capture_output=True, text=True)
            return shown.returncode != 0  # "Invalid job id specified": purged from slurmctld
        wait_for(forgotten, 150, what=f"slurmctld to forget job {job}")
    finally:
        conf.write_text(original)
        subprocess.run(["scontrol", "reconfigure"], env=env, check=True, timeout=30)
    assert squeue_state(job, env) is None
    done = subprocess.run([sys.executable, "scripts/status.py", "--runs-dir", str(runs), "--json"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)
    assert run["slurm_job_id"] == str(job) and run["slurm_state"] == "CANCELLED", run  # from sacct alone
    assert run["state"] == "stopped" and "resume.py --run-id acct" in run["hint"], run  # it saved on SIGTERM
