"""Real faults, not signals: a disk that fills up, turns read-only or vanishes under a training run, a run
that diverges, a device out of memory, a trainer that hangs, a torn log line (docs/design.md, invariants 3, 6 and 7).

The disk faults are real: a tmpfs filled to the last byte, a read-only bind mount, a renamed directory
(the first two need root, as in CI; elsewhere they are skipped, saying why)."""
import collections
import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from jobs.exit_codes import EXIT_DIVERGED, EXIT_HUNG, EXIT_OUT_OF_MEMORY, EXIT_WRITE_FAILED
from jobs.run.files import append_json_lines, read_json_lines
from jobs.step_file import STEP_FILE_ENV, read_step_file
from jobs.testing import HANG_AT_STEP_ENV
from resnet.task import ResNetTask
from tests.helpers_runs import (
    LONG,
    LONG_STEPS,
    STEPS_PER_EPOCH,
    TINY,
    call,
    checkpoint_file,
    committed_step,
    copy_run,
    discard,
    events,
    final_digest,
    manifest_entries,
    spawn,
    start,
    status_of,
)

pytestmark = pytest.mark.usefixtures("hermetic")


def wait_until(predicate, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the trainer exited ({proc.returncode}) while waiting for {what}:\n{proc.stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (CI runs as root); the vanished-directory case runs anywhere")


def mount(*args) -> None:
    done = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount {' '.join(map(str, args))} is not allowed here: {done.stderr.strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    """A small real filesystem to fill up: 8 MB of tmpfs (a tiny run's checkpoints need about 4)."""
    need_root("mounting a tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", disk)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Write zeros until the filesystem says ENOSPC, as `dd if=/dev/zero of=FILLER` does."""
    filler = disk / "FILLER"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError) as full:
            while True:
                os.write(fd, bytes(1 << 16))
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


class Disturbance:
    """Makes the runs directory unwritable (`break_`) and writable again (`repair`)."""

    def __init__(self, kind: str, tmp_path: Path, request):
        self.kind = kind
        if kind in ("full", "full-to-the-end"):
            self.disk = request.getfixturevalue("tmpfs")
            self.runs = self.disk / "runs"
        else:
            self.runs = tmp_path / "runs"
        self.runs.mkdir()
        if kind == "read-only":
            need_root("a read-only bind mount")
            request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(self.runs)], capture_output=True))

    def break_(self, run_path: Path) -> None:
        if self.kind.startswith("full"):
            self.filler = fill(self.disk)
        elif self.kind == "read-only":
            # a read-only view over the directory, mounted while the trainer runs: the lock it holds open for
            # writing stays on the old mount (a mount with writers cannot turn read-only)
            mount("--bind", self.runs, self.runs)
            mount("-o", "remount,ro,bind", self.runs)
        else:
            run_path.rename(run_path.with_name("moved-away"))

    def repair(self, run_path: Path) -> None:
        if self.kind.startswith("full"):
            self.filler.unlink()
        elif self.kind == "read-only":
            subprocess.run(["umount", "-l", str(self.runs)], check=True)
        else:
            run_path.with_name("moved-away").rename(run_path)


@pytest.mark.parametrize("kind", ["full", "read-only", "vanished"])
def test_a_run_outlives_a_broken_disk_and_ends_bit_equal(kind, tmp_path, request, reference):
    """The disk breaks after the first checkpoint and stays broken for two epoch ends (checkpoint, metrics
    and status writes fail), then comes back: the run finishes (exit 0) with the uninterrupted run's
    weights, and each kind of failed write is reported once, with its recovery, however many steps it
    lasted."""
    disturbance = Disturbance(kind, tmp_path, request)
    path = disturbance.runs / "disk"
    steps = tmp_path / "steps"
    steps.write_text("")
    proc = spawn("train.py", *LONG, "--checkpoint-every-steps", "2", "--run-id", "disk", "--runs-dir",
                 disturbance.runs, env={STEP_FILE_ENV: str(steps)})
    try:
        wait_until(lambda: committed_step(path), 60, "the first checkpoint", proc)
        disturbance.break_(path)
        broken_at = read_step_file(steps)[2]
        # two epoch ends pass while it is broken: metrics and status are rewritten there
        wait_until(lambda: read_step_file(steps)[2] >= broken_at + 2 * STEPS_PER_EPOCH, 60, "two epochs", proc)
        assert proc.poll() is None, "the run ended before the disk came back: shorten the wait"
        disturbance.repair(path)
        assert proc.wait(120) == 0, proc.stderr
    finally:
        discard(proc)
    assert "Traceback" not in proc.stderr
    assert final_digest(path) == reference.digest
    failed = collections.Counter(e["file"] for e in events(path, "write-failed"))
    recovered = collections.Counter(e["file"] for e in events(path, "write-recovered"))
    assert {"checkpoint", "metrics", "status"} <= set(failed), failed
    assert set(failed.values()) == {1} and recovered == failed, (failed, recovered)  # once each, then once back
    assert len(proc.stderr.splitlines()) == len(failed) + len(recovered), proc.stderr  # one warning each
    summary = status_of(disturbance.runs, "disk")
    assert summary["state"] == "completed" and summary["step"] == LONG_STEPS
    # the metrics file missed two epochs' rewrites while broken: the next rewrite made it whole
    assert [r["epoch"] for r in read_json_lines(path / "metrics.jsonl")] == list(range(1, 11))


def test_a_disk_full_to_the_end_fails_the_run_cleanly_and_resume_completes_it(tmp_path, request, reference):
    """The disk fills up after the first checkpoint and stays full: training goes on to the end, the final
    checkpoint cannot be written: one error line, exit 6, the committed checkpoints intact. Once there is
    room, resume.py redoes the steps since the last checkpoint and ends bit-equal."""
    disturbance = Disturbance("full-to-the-end", tmp_path, request)
    path = disturbance.runs / "disk"
    proc = spawn("train.py", *LONG, "--checkpoint-every-steps", "2", "--run-id", "disk", "--runs-dir",
                 disturbance.runs)
    try:
        wait_until(lambda: committed_step(path), 60, "the first checkpoint", proc)
        disturbance.break_(path)
        assert proc.wait(120) == EXIT_WRITE_FAILED, proc.stderr
    finally:
        discard(proc)
    error = proc.stderr.splitlines()[-1]
    committed = [e["step"] for e in manifest_entries(path)]
    last = committed[-1]
    for step in committed:
        assert checkpoint_file(path, step).exists()
    assert error.startswith("error: the final checkpoint could not be written: [Errno 28] No space left on "
                            f"device; the last committed checkpoint (step {last}) is intact; once the disk has "
                            "room again, continue with `python scripts/resume.py --run-id disk"), proc.stderr
    assert "Traceback" not in proc.stderr and last < LONG_STEPS
    disturbance.repair(path)
    proc = spawn("resume.py", "--run-id", "disk", "--runs-dir", disturbance.runs)
    assert proc.wait(120) == 0, proc.stderr
    assert events(path, "resume")[-1]["step"] == last
    assert final_digest(path) == reference.digest


def test_a_failed_append_leaves_no_half_line(tmpfs):
    """On a full disk an append fails whole: the file is cut back to its old end (no torn line)."""
    log = tmpfs / "events.jsonl"
    append_json_lines(log, [{"event": "start"}])
    before = log.read_bytes()
    fill(tmpfs)
    with pytest.raises(OSError) as full:
        append_json_lines(log, [{"event": "x", "padding": "y" * 20000}])
    assert full.value.errno == errno.ENOSPC
    assert log.read_bytes() == before


# -- torn lines ----------------------------------------------------------------------------------------


def test_a_resumed_run_reads_past_torn_lines(tmp_path, reference):
    """A stopped run whose events and metrics end in torn lines: resume loses no event, status reads it,
    and the run ends bit-equal."""
    path = copy_run(reference, tmp_path, cut_at=8 * STEPS_PER_EPOCH)
    with open(path / "events.jsonl", "a") as f:
        f.write('{"event": "checkpoint", "file": "ckpt-step0000')
    with open(path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 9, "train_lo')
    assert status_of(tmp_path, "ref")["step"] >= 0
    code, out, err = call("resume", "--run-id", "ref", "--runs-dir", tmp_path, "--local")
    assert code == 0, err
    resumed = [e for e in events(path, "resume") if e["pid"] == os.getpid()]
    assert resumed and resumed[-1]["step"] == 8 * STEPS_PER_EPOCH
    assert final_digest(path) == reference.digest
    assert [r["epoch"] for r in read_json_lines(path / "metrics.jsonl")] == list(range(1, 11))


# -- divergence ------------------------------------------------------------------------------------------
def committed_weights_are_finite(path: Path) -> bool:
    for entry in manifest_entries(path):
        state = torch.load(checkpoint_file(path, entry["step"]), map_location="cpu", weights_only=True)
        if not all(torch.isfinite(v).all() for v in state["task"]["model"].values() if v.is_floating_point()):
            return False
    return True


@pytest.mark.parametrize("every_step", [False, True], ids=["epoch-end-saves", "saves-every-step"])
def test_a_diverged_run_stops_within_an_epoch_without_saving_nan(tmp_path, every_step):
    """--lr 1000: the loss turns non-finite within the first epoch. The run stops within an epoch of it with
    exit 4, a `diverged` event, state failed with a hint, and never says `completed`. No checkpoint with
    non-finite weights is committed: with saves at epoch ends only there is none at all (the first one
    would already hold NaN); with a save every step, the newest committed one is finite."""
    # epoch ends only: no timed save either (auto's first one, after 1 s, may land before the divergence)
    cadence = ["--checkpoint-every-steps", "1"] if every_step else ["--checkpoint-every-seconds", "off"]
    code, out, err = call("train", *TINY, "--epochs", "10", "--lr", "1000", *cadence, "--run-id", "nan",
                          "--runs-dir", tmp_path)
    assert code == EXIT_DIVERGED, err
    path = tmp_path / "nan"
    (diverged,) = events(path, "diverged")
    assert diverged["step"] - diverged["first_nonfinite_step"] <= STEPS_PER_EPOCH, diverged
    assert not events(path, "finish")
    assert committed_weights_are_finite(path)
    committed = committed_step(path)
    assert diverged["last_checkpoint_step"] == committed and (committed is not None) == every_step, diverged
    (line,) = err.splitlines()
    assert line.startswith("error: diverged: non-finite ") and "lower the learning rate or add warm-up" in line, err
    summary = status_of(tmp_path, "nan")
    assert summary["state"] == "failed" and "lower the learning rate" in summary["hint"], summary


def test_allow_nonfinite_trains_on(tmp_path):
    code, out, err = call("train", *TINY, "--epochs", "2", "--lr", "1000", "--allow-nonfinite",
                          "--run-id", "nan", "--runs-dir", tmp_path)
    assert code == 0, err
    assert not events(tmp_path / "nan", "diverged") and status_of(tmp_path, "nan")["state"] == "completed"


# -- out of memory ---------------------------------------------------------------------------------------
def test_cuda_out_of_memory_is_one_clear_line(tmp_path, monkeypatch):
    """A step raises torch.cuda.OutOfMemoryError (raised here on the CPU: no GPU in CI): exit 5, one line
    naming the batch size and the device's memory, the committed checkpoints intact, state failed."""
    real_step = ResNetTask.train_step

    def step(task):
        if task.step == 10:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(task)

    monkeypatch.setattr(ResNetTask, "train_step", step)
    code, out, err = call("train", *TINY, "--epochs", "2", "--checkpoint-every-steps", "3", "--run-id", "oom",
                          "--runs-dir", tmp_path)
    assert code == EXIT_OUT_OF_MEMORY, err
    (line,) = err.splitlines()
    assert line == ("error: out of memory in step 11 with batch size 32: CUDA ran out of memory (no CUDA device "
                    "is visible to read its size); lower the batch size or use a device with more memory; the "
                    "last committed checkpoint (step 10) is intact"), line
    path = tmp_path / "oom"
    assert [e["step"] for e in manifest_entries(path)] == [6, 7, 10]  # saves at 3, 6, 7 (epoch end), 10
    (error,) = events(path, "error")
    assert error["cause"] == "out-of-memory" and error["message"] == line[len("error: "):]
    summary = status_of(tmp_path, "oom")
    assert summary["state"] == "failed" and "more memory" in summary["hint"], summary
    monkeypatch.undo()
    code, out, err = call("resume", "--run-id", "oom", "--runs-dir", tmp_path, "--local")
    assert code == 0, err
    assert events(path, "resume")[-1]["step"] == 10


# -- a hung trainer ------------------------------------------------------------------------------------
def test_a_hung_trainer_ends_itself_but_a_stopped_one_does_not(tmp_path, reference):
    """Under the batch job's supervisor, --hang-timeout-seconds 3 (not less: on a slow disk the loop may
    wait a second or two for the previous checkpoint's write). First the trainer is SIGSTOPped for 8 s
    (Ctrl-Z, a suspended job): that is not a hang. Then the loop blocks for good at the boundary after step
    30 (the test hook waits on a lock, as a hung collective or read does): 3 s later the trainer writes
    its threads' stacks (the hung one included) to stderr, records a `hang` event and state failed, and
    exits 7, which the supervisor takes for a crash (a `crash` event; not retried: --max-crash-retries 0). The last
    checkpoint (step 28, an epoch end) is intact, and resume ends with the uninterrupted run's weights."""
    runs = tmp_path / "runs"
    path = runs / "hung"
    proc = start("train.py", *LONG, "--checkpoint-every-steps", "2", "--hang-timeout-seconds", "3",
                 "--max-crash-retries", "0", "--run-id", "hung", "--runs-dir", runs, supervised=True,
                 env={HANG_AT_STEP_ENV: "30"})
    try:
        trainer = wait_until(lambda: [e["pid"] for e in events(path, "start")], 60, "the start", proc)[0]
        wait_until(lambda: committed_step(path), 60, "the first checkpoint", proc)
        os.kill(trainer, signal.SIGSTOP)
        stopped_at = committed_step(path)
        time.sleep(8)
        os.kill(trainer, signal.SIGCONT)
        assert proc.wait(120) == EXIT_HUNG, proc.stderr
    finally:
        discard(proc)
    assert stopped_at < 30, "the trainer reached the hang before the SIGSTOP: the pause was not tested"
    (hang,) = events(path, "hang")
    assert hang["step"] == 30 and 3 <= hang["idle_seconds"] < 12, hang
    assert hang["message"].endswith("the trainer exited 7; the last committed checkpoint (step 28) is intact")
    assert committed_step(path) == 28
    (crash,) = events(path, "crash")
    assert crash["exit_code"] == EXIT_HUNG and crash["step"] == 30, crash  # the step file: 30 steps done
    assert crash["exit_status"] == "exit code 7: hung, no step within --hang-timeout-seconds", crash
    assert crash["requeued"] is crash["retried"] is False, crash
    assert crash["reason"] == "crash retry cap reached (0 of --max-crash-retries 0)", crash
    err = proc.stderr
    assert "error: no training step for " in err and "(--hang-timeout-seconds 3): the trainer is hung" in err, err
    # the hung stack
    assert 'hang_watchdog.py", line' in err and "in stepped" in err and 'trainer.py", line' in err, err
    summary = status_of(runs, "hung")
    assert summary["state"] == "failed" and summary["hint"].startswith("resume with: "), summary

    code, out, err = call("resume", "--run-id", "hung", "--runs-dir", runs, "--local")
    assert code == 0, err
    assert events(path, "resume")[-1]["step"] == 28
    assert final_digest(path) == reference.digest
