"""Goodput accounting (docs/runs-and-faults.md, "Goodput") on a run with deaths at known steps: real trainer
processes that SIGKILL themselves after a given step (jobs.testing's JOBS_TEST_KILL_AT_STEP), resumed, then
finished, with the figures read back from the run's own ledgers and shown by status.py and report.py."""
import json
import os
import signal
import time
from pathlib import Path

import pytest

from jobs.goodput.accounting import PARTS, account
from jobs.testing import KILL_AT_STEP_ENV
from tests.helpers_runs import LONG, STEPS_PER_EPOCH, TINY, call, events, spawn, status_of

pytestmark = pytest.mark.usefixtures("hermetic")
DEATHS = (40, 101)  # the steps after which the first two trainers die
EPOCHS = 20  # 140 steps: seconds per process, so that its exit (~20 ms outside its ledger) stays under 1%


def kernel_start_time(pid: int) -> float:
    """When the kernel started process `pid`, on the boot-time clock (what /proc/uptime counts)."""
    jiffies = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    return jiffies / os.sysconf("SC_CLK_TCK")


def test_lost_steps_are_those_between_the_committed_checkpoint_and_each_death(tmp_path):
    runs = tmp_path
    args = (*TINY, "--epochs", str(EPOCHS), "--run-id", "g", "--runs-dir", runs, "--resume-if-exists",
            "--checkpoint-every-steps", "5", "--checkpoint-every-seconds", "off")
    lifetimes = []
    for kill_at in (*DEATHS, None):
        proc = spawn("train.py", *args, env={KILL_AT_STEP_ENV: str(kill_at)} if kill_at else None)
        started = kernel_start_time(proc.pid)
        code = proc.wait()
        lifetimes.append(time.clock_gettime(time.CLOCK_BOOTTIME) - started)
        assert code == (-signal.SIGKILL if kill_at else 0), proc.stderr
    path = runs / "g"
    resumed = [e["step"] for e in events(path, "resume")]  # each from the newest committed checkpoint
    assert len(resumed) == 2 and all(r < d for r, d in zip(resumed, DEATHS, strict=True))
    result = account(path)
    assert result["recomputed_steps"] == sum(d - r for d, r in zip(DEATHS, resumed, strict=True))
    assert result["kept_steps"] == EPOCHS * STEPS_PER_EPOCH
    assert (result["starts"], result["deaths"]) == (3, 2)
    parts = result["parts"]
    assert parts["recomputed"] > 0 and parts["startup"] > 0 and parts["kept"] > 0
    assert sum(parts[p] for p in PARTS) == pytest.approx(result["total_seconds"], rel=1e-9)
    # the parts add up to the processes' lifetimes as measured from outside
    assert result["total_seconds"] == pytest.approx(sum(lifetimes), rel=0.01), lifetimes
    assert result["goodput"] == pytest.approx(parts["kept"] / result["total_seconds"])
    shown = status_of(runs, "g")
    assert shown["goodput"] == pytest.approx(result["goodput"])
    assert shown["goodput_detail"]["recomputed_steps"] == result["recomputed_steps"]
    share = f"{100 * result['goodput']:.1f}%"
    code, table, _ = call("status", "--runs-dir", runs)
    assert code == 0 and "goodput" in table.splitlines()[0] and share in table
    code, detail, _ = call("status", "--runs-dir", runs, "--run-id", "g")
    assert code == 0 and f"{share} of" in detail and "2 deaths" in detail
    code, report, _ = call("report", "g", "--runs-dir", runs, "--output", tmp_path / "r.png")
    assert code == 0 and "| goodput |" in report and share in report


def test_auto_cadence_learns_from_a_death_and_shows_its_interval(tmp_path):
    runs = tmp_path
    args = ("train.py", *LONG, "--run-id", "a", "--runs-dir", runs, "--resume-if-exists")
    assert spawn(*args, env={KILL_AT_STEP_ENV: "20"}).wait() == -signal.SIGKILL
    first = json.loads(next((runs / "a" / "goodput").glob("00001.json")).read_bytes()[64:].decode().split("\n")[0])
    assert first["cadence"] == "auto" and first["save_cost_seconds"] > 0
    assert spawn(*args).wait() == 0
    result = account(runs / "a")
    # after one death in a second or two of process time, the interval is at its floor: 100 x the save cost
    assert result["interval_seconds"] == pytest.approx(max(1.0, 100 * result["save_cost_seconds"]))
    assert status_of(runs, "a")["checkpoint_interval_seconds"] == pytest.approx(result["interval_seconds"])
