"""Helpers for end-to-end tests against the dev cluster (slurm/dev-cluster): two nodes, node0 and
node1, each in its own network namespace, or one (SLURM_DEV_NODES=1, on loopback).

`ensure_cluster()` starts the cluster with start.sh when `sinfo` does not answer, or answers with
another number of nodes than SLURM_DEV_NODES (default 2), and returns an environment with
SLURM_CONF set; the session fixture `slurm_env` wraps it.
The cluster is left running afterwards (start.sh is idempotent; stop.sh stops it).
Without root or SLURM binaries the tests are skipped, unless SLURM_TESTS_REQUIRED=1
(CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
DEV_CLUSTER = REPO / "slurm" / "dev-cluster"
DEV_DIR = Path(os.environ.get("SLURM_DEV_DIR", "/tmp/slurm-dev"))
# JobState values of a job that has ended (for good or until a requeue)
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE")
BINARIES = ("sinfo", "sbatch", "squeue", "scontrol", "scancel", "slurmctld", "slurmd", "munged")


def _run(cmd: list[str], env: dict[str, str], timeout: float = 30, **kw: Any):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kw)


NODES = int(os.environ.get("SLURM_DEV_NODES", "2"))  # what start.sh starts


def _answers(env: dict[str, str]) -> bool:
    # A client retries a dead controller for ~9 s: look for the process first.
    try:
        pid = (DEV_DIR / "slurmctld.pid").read_text().strip()
        if Path(f"/proc/{pid}/comm").read_text().strip() != "slurmctld":
            return False
    except OSError:
        return False
    try:
        done = _run(["sinfo", "-h", "-N", "-o", "%N"], env, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and len(set(done.stdout.split())) == NODES


def _unavailable(reason: str):
    if os.environ.get("SLURM_TESTS_REQUIRED") == "1":
        pytest.fail(f"SLURM_TESTS_REQUIRED=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def ensure_cluster() -> dict[str, str]:
    """Return os.environ + SLURM_CONF of a running dev cluster, starting it if needed."""
    env = dict(os.environ, SLURM_CONF=str(DEV_DIR / "slurm.conf"))
    env.setdefault("SLURM_DEV_DIR", str(DEV_DIR))
    if _answers(env):
        return env
    missing = [b for b in BINARIES if not (shutil.which(b) or Path("/usr/sbin", b).exists())]
    if missing:
        _unavailable(f"SLURM not installed (missing {', '.join(missing)}); run slurm/dev-cluster/install.sh as root")
    if os.geteuid() != 0:
        _unavailable("dev cluster not running and starting it needs root: sudo slurm/dev-cluster/start.sh")
    proc = _run(["bash", str(DEV_CLUSTER / "start.sh")], env, timeout=120)
    if proc.returncode != 0 or not _answers(env):
        pytest.fail(
            f"slurm/dev-cluster/start.sh failed (rc={proc.returncode}):\n{proc.stdout}{proc.stderr}", pytrace=False
        )
    return env


@pytest.fixture(scope="session")
def slurm_env() -> dict[str, str]:
    """Environment (with SLURM_CONF) for subprocesses talking to the dev cluster."""
    return ensure_cluster()


def sbatch(args: list[str], env: dict[str, str], cwd: str | os.PathLike | None = None) -> int:
    """Submit a job (`sbatch --parsable ARGS`) and return its job id."""
    proc = _run(["sbatch", "--parsable", *map(str, args)], env, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch {' '.join(map(str, args))} failed: {proc.stderr.strip()}")
    return int(proc.stdout.strip().split(";")[0])


def squeue_state(job_id: int, env: dict[str, str]) -> str | None:
    """PENDING/RUNNING/COMPLETING...; None once the job has left the queue (finished)."""
    proc = _run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], env)
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


_KEY = re.compile(r"^[A-Za-z][\w/:]*=")


def job_info(job_id: int, env: dict[str, str]) -> dict[str, str]:
    """`scontrol show job -o` as a dict (JobState, Restarts, RunTime, ExitCode, StdOut...).

    Finished jobs stay visible for MinJobAge (600 s). Values stay strings; a value with
    spaces (Command=..., Reason=...) is rejoined. Empty dict if the job is unknown.
    """
    proc = _run(["scontrol", "show", "job", "-o", str(job_id)], env)
    if proc.returncode != 0:
        return {}
    info: dict[str, str] = {}
    key = None
    for token in proc.stdout.strip().split(" "):
        if _KEY.match(token):
            key, _, value = token.partition("=")
            info[key] = value
        elif key is not None and token:
            info[key] += " " + token
    return info


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_job_state(
    job_id: int, states: str | tuple[str, ...], env: dict[str, str], timeout: float = 30
) -> dict[str, str]:
    """Wait until JobState is one of `states`; return job_info. Error shows the last info."""
    states = (states,) if isinstance(states, str) else states
    last: dict[str, str] = {}

    def reached():
        nonlocal last
        last = job_info(job_id, env)
        return last if last.get("JobState") in states else None

    try:
        return wait_for(reached, timeout, what=f"job {job_id} in {states}")
    except TimeoutError as e:
        raise TimeoutError(
            f"{e}; last: JobState={last.get('JobState')} Reason={last.get('Reason')} Restarts={last.get('Restarts')}"
        ) from None


def scancel(job_id: int, env: dict[str, str]) -> None:
    """Cancel a job; no error if it already ended."""
    _run(["scancel", str(job_id)], env)


def node_cpus(env: dict[str, str]) -> int:
    """The CPUs of one node (every node has as many)."""
    return int(_run(["sinfo", "-h", "-N", "-o", "%c"], env).stdout.split()[0])


def node_names(env: dict[str, str]) -> list[str]:
    """The cluster's nodes, sorted: ["node0", "node1"] (["node0"] with SLURM_DEV_NODES=1)."""
    return sorted(set(_run(["sinfo", "-h", "-N", "-o", "%N"], env).stdout.split()))
