"""Bad input (docs/design.md, invariant 7): one readable message on stderr, a non-zero exit code, no traceback,
and nothing on disk changed. Most cases call the scripts' main() in-process (the same run_main guard a
real process has; an unexpected exception fails the test as a traceback would); two are real processes."""
import os

import pytest

import jobs.run.run_dir
from jobs.errors import UserError
from jobs.launch.launcher import NEW, launch
from resnet.config import DEFAULTS
from resnet.task import REFERENCE
from tests.helpers_runs import LONG, LONG_STEPS, SHORT, call, copy_run, events, run, tree_snapshot

pytestmark = pytest.mark.usefixtures("hermetic")


@pytest.fixture
def runs(tmp_path, reference):
    """A runs dir holding a copy of the finished reference run `ref` (10 epochs of the LONG config)."""
    copy_run(reference, tmp_path / "runs")
    return tmp_path / "runs"


def refused(root, script, *argv, code=2):
    """Run a script that must refuse; return its one stderr line after checking the whole contract."""
    before = tree_snapshot(root)
    exit_code, out, err = call(script, *argv)
    assert exit_code == code, (exit_code, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert tree_snapshot(root) == before, "bad input changed files"
    return lines[0]


def test_unknown_run_id_lists_the_known_ones(runs):
    line = refused(runs, "resume", "--run-id", "nope", "--runs-dir", runs)
    assert line == f"error: no run 'nope' in {runs}; known runs: ref"
    line = refused(runs, "status", "--run-id", "nope", "--runs-dir", runs, "--json")
    assert line == f"error: no run 'nope' in {runs}; known runs: ref"


@pytest.mark.parametrize("run_id", ["../x", "a/b", "", "..", "-x"])
@pytest.mark.parametrize("script", ["train", "resume", "status"])
def test_bad_run_id(runs, script, run_id):
    extra = {"train": SHORT, "resume": [], "status": ["--json"]}[script]
    line = refused(runs.parent, script, *extra, f"--run-id={run_id}", "--runs-dir", runs)
    assert line.startswith(f"error: bad run id {run_id!r}: use 1-64 characters")
    assert not (runs.parent / "x").exists()


def test_conflicting_config_names_the_field(runs):
    line = refused(runs, "train", *LONG, "--size", "2", "--run-id", "ref", "--runs-dir", runs, "--resume-if-exists")
    assert "contradicts the run being resumed (size: run has 1, given 2)" in line
    assert "scripts/resume.py --run-id ID" in line


def test_changing_epochs_needs_override(runs):
    args = (*LONG[:-2], "--epochs", "11", "--run-id", "ref", "--runs-dir", runs)
    line = refused(runs, "train", *args, "--resume-if-exists")
    assert "epochs: run has 10, given 11" in line and "pass --override epochs to allow it" in line
    line = refused(runs, "train", *args, "--override", "epochs")
    assert line == "error: --override only applies with --resume-if-exists (or use scripts/resume.py)"
    code, out, err = call("train", *args, "--resume-if-exists", "--override", "epochs")
    assert code == 0, err
    resumed = events(runs / "ref", "resume")[-1]
    assert resumed["changes"] == {"epochs": 11} and resumed["step"] == LONG_STEPS
    assert events(runs / "ref", "finish")[-1]["step"] == LONG_STEPS + 7


def test_fewer_epochs_than_already_trained_is_refused(runs):
    """Shrinking a finished 10-epoch run to 9 epochs used to rewrite its config.json, then call it finished."""
    line = refused(runs, "resume", "--run-id", "ref", "--runs-dir", runs, "--epochs", "9")
    assert line == (f"error: run 'ref' has already trained {LONG_STEPS} steps, more than the {LONG_STEPS * 9 // 10} "
                    "that epochs 9 gives; ask for at least as much as it has done")
    line = refused(runs, "train", *LONG[:-2], "--epochs", "9", "--run-id", "ref", "--runs-dir", runs,
                   "--resume-if-exists", "--override", "epochs")
    assert "has already trained" in line


def test_existing_run_without_resume_if_exists_points_to_resume(runs):
    line = refused(runs, "train", *LONG, "--run-id", "ref", "--runs-dir", runs)
    assert line == (f"error: run 'ref' already exists in {runs}; continue it with "
                    "`python scripts/resume.py --run-id ref` or pass --resume-if-exists")


@pytest.mark.parametrize("script, flag, value", [
    ("train", "--epochs", "0"), ("train", "--epochs", "-3"), ("train", "--batch-size", "0"),
    ("train", "--batch-size", "-1"), ("train", "--size", "0"), ("resume", "--epochs", "0")])
def test_impossible_numbers_on_the_command_line(runs, script, flag, value):
    """argparse refuses these: its usage line, then `<prog>: error: ...` (exit 2, no traceback)."""
    before = tree_snapshot(runs)
    argv = (*SHORT, "--run-id", "new") if script == "train" else ("--run-id", "ref")
    code, out, err = call(script, *argv, flag, value, "--runs-dir", runs)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("usage: ")
    assert err.strip().splitlines()[-1].endswith(f"error: argument {flag}: must be a positive integer, got {value}")
    assert tree_snapshot(runs) == before


@pytest.mark.parametrize("value, message", [("-1", "must be 0 or more, got -1"), ("nan", "must be 0 or more, got nan"),
                                            ("soon", "'soon' is not a number")])
def test_bad_hang_timeout(runs, value, message):
    before = tree_snapshot(runs)
    code, out, err = call("train", *SHORT, "--run-id", "new", "--hang-timeout-seconds", value, "--runs-dir", runs)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(f"error: argument --hang-timeout-seconds: {message}")
    assert tree_snapshot(runs) == before


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs must be a positive integer, got 0"),
    ("batch_size", -32, "batch_size must be a positive integer, got -32"),
    ("size", 1.5, "size must be a positive integer, got 1.5"),
    ("warmup_epochs", 3.0, "warm-up must be >= 0 and shorter than the run"),
    ("lr", 0.0, "lr must be positive")])
def test_impossible_numbers_in_a_config(tmp_path, field, value, message):
    config = {**DEFAULTS, "size": 1, "batch_size": 32, "epochs": 2, "synthetic": 256, field: value}
    with pytest.raises(UserError, match=message):
        launch(REFERENCE, config, tmp_path / "runs", "x", mode=NEW)
    assert list(tmp_path.iterdir()) == []


def test_batch_larger_than_the_data(runs):
    line = refused(runs, "train", "--synthetic", "256", "--size", "1", "--batch-size", "1000", "--run-id", "new",
                   "--runs-dir", runs)
    assert line == "error: batch size 1000 is larger than the 231 training images"


def test_missing_data_dir(runs, tmp_path):
    missing = tmp_path / "no-such-data"
    line = refused(runs, "train", "--data-dir", missing, "--size", "1", "--run-id", "new", "--runs-dir", runs)
    assert line == f"error: {missing}: CIFAR-10 data not found (no such file or directory)"
    line = refused(runs, "train", "--size", "1", "--run-id", "new", "--runs-dir", runs)
    assert line.startswith("error: say which data to train on")


@pytest.mark.parametrize("script", ["train", "resume", "status"])
def test_runs_dir_is_a_file(tmp_path, script):
    not_a_dir = tmp_path / "runs"
    not_a_dir.write_text("oops")
    extra = {"train": (*SHORT, "--run-id", "new"), "resume": ("--run-id", "new"), "status": ("--json",)}[script]
    line = refused(tmp_path, script, *extra, "--runs-dir", not_a_dir)
    assert line == f"error: runs dir {not_a_dir} is not a directory"


def test_unreadable_runs_dir_as_a_user(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: mode 000 does not stop root, so the check cannot bite here "
                    "(test_unreadable_runs_dir_simulated covers the message)")
    locked = tmp_path / "runs"
    locked.mkdir(mode=0o000)
    try:
        line = refused(tmp_path, "train", *SHORT, "--run-id", "new", "--runs-dir", locked)
    finally:
        locked.chmod(0o755)
    assert line == f"error: runs dir {locked} is not readable and writable by this user"


def test_unreadable_runs_dir_simulated(tmp_path, monkeypatch):
    """What a non-root user sees for a mode-000 runs dir, with os.access answering as it would for them."""
    locked = tmp_path / "runs"
    locked.mkdir(mode=0o000)
    real_access = os.access

    def access(path, mode, **kw):
        return False if os.fspath(path) == str(locked) else real_access(path, mode, **kw)
    monkeypatch.setattr(jobs.run.run_dir.os, "access", access)
    try:
        for script, extra in (("train", (*SHORT, "--run-id", "new")), ("resume", ("--run-id", "x")),
                              ("status", ("--json",))):
            line = refused(tmp_path, script, *extra, "--runs-dir", locked)
            assert line == f"error: runs dir {locked} is not readable and writable by this user"
    finally:
        locked.chmod(0o755)


def test_corrupt_config_of_a_run(runs):
    (runs / "ref" / "config.json").write_text('{"task": ')
    line = refused(runs, "resume", "--run-id", "ref", "--runs-dir", runs, "--epochs", "12")
    assert line.startswith(f"error: {runs / 'ref' / 'config.json'} is not valid JSON")
    assert "cannot resume this run" in line


def test_real_processes_print_one_line_and_no_traceback(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    before = tree_snapshot(tmp_path)
    for script, args, expected in (
            ("resume.py", ("--run-id", "../x", "--runs-dir", tmp_path), "error: bad run id '../x'"),
            ("train.py", (*SHORT, "--run-id", "a", "--runs-dir", not_a_dir),
             f"error: runs dir {not_a_dir} is not a directory")):
        done = run(script, *args)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(expected)
    assert tree_snapshot(tmp_path) == before
