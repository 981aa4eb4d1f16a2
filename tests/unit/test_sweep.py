"""Sweeps without SLURM: the grid and its run ids (jobs.sweep.grid), the flags of a task (jobs.sweep.flags), the
sweep file and the task's command line (jobs.sweep.sweep_file, python -m jobs.sweep), the array's task states
from squeue (jobs.slurm.array), and that all of it, what status.py --sweep runs included, imports no torch."""
import argparse
import os
import subprocess
import sys

import pytest

from jobs.errors import UserError
from jobs.slurm.array import array_tasks
from jobs.sweep import sweep_file
from jobs.sweep.flags import StrictParser, shared_flags, value_flags
from jobs.sweep.grid import canonical_key, parse_axes, points, run_id_of, validate_sweep_name
from tests.helpers_runs import REPO

ALLOWED = ["block", "size", "seed", "lr", "nesterov", "fast"]


def test_the_homework_grid_is_eight_points_in_order_with_stable_run_ids():
    axes = parse_axes(["block=standard,bottleneck", "--size=3,5,7,9"], ALLOWED)
    assert axes == {"block": ["standard", "bottleneck"], "size": ["3", "5", "7", "9"]}
    grid = points(axes)
    assert len(grid) == 8 and grid[0] == {"block": "standard", "size": "3"} and grid[4]["block"] == "bottleneck"
    assert [run_id_of("hw", p) for p in grid[:2]] == ["hw-block_standard-size_3", "hw-block_standard-size_5"]
    assert run_id_of("hw", {"lr": "1e-3"}) == "hw-lr_1e-3"
    assert canonical_key("--batch-size") == canonical_key("batch_size") == "batch_size"


@pytest.mark.parametrize("specs, message", [
    (["foo=1,2"], "unknown key 'foo'; sweep one of block, size"),
    (["size="], "an empty value"),
    (["size=3,,5"], "an empty value"),
    (["size=3,3"], "the value '3' is listed twice"),
    (["size=3", "size=5"], "--sweep size is given twice"),
    (["size"], "give KEY=V1,V2,..."),
    (["size=a/b"], "cannot be part of a run id"),
    ([], "give at least one KEY=V1,V2,..."),
])
def test_bad_sweep_specs_are_one_user_error(specs, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_axes(specs, ALLOWED)


def test_names_that_cannot_make_run_ids_are_refused():
    for bad in (None, "", "../x", ".hidden", "a b"):
        with pytest.raises(UserError):
            validate_sweep_name(bad)
    with pytest.raises(UserError, match="69 characters, at most 64"):
        run_id_of("a" * 62, {"size": "1"})


def training() -> argparse.ArgumentParser:
    parser = StrictParser()
    parser.add_argument("--size", type=int)
    parser.add_argument("--nesterov", action=argparse.BooleanOptionalAction)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--data-dir")
    parser.add_argument("--checkpoint-every-seconds")
    return parser


def test_a_swept_value_becomes_the_flags_its_parser_takes():
    parser = training()
    assert value_flags(parser, "size", "3") == ["--size", "3"]
    assert value_flags(parser, "nesterov", "false") == ["--no-nesterov"]
    assert value_flags(parser, "nesterov", "on") == ["--nesterov"]
    assert value_flags(parser, "fast", "true") == ["--fast"] and value_flags(parser, "fast", "no") == []
    with pytest.raises(UserError, match="--nesterov is a switch; sweep it over true,false"):
        value_flags(parser, "nesterov", "maybe")
    with pytest.raises(UserError, match="argument --size: invalid int value: 'x'"):
        parser.parse_args(value_flags(parser, "size", "x"))


def test_the_shared_flags_are_the_training_ones_as_typed():
    argv = ["--time", "1", "--size", "3", "--sweep", "seed=0,1", "--checkpoint-every-seconds=off", "--fast",
            "--data-dir", "rel", "--partition", "debug", "--nesterov"]
    assert shared_flags(argv, training(), {"data_dir"}) == ["--size", "3", "--checkpoint-every-seconds=off",
                                                            "--fast", "--nesterov"]


def test_the_sweep_file_gives_each_task_its_run_id_and_flags(tmp_path):
    axes = parse_axes(["block=standard,bottleneck", "seed=0,1"], ALLOWED)
    sweep = sweep_file.build("s", axes, ["--synthetic", "64"], lambda p: [f"--{k}" for k in p] + list(p.values()),
                             tmp_path)
    path = sweep_file.write(tmp_path, sweep)
    assert path == tmp_path / "sweeps" / "s.json" and sweep_file.known_sweeps(tmp_path) == ["s"]
    read = sweep_file.read(tmp_path, "s")
    assert list(read["axes"]) == ["block", "seed"] and list(read["tasks"][0]) == ["index", "run_id", "values", "flags"]
    assert [t["run_id"] for t in read["tasks"]] == ["s-block_standard-seed_0", "s-block_standard-seed_1",
                                                    "s-block_bottleneck-seed_0", "s-block_bottleneck-seed_1"]
    assert sweep_file.task_command(read, 3) == ["s-block_bottleneck-seed_1", "--synthetic", "64", "--block",
                                                "--seed", "bottleneck", "1", "--runs-dir", str(tmp_path.resolve())]
    with pytest.raises(UserError, match="has tasks 0-3, not 4"):
        sweep_file.task_command(read, 4)
    with pytest.raises(UserError, match="no sweep 'other' in .*; known sweeps: s"):
        sweep_file.read(tmp_path, "other")
    # what slurm/train_sweep.sh reads: NUL-terminated fields
    done = subprocess.run([sys.executable, "-m", "jobs.sweep", str(path), "1"], capture_output=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(b"\0")[:-1] == [s.encode() for s in sweep_file.task_command(read, 1)]
    done = subprocess.run([sys.executable, "-m", "jobs.sweep", str(path), "9"], capture_output=True, cwd=REPO)
    assert done.returncode == 2 and done.stdout == b"" and b"error: sweep 's' has tasks 0-3, not 9" in done.stderr


def test_array_tasks_reads_one_line_per_task_from_squeue(tmp_path, monkeypatch):
    squeue = tmp_path / "squeue"  # the lines `squeue -h -r -j 41 -o %i|%K|%T` prints
    squeue.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'args'}\n"
                      "printf '41_0|0|RUNNING\\n41_3|3|PENDING\\n'\n")
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert array_tasks("41") == {0: {"job_id": "41_0", "state": "RUNNING"}, 3: {"job_id": "41_3", "state": "PENDING"}}
    assert (tmp_path / "args").read_text().split() == ["-h", "-r", "-j", "41", "-o", "%i|%K|%T"]


def test_a_task_without_its_run_is_pending_starting_or_never_started():
    from jobs.status.sweep import _not_started

    task = {"index": 2, "run_id": "s-seed_2"}
    assert _not_started(task, None, None)["state"] == "pending"  # squeue cannot say: it may still come
    assert _not_started(task, {2: {"job_id": "41_2", "state": "PENDING"}}, "41")["state"] == "pending"
    starting = _not_started(task, {2: {"job_id": "41_2", "state": "RUNNING"}}, "41")
    assert (starting["state"], starting["slurm_job_id"], starting["slurm_state"]) == ("starting", "41_2", "RUNNING")
    assert _not_started(task, {0: {"job_id": "41_0", "state": "RUNNING"}}, "41")["state"] == "never started"


def test_what_a_task_and_status_py_sweep_run_imports_no_torch(tmp_path):
    code = ("import sys, jobs.status.sweep, jobs.sweep.sweep_file, jobs.sweep.submission, jobs.slurm.array; "
            "assert 'torch' not in sys.modules, 'torch'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
