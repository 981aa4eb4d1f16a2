"""Several processes on one run (jobs/distributed/): real processes, a real gloo process group on the CPU.

The ranks are started the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the
environment), here by the test itself so that it can signal or kill one rank alone; one test goes through
torchrun and its Ctrl-C. A 3-rank run interrupted in each way and resumed must end with the weights of an
uninterrupted 3-rank run, bit for bit (three, not two: with more than two ranks the order in which the
gradients are summed matters, see jobs/distributed/ddp.py's all_reduce_in_model_order). The SLURM launches (srun,
submitit), with two tasks, are in tests/slurm/test_slurm_e2e.py.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from jobs.checkpoint.manifest import committed_entries
from jobs.checkpoint.store import CheckpointStore
from tests.helpers_runs import events, final_digest, logged, status_of

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
# ResNet-8 on 600 synthetic images (540 train): global batch 30 = 10 per rank, 18 steps per epoch, 90 steps
WORLD = 3
RUN = ["--synthetic", "600", "--size", "1", "--batch-size", "30", "--epochs", "5", "--device", "cpu",
       "--checkpoint-every-steps", "3"]
STEPS = 90
TIMEOUT = 10  # seconds a rank waits for a dead peer (JOBS_COLLECTIVE_TIMEOUT_SECONDS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(rank: int, world: int, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JOBS_TEST_"))}
    return dict(env, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port), OMP_NUM_THREADS="1", JOBS_COLLECTIVE_TIMEOUT_SECONDS=str(TIMEOUT))


class Ranks:
    """`world` trainer processes of one run, started at once, stdout/stderr to files."""

    def __init__(self, tmp: Path, script_args: list[str], world: int = WORLD, name: str = "ranks"):
        port = free_port()
        self.logs = [tmp / f"{name}-rank{r}.log" for r in range(world)]
        self.procs = [subprocess.Popen([PY, *script_args], cwd=REPO, env=env_for(r, world, port),
                                       stdout=open(log, "w"), stderr=subprocess.STDOUT)
                      for r, log in enumerate(self.logs)]

    def wait(self, timeout: float = 240) -> list[int]:
        deadline = time.monotonic() + timeout
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(deadline - time.monotonic(), 1)))
            except subprocess.TimeoutExpired:
                for p in self.procs:
                    p.kill()
                pytest.fail(f"ranks still running after {timeout} s:\n{self.output()}")
        return codes

    def output(self) -> str:
        return "\n".join(f"--- rank {r}\n{log.read_text()}" for r, log in enumerate(self.logs))


def train(tmp: Path, runs: Path, run_id: str, world: int = WORLD, extra=()) -> Ranks:
    return Ranks(tmp, ["scripts/train.py", *RUN, "--runs-dir", str(runs), "--run-id", run_id, *extra], world,
                 name=run_id)


def resume(tmp: Path, runs: Path, run_id: str, world: int = WORLD) -> Ranks:
    return Ranks(tmp, ["scripts/resume.py", "--local", "--runs-dir", str(runs), "--run-id", run_id], world,
                 name=f"{run_id}-resume")


def wait_for_checkpoint(run_dir: Path, ranks: Ranks, at_least_step: int = 6, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["step"] >= at_least_step for e in events(run_dir, "checkpoint")):
            return
        if any(p.poll() is not None for p in ranks.procs):
            pytest.fail(f"a rank ended early:\n{ranks.output()}")
        time.sleep(0.05)
    pytest.fail(f"no checkpoint after {timeout} s:\n{ranks.output()}")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted 3-rank run (its directory)."""
    tmp = tmp_path_factory.mktemp("ddp_reference")
    ranks = train(tmp, tmp / "runs", "ref")
    assert ranks.wait() == [0] * WORLD, ranks.output()
    run_dir = tmp / "runs" / "ref"
    start = events(run_dir, "start")[0]
    assert (start["world_size"], start["launcher"]) == (WORLD, "env")
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == WORLD
    return run_dir


@pytest.fixture(scope="module")
def reference(reference_run) -> str:
    """The model digest of the uninterrupted 3-rank run."""
    return final_digest(reference_run)


def test_a_signal_to_one_rank_stops_both_at_one_step_and_resume_is_exact(tmp_path, reference, reference_run):
    runs, run_dir = tmp_path / "runs", tmp_path / "runs" / "term1"
    ranks = train(tmp_path, runs, "term1")
    wait_for_checkpoint(run_dir, ranks)
    ranks.procs[1].send_signal(signal.SIGTERM)  # rank 1 alone
    assert ranks.wait() == [75] * WORLD, ranks.output()
    signals, stops = events(run_dir, "signal"), events(run_dir, "stop")
    assert len(signals) == 1 and len(stops) == 1, events(run_dir)
    assert signals[0]["ranks"] == {"1": "SIGTERM"} and signals[0]["signal"] == "SIGTERM", signals
    stop_step = stops[0]["step"]
    assert 0 < stop_step < STEPS and stops[0]["checkpoint_ok"], stops
    saved = [e for e in committed_entries(run_dir) if e["step"] == stop_step]
    assert len(saved) == 1, committed_entries(run_dir)
    # the checkpoint holds both ranks' RNG and augmentation generator states
    state, _ = CheckpointStore(run_dir, keep_last=3).load_latest()
    assert state["world_size"] == WORLD and len(state["ranks"]) == WORLD
    generators = [r["task"]["augment_generator"] for r in state["ranks"]]
    assert not torch.equal(generators[0], generators[1])  # each rank draws its own crops
    assert torch.equal(generators[0], state["task"]["augment_generator"])

    again = resume(tmp_path, runs, "term1")
    assert again.wait() == [0] * WORLD, again.output()
    assert events(run_dir, "resume")[0]["step"] == stop_step  # zero steps lost
    assert final_digest(run_dir) == reference
    assert logged(run_dir) == logged(reference_run)  # every rank's epoch sums resumed


def test_a_rank_killed_alone_does_not_hang_the_other_and_resume_is_exact(tmp_path, reference, reference_run):
    runs, run_dir = tmp_path / "runs", tmp_path / "runs" / "kill1"
    ranks = train(tmp_path, runs, "kill1")
    wait_for_checkpoint(run_dir, ranks)
    ranks.procs[1].kill()
    killed_at = time.monotonic()
    codes = ranks.wait(timeout=TIMEOUT + 60)
    waited = time.monotonic() - killed_at
    assert codes == [1, -signal.SIGKILL, 1], ranks.output()
    assert waited < TIMEOUT + 30, waited  # bounded by the collective timeout (gloo sees the dead peer sooner)
    error = events(run_dir, "error")[-1]
    assert error["cause"] == "peer-lost" and error["rank"] == 0, error
    assert "lost the other processes" in ranks.logs[0].read_text()
    assert "Traceback" not in ranks.logs[0].read_text(), ranks.output()
    committed = committed_entries(run_dir)[-1]["step"]
    again = resume(tmp_path, runs, "kill1")
    assert again.wait() == [0] * WORLD, again.output()
    assert events(run_dir, "resume")[0]["step"] == committed  # from the last committed checkpoint
    assert final_digest(run_dir) == reference
    assert logged(run_dir) == logged(reference_run)  # every rank's epoch sums resumed


def test_torchrun_ctrl_c_then_resume_is_exact(tmp_path, reference, reference_run):
    runs, run_dir = tmp_path / "runs", tmp_path / "runs" / "tr"
    command = [PY, "-m", "torch.distributed.run", "--nproc-per-node", str(WORLD), "--master-port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JOBS_TEST_"))}
    log = tmp_path / "torchrun.log"
    proc = subprocess.Popen([*command, "scripts/train.py", *RUN, "--runs-dir", str(runs), "--run-id", "tr"],
                            cwd=REPO, env=dict(env, OMP_NUM_THREADS="1"), stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    wait_for = time.monotonic() + 90
    while not any(e["step"] >= 6 for e in events(run_dir, "checkpoint")):
        assert proc.poll() is None and time.monotonic() < wait_for, log.read_text()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
    proc.wait(timeout=60)
    stops = events(run_dir, "stop")
    assert len(stops) == 1 and stops[0]["checkpoint_ok"] and stops[0]["signal"] == "SIGINT", log.read_text()
    assert events(run_dir, "start")[0]["launcher"] == "torchrun"
    # the same command again, as a user re-runs it (torchrun would take resume.py's --local for its own flag)
    done = subprocess.run([*command, "scripts/train.py", *RUN, "--runs-dir", str(runs), "--run-id", "tr",
                           "--resume-if-exists"],
                          cwd=REPO, env=dict(env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert events(run_dir, "resume")[0]["step"] == stops[0]["step"]
    assert final_digest(run_dir) == reference
    assert logged(run_dir) == logged(reference_run)  # every rank's epoch sums resumed


def test_a_finished_three_rank_resnet_run_goes_on_with_one_process(tmp_path, reference_run):
    """The ResNet (its per-rank crops re-seeded through reseed_rank), 3 processes, then one with more epochs."""
    runs, run_dir = tmp_path / "runs", tmp_path / "runs" / "ws"
    shutil.copytree(reference_run, run_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE"))}
    done = subprocess.run([PY, "scripts/resume.py", "--local", "--runs-dir", str(runs), "--run-id", "ws",
                           "--epochs", "6"], cwd=REPO, env=dict(env, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "saved by 3 process(es) and goes on with 1" in done.stderr, done.stderr
    resume = events(run_dir, "resume")[-1]
    assert resume["resized"] == {"from": 3, "to": 1, "bit_exact": False} and resume["step"] == 90, resume
    status = status_of(runs, "ws")
    assert status["world_sizes"] == [3, 1] and status["step"] == 108, status
    assert final_digest(run_dir) != final_digest(reference_run)


def test_a_batch_that_does_not_divide_among_the_ranks_is_one_clear_error(tmp_path):
    ranks = train(tmp_path, tmp_path / "runs", "odd", extra=["--batch-size", "32"])
    assert ranks.wait() == [2] * WORLD, ranks.output()
    rank0, *others = (log.read_text() for log in ranks.logs)
    assert rank0.strip() == "error: batch size 32 does not divide among 3 processes; give a multiple of 3", rank0
    assert all(text.strip() == "" for text in others), others  # rank 0 says it once
    assert not (tmp_path / "runs" / "odd").exists()


# -- the launch environment, parsed -------------------------------------------------------------------


