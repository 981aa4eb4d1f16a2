"""Sweeps on this machine: scripts/submit.py --sweep checks every task before it writes or submits anything
(--dry-run prints them), and status.py --sweep / report.py --sweep group a sweep's runs, the swept values as
columns. The array itself runs on the dev cluster: tests/slurm/test_sweep_e2e.py."""
import json
import os
import struct

import pytest

from jobs.sweep import sweep_file
from jobs.sweep.grid import parse_axes
from tests.helpers_runs import TINY, call, copy_run, tree_snapshot

pytestmark = pytest.mark.usefixtures("hermetic")
SUBMIT = ["--synthetic", "256", "--batch-size", "32", "--epochs", "2", "--device", "cpu", "--gpus", "0", "--time", "1",
          "--signal-delay", "20"]
HOMEWORK = ["--sweep", "block=standard,bottleneck", "--sweep", "size=3,5,7,9", "--sweep-name", "hw"]


def submit(runs, *args):
    return call("submit", *SUBMIT, "--runs-dir", runs, *args)


def test_a_dry_run_prints_the_eight_tasks_and_writes_nothing(tmp_path):
    code, out, err = submit(tmp_path, *HOMEWORK, "--dry-run")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "sweep hw: 8 tasks (dry run: nothing submitted or written)"
    assert lines[1].split() == ["task", "run", "block", "size"]
    assert lines[2].split() == ["0", "hw-block_standard-size_3", "standard", "3"]
    assert lines[9].split() == ["7", "hw-block_bottleneck-size_9", "bottleneck", "9"]
    assert tree_snapshot(tmp_path) == {}


@pytest.mark.parametrize("args, message", [
    (["--sweep", "width=1,2", "--sweep-name", "x"], "error: --sweep 'width=1,2': unknown key 'width'; sweep one of"),
    (["--sweep", "size=", "--sweep-name", "x"], "error: --sweep 'size=': an empty value"),
    (["--sweep", "size=1", "--sweep", "size=2", "--sweep-name", "x"], "error: --sweep size is given twice"),
    (["--sweep", "size=1,0", "--sweep-name", "x"], "error: --sweep size=0: argument --size: must be a positive"),
    (["--sweep", "block=standard,wide", "--sweep-name", "x"], "error: --sweep block=wide: argument --block: invalid"),
    (["--sweep", "lr=0.1,-1", "--sweep-name", "x"], "error: --sweep lr=-1: lr must be positive, got -1.0"),
    (["--sweep", "seed=0,1", "--sweep-name", "x", "--tasks-per-node", "3", "--gpus", "3"],
     "error: --sweep seed=0: batch size 32 does not divide among 3 processes"),
    (["--sweep", "size=1,2"], "error: --sweep needs --sweep-name NAME"),
    (["--sweep", "size=1,2", "--sweep-name", "x", "--run-id", "y"], "error: --run-id and --sweep exclude each other"),
    (["--sweep", "seed=0,1", "--sweep-name", "x", "--size", "1", "--seed", "3"], "error: --seed is given and swept"),
    (["--size", "1"], "error: --run-id is required (or --sweep KEY=V1,V2,... --sweep-name NAME for a sweep)"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, message):
    code, out, err = submit(tmp_path, *args)
    assert (code, out) == (2, ""), err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert tree_snapshot(tmp_path) == {}


def test_an_existing_sweep_needs_resume_if_exists_and_the_same_grid(tmp_path):
    code, out, err = submit(tmp_path, *HOMEWORK, "--dry-run")
    # the sweep file a submission would have written, as an earlier submit left it (its array gone)
    sweep = sweep_file.build("hw", parse_axes(["block=standard,bottleneck", "size=3,5,7,9"], ["block", "size"]),
                             [*SUBMIT[:6], "--device", "cpu"],
                             lambda p: ["--block", p["block"], "--size", p["size"]], tmp_path)
    sweep_file.write(tmp_path, sweep)
    before = tree_snapshot(tmp_path)
    code, out, err = submit(tmp_path, *HOMEWORK, "--dry-run")
    assert code == 2 and err.startswith("error: sweep 'hw' exists (") and "pass --resume-if-exists" in err, err
    code, out, err = submit(tmp_path, *HOMEWORK, "--resume-if-exists", "--epochs", "3", "--dry-run")
    assert code == 2 and "exists with other values or flags" in err, err
    code, out, err = submit(tmp_path, *HOMEWORK, "--resume-if-exists", "--dry-run")
    assert code == 0 and "sweep hw: 8 tasks" in out, err
    assert tree_snapshot(tmp_path) == before


def test_a_failed_sbatch_leaves_nothing_behind(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"  # an sbatch that refuses, as SLURM does for a partition it does not know
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\n"
                                    "exit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    runs = tmp_path / "runs"
    runs.mkdir()
    code, out, err = submit(runs, "--sweep", "size=1,2", "--sweep-name", "x", "--partition", "nope")
    assert code == 2 and err == "error: sbatch failed: sbatch: error: invalid partition specified: nope\n", err
    assert tree_snapshot(runs) == {}


@pytest.fixture
def sweep_runs(tmp_path, reference):
    """A sweep of three seeds whose first two tasks have run (copies of the reference run, the second cut and
    resumed once) and whose third has not started."""
    sweep = sweep_file.build("s", {"seed": ["0", "1", "2"]}, TINY, lambda p: ["--seed", p["seed"]], tmp_path)
    sweep_file.write(tmp_path, sweep)
    copy_run(reference, tmp_path).rename(tmp_path / "s-seed_0")
    copy_run(reference, tmp_path / "other", cut_at=56).rename(tmp_path / "s-seed_1")
    code, out, err = call("resume", "--run-id", "s-seed_1", "--runs-dir", tmp_path, "--local")
    assert code == 0, err
    return tmp_path


def test_status_sweep_groups_its_runs_pending_ones_too(sweep_runs, reference):
    code, out, err = call("status", "--sweep", "s", "--runs-dir", sweep_runs, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["name"] == "s" and shown["axes"] == {"seed": ["0", "1", "2"]} and shown["array_job_id"] is None
    runs = shown["runs"]
    assert [(r["task"], r["run_id"], r["values"], r["state"]) for r in runs] == [
        (0, "s-seed_0", {"seed": "0"}, "completed"), (1, "s-seed_1", {"seed": "1"}, "completed"),
        (2, "s-seed_2", {"seed": "2"}, "pending")]
    assert [r["restarts"] for r in runs] == [0, 1, 0]
    assert runs[0]["model_digest"] == runs[1]["model_digest"] == reference.digest
    code, out, err = call("status", "--sweep", "s", "--runs-dir", sweep_runs)
    assert code == 0, err
    title, header, *rows = out.splitlines()
    assert title == "sweep s: 3 runs (2 completed, 1 pending); SLURM job array -"
    assert header.split()[:5] == ["task", "run", "seed", "state", "model"]
    assert [row.split()[:4] for row in rows] == [["0", "s-seed_0", "0", "completed"],
                                                ["1", "s-seed_1", "1", "completed"], ["2", "s-seed_2", "2", "pending"]]
    code, out, err = call("status", "--sweep", "t", "--runs-dir", sweep_runs)
    assert (code, err) == (2, f"error: no sweep 't' in {sweep_runs / 'sweeps'}; known sweeps: s\n")


def test_report_sweep_tabulates_its_runs_with_the_swept_values(sweep_runs):
    output = sweep_runs / "sweep.png"
    code, out, err = call("report", "--sweep", "s", "--runs-dir", sweep_runs, "--output", output)
    assert code == 0, err
    assert "not started yet, left out: 1 of the sweep's 3 runs" in err
    header, *rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| ")]
    assert header[:4] == ["run", "seed", "model", "epochs"]
    assert [row[:3] for row in rows] == [["s-seed_0", "0", "resnet-8 standard"], ["s-seed_1", "1", "resnet-8 standard"]]
    assert [row[header.index("restarts")] for row in rows] == ["0", "1"]
    data = output.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1500, 420)
    code, out, err = call("report", "--sweep", "s", "s-seed_0", "--runs-dir", sweep_runs)
    assert code == 2 and "one of them" in err, err
