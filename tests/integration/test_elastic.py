"""A run resumed with another number of processes (jobs/launch/elastic.py): real ranks (gloo on the CPU), killed
with real SIGKILLs, resumed with 3, then 2, then 3 processes.

The workload (tests/sample_log_task.py) logs the samples each rank trains at each step. From the run's resume
events the test knows which steps of each start were kept (those before the step the next start resumed from),
and checks that across the changes every kept step trained exactly its global batch of the epoch's one
permutation, in the ranks' order, with the schedule's rate of that step: no sample skipped or seen twice. A
resume with the same number of processes stays bit-exact (tests/integration/test_distributed.py).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from jobs.data.sampler import ResumableBatchSampler
from jobs.testing import KILL_AT_STEP_ENV
from tests.helpers_runs import events, final_digest, status_of
from tests.integration.test_distributed import env_for, free_port
from tests.sample_log_task import BATCH, SAMPLES

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
EPOCHS, STEPS_PER_EPOCH = 4, SAMPLES // BATCH
STEPS = EPOCHS * STEPS_PER_EPOCH
LOOP = ["--checkpoint-every-steps", "3"]


def single_process_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JOBS_TEST_", "RANK", "WORLD_SIZE"))}
    return dict(env, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def launch(tmp: Path, args: list[str], world: int, name: str, kill: dict[int, int] | None = None) -> list[int]:
    """`world` ranks of scripts/<args>; rank r SIGKILLs itself after step kill[r]. Their exit codes."""
    port, logs, procs = free_port(), [], []
    for rank in range(world):
        env = dict(env_for(rank, world, port), PYTHONPATH=str(REPO))  # the workload lives in tests/
        if kill and rank in kill:
            env[KILL_AT_STEP_ENV] = str(kill[rank])
        logs.append(tmp / f"{name}-rank{rank}.log")
        procs.append(subprocess.Popen([PY, *args], cwd=REPO, env=env, stdout=open(logs[-1], "w"),
                                      stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=180) for p in procs]
    launch.output = "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs)
    return codes


def trained_by_start(logs: Path) -> dict[int, dict[int, list[dict]]]:
    """{the step a start trained from: {rank: its lines}}: each process's log begins at its start's step."""
    starts: dict[int, dict[int, list[dict]]] = {}
    for path in sorted(logs.glob("rank*-pid*.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        if lines:
            starts.setdefault(lines[0]["step"], {})[lines[0]["rank"]] = lines
    return starts


def reference_rates() -> list[float]:
    """The rate of every step of an uninterrupted run: the workload's SGD and StepLR alone."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.8)
    rates = []
    for _ in range(STEPS):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_three_then_two_then_three_ranks_train_every_sample_of_every_epoch_exactly_once(tmp_path):
    runs, logs, run_dir = tmp_path / "runs", tmp_path / "logs", tmp_path / "runs" / "elastic"
    logs.mkdir()
    config = json.dumps({"epochs": EPOCHS, "log_dir": str(logs)})
    first = ["scripts/run.py", "--workload", "tests.sample_log_task:WORKLOAD", "--config", config,
             "--runs-dir", str(runs), "--run-id", "elastic", *LOOP]
    resume = ["scripts/resume.py", "--local", "--runs-dir", str(runs), "--run-id", "elastic"]

    assert launch(tmp_path, first, 3, "three", kill={1: 11}) == [1, -signal.SIGKILL, 1], launch.output
    assert launch(tmp_path, resume, 2, "two", kill={0: 21}) == [-signal.SIGKILL, 1], launch.output
    assert launch(tmp_path, resume, 3, "three-again") == [0, 0, 0], launch.output
    assert "not bit-exact" in launch.output  # rank 0 says so

    resumes = events(run_dir, "resume")
    assert [e["resized"] for e in resumes] == [{"from": 3, "to": 2, "bit_exact": False},
                                               {"from": 2, "to": 3, "bit_exact": False}], resumes
    resumed_at = [e["step"] for e in resumes]
    assert resumed_at[0] <= 11 and resumed_at[1] <= 21, resumed_at
    starts = trained_by_start(logs)
    assert sorted(starts) == [0, *resumed_at], sorted(starts)
    assert [len(starts[s]) for s in sorted(starts)] == [3, 2, 3]
    # the steps recomputed after each SIGKILL were trained by the dead start too: its lines go past the resume
    assert max(line["step"] for line in starts[0][0]) == 10 > resumed_at[0] - 1
    assert max(line["step"] for line in starts[resumed_at[0]][1]) == 20 > resumed_at[1] - 1

    # what each start kept: its steps before the next start's first
    bounds = [0, *resumed_at, STEPS]
    sampler = ResumableBatchSampler(SAMPLES, BATCH, seed=0)
    rates = reference_rates()
    kept_steps, seen = [], {epoch: [] for epoch in range(EPOCHS)}
    for begin, end in zip(bounds, bounds[1:], strict=False):
        ranks = starts[begin]
        by_step = {rank: {line["step"]: line for line in lines} for rank, lines in ranks.items()}
        for step in range(begin, end):
            epoch, position = divmod(step, STEPS_PER_EPOCH)
            sampler.seek(epoch, position)
            global_batch = next(iter(sampler))
            trained = [i for rank in sorted(ranks) for i in by_step[rank][step]["indices"]]
            assert trained == global_batch, (step, trained, global_batch)  # the same batch, in the ranks' order
            assert {by_step[rank][step]["lr"] for rank in ranks} == {rates[step]}, step  # the schedule goes on
            kept_steps.append(step)
            seen[epoch] += trained
    assert kept_steps == list(range(STEPS))
    for epoch, indices in seen.items():
        assert sorted(indices) == list(range(SAMPLES)), epoch  # every sample once, none twice

    status = status_of(runs, "elastic")
    assert status["world_sizes"] == [3, 2, 3] and status["bit_exact"] is False, status
    assert status["step"] == STEPS and status["state"] == "completed", status
    assert final_digest(run_dir)


def test_a_task_with_rank_state_but_no_reseed_is_refused_another_number(tmp_path):
    runs, run_dir = tmp_path / "runs", tmp_path / "runs" / "fixed"
    first = subprocess.run([PY, "scripts/run.py", "--workload", "tests.broken_workloads:RANK_STATE_WORKLOAD",
                            "--config", '{"epochs": 1}', "--runs-dir", str(runs), "--run-id", "fixed"],
                           cwd=REPO, env=single_process_env(), capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    resume = ["scripts/resume.py", "--local", "--runs-dir", str(runs), "--run-id", "fixed", "--epochs", "2"]
    assert launch(tmp_path, resume, 2, "fixed") == [2, 2], launch.output
    assert "keeps per-rank state (rank_state_dict) but has no reseed_rank(seed)" in launch.output, launch.output
    assert "Traceback" not in launch.output
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name in before}
    assert after == before  # nothing rewritten
