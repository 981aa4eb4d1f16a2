"""The dev cluster behaves like the real clusters the toolkit targets: two nodes with their own
hostnames and addresses (unless SLURM_DEV_NODES=1), jobs run, requeued jobs rerun with
SLURM_RESTART_COUNT, preemption sends USR2 then TERM and requeues, and --gres=gpu:1 is accepted.
About 40 s in all (GraceTime dominates).
The `slurm_env` fixture comes from tests/conftest.py (tests/slurm_cluster.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests.slurm_cluster import NODES, job_info, node_cpus, node_names, sbatch, scancel, wait_for, wait_job_state

pytestmark = pytest.mark.slurm

# Appends "<event> <restart count> <epoch seconds>" lines; traps only run between
# commands, hence `sleep & wait` rather than a foreground sleep.
TRAP_JOB = """#!/bin/bash
log="$PWD/events.log"
echo "start ${SLURM_RESTART_COUNT:-0} $(date +%s.%N)" >> "$log"
trap 'echo "USR2 ${SLURM_RESTART_COUNT:-0} $(date +%s.%N)" >> "$log"' USR2
trap 'echo "TERM ${SLURM_RESTART_COUNT:-0} $(date +%s.%N)" >> "$log"; exit 0' TERM
while true; do sleep 1 & wait $!; done
"""


def read_events(path):
    if not path.exists():
        return []
    return [(e, int(n), float(t)) for e, n, t in (line.split() for line in path.read_text().splitlines())]


def started(path, count):
    return [t for e, n, t in read_events(path) if e == "start" and n == count]


def srun_lines(args: list[str], env: dict) -> dict[str, str]:
    """`srun -l ARGS` from this host (an allocation of its own): {task: its output line}."""
    done = subprocess.run(["srun", "-l", *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(line.split(": ", 1) for line in done.stdout.strip().splitlines())


@pytest.mark.skipif(NODES < 2, reason="SLURM_DEV_NODES=1: one node")
def test_two_nodes_with_their_own_hostnames_and_addresses(slurm_env):
    assert node_names(slurm_env) == ["node0", "node1"]
    one_per_node = ["-N2", "--ntasks-per-node=1"]
    assert srun_lines([*one_per_node, "hostname"], slurm_env) == {"0": "node0", "1": "node1"}
    # each task's own name resolves to its own node's address, and node1 resolves node0 (the rendezvous)
    resolve = "import socket; print(socket.gethostbyname(socket.gethostname()), socket.gethostbyname('node0'))"
    addresses = srun_lines([*one_per_node, sys.executable, "-c", resolve], slurm_env)
    assert addresses == {"0": "10.77.0.10 10.77.0.10", "1": "10.77.0.11 10.77.0.10"}, addresses
    # torch's MASTER_ADDR under srun (jobs.environment): node0's NodeAddr, on both nodes
    master = "from jobs.environment import JobEnvironment as E; l = E().launch(); print(l.master_addr, l.rank)"
    assert srun_lines([*one_per_node, sys.executable, "-c", master], slurm_env) == {
        "0": "10.77.0.10 0", "1": "10.77.0.10 1"}


def test_wrap_job_runs_and_writes_file(slurm_env, tmp_path):
    job = sbatch(["--wrap", "echo hello from $SLURM_JOB_ID > out.txt"], slurm_env, cwd=tmp_path)
    info = wait_job_state(job, ("COMPLETED", "FAILED", "CANCELLED"), slurm_env, timeout=20)
    assert info["JobState"] == "COMPLETED", info
    assert (tmp_path / "out.txt").read_text().strip() == f"hello from {job}"
    assert (tmp_path / f"slurm-{job}.out").exists()


def test_requeue_reruns_job_with_restart_count(slurm_env, tmp_path):
    (tmp_path / "job.sh").write_text(TRAP_JOB)
    job = sbatch(["job.sh"], slurm_env, cwd=tmp_path)
    try:
        wait_for(lambda: started(tmp_path / "events.log", 0), 20, what="first run")
        t0 = time.time()
        subprocess.run(["scontrol", "requeue", str(job)], env=slurm_env, check=True)
        (t_rerun,) = wait_for(lambda: started(tmp_path / "events.log", 1), 45, what="rerun")
        print(f"requeue -> rerun: {t_rerun - t0:.1f} s")
        info = job_info(job, slurm_env)
        assert info["Restarts"] == "1" and info["JobId"] == str(job)
    finally:
        scancel(job, slurm_env)


def test_urgent_job_preempts_debug_job_with_usr2_then_term(slurm_env, tmp_path):
    part = subprocess.run(
        ["scontrol", "show", "partition", "-o", "debug"], env=slurm_env, capture_output=True, text=True, check=True
    ).stdout
    grace = int(re.search(r"GraceTime=(\d+)", part).group(1))
    (tmp_path / "job.sh").write_text(TRAP_JOB)
    log = tmp_path / "events.log"
    # --signal=B:USR2 is what preempt_send_user_signal sends to the batch shell.
    victim = sbatch(["-p", "debug", "--signal=B:USR2@60", "job.sh"], slurm_env, cwd=tmp_path)
    urgent = None
    try:
        wait_for(lambda: started(log, 0), 20, what="victim start")
        t0 = time.time()
        # every CPU of every node: the victim is preempted wherever it runs
        urgent = sbatch(["-p", "urgent", "-N", str(NODES), "-c", str(node_cpus(slurm_env)), "--wrap", "sleep 1"],
                        slurm_env, cwd=tmp_path)
        wait_for(lambda: started(log, 1), grace + 45, what="victim rerun after preemption")
        events = read_events(log)
        signals = [(e, t) for e, n, t in events if n == 0 and e in ("USR2", "TERM")]
        assert [e for e, _ in signals] == ["USR2", "TERM"], events
        (_, t_usr2), (_, t_term) = signals
        t_rerun = started(log, 1)[0]
        print(
            f"preemption: USR2 +{t_usr2 - t0:.1f} s, TERM +{t_term - t0:.1f} s "
            f"(GraceTime={grace}), rerun +{t_rerun - t0:.1f} s"
        )
        assert t_usr2 - t0 < 5, "USR2 should arrive as soon as the urgent job is scheduled"
        assert grace - 2 < t_term - t_usr2 < grace + 10
        assert job_info(victim, slurm_env)["Restarts"] == "1"
        assert job_info(urgent, slurm_env)["JobState"] == "COMPLETED"
    finally:
        scancel(victim, slurm_env)
        if urgent is not None:
            scancel(urgent, slurm_env)


def test_fake_gpu_gres_is_accepted(slurm_env, tmp_path):
    job = sbatch(["--gres=gpu:1", "--wrap", "echo $CUDA_VISIBLE_DEVICES > gpu.txt"], slurm_env, cwd=tmp_path)
    assert wait_job_state(job, ("COMPLETED", "FAILED"), slurm_env, 20)["JobState"] == "COMPLETED"
    assert (tmp_path / "gpu.txt").read_text().strip() == "0"
    with pytest.raises(RuntimeError, match="configuration is not available"):
        sbatch(["--gres=gpu:3", "--wrap", "true"], slurm_env, cwd=tmp_path)
