"""Checkpoints in real runs (docs/design.md, invariant 3): corruption and fallback, a full disk, a writer killed
inside a write. Resumes run in-process (scripts/resume.py's main) on copies of the reference run."""
import json
import os
import signal
import subprocess
import sys

import pytest

import jobs.run.files
from jobs.checkpoint.layout import checkpoint_name
from jobs.checkpoint.store import CheckpointStore
from jobs.exit_codes import EXIT_WRITE_FAILED
from tests.helpers_runs import (
    LONG_STEPS,
    REPO,
    SHORT,
    STEPS_PER_EPOCH,
    call,
    checkpoint_file,
    checkpoint_model_digest,
    clean_env,
    copy_run,
    enospc_after,
    events,
    final_digest,
    manifest_entries,
    run,
    temp_files,
)

pytestmark = pytest.mark.usefixtures("hermetic")

CUT = LONG_STEPS - 1  # a copy of the reference "killed" after committing step 69: 68 and 63 are older


def resume(runs, *extra):
    return call("resume", "--run-id", "ref", "--runs-dir", runs, "--local", *extra)


def resumed_at(path) -> int:
    return events(path, "resume")[-1]["step"]


# -- corruption and fallback -------------------------------------------------------------------------
def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_bit, os.remove], ids=["truncated", "bit-flipped", "deleted"])
def test_bad_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference, damage):
    path = copy_run(reference, tmp_path, cut_at=CUT)
    newest = checkpoint_file(path, CUT)
    damage(newest)
    code, out, err = resume(tmp_path)
    assert code == 0, err
    assert f"warning: checkpoint {newest.name} is unusable" in err
    (fallback,) = events(path, "fallback")
    assert fallback["file"] == newest.name and fallback["step"] == CUT
    assert resumed_at(path) == CUT - 1  # the previous checkpoint
    assert final_digest(path) == reference.digest


def test_missing_manifest_is_rebuilt_from_sidecars(tmp_path, reference):
    path = copy_run(reference, tmp_path, cut_at=CUT)
    (path / "manifest.json").unlink()
    code, out, err = resume(tmp_path)
    assert code == 0, err
    assert "manifest.json is missing; rebuilding it from the sidecar files" in err
    assert resumed_at(path) == CUT and events(path, "fallback") == []  # the newest is fine: no step lost
    assert final_digest(path) == reference.digest
    assert json.loads((path / "manifest.json").read_text())["checkpoints"]  # written again


def test_corrupt_manifest_and_truncated_newest_checkpoint_fall_back(tmp_path, reference):
    path = copy_run(reference, tmp_path, cut_at=CUT)
    (path / "manifest.json").write_text('{"format": 1, "checkpoints": [{"file": ')  # torn
    truncate(checkpoint_file(path, CUT))
    code, out, err = resume(tmp_path)
    assert code == 0, err
    assert "manifest.json is corrupt" in err and "rebuilding it from the sidecar files" in err
    assert f"checkpoint {checkpoint_file(path, CUT).name} is unusable" in err and "truncated" in err
    assert [e["file"] for e in events(path, "fallback")] == [checkpoint_file(path, CUT).name]
    assert resumed_at(path) == CUT - 1
    assert final_digest(path) == reference.digest


def test_two_bad_checkpoints_fall_back_twice(tmp_path, reference):
    path = copy_run(reference, tmp_path, cut_at=CUT)
    flip_bit(checkpoint_file(path, CUT))
    os.remove(checkpoint_file(path, CUT - 1))
    code, out, err = resume(tmp_path)
    assert code == 0, err
    assert [e["step"] for e in events(path, "fallback")] == [CUT, CUT - 1]
    assert resumed_at(path) == LONG_STEPS - STEPS_PER_EPOCH  # the last epoch-end checkpoint (63)
    assert final_digest(path) == reference.digest


def test_corrupt_final_checkpoint_of_a_finished_run_is_not_taken_as_finished(tmp_path, reference):
    """resume.py used to answer "already finished" from the manifest alone; the final checkpoint must verify."""
    path = copy_run(reference, tmp_path)
    final = checkpoint_file(path, LONG_STEPS)
    flip_bit(final)
    code, out, err = resume(tmp_path)
    assert code == 0, err
    assert "already finished" not in out
    assert f"checkpoint {final.name} is unusable" in err
    assert resumed_at(path) == LONG_STEPS - 1
    assert final_digest(path) == reference.digest
    assert checkpoint_model_digest(final) == reference.digest  # rewritten whole


def test_all_checkpoints_bad_is_a_clear_error(tmp_path, reference):
    """A real process: exit 2, one message naming how many checkpoints were tried, no traceback, no
    checkpoint touched, and nothing started over from scratch."""
    path = copy_run(reference, tmp_path, cut_at=CUT)
    entries = manifest_entries(path)
    for e in entries:
        truncate(path / e["file"])
    before = {p.name: p.read_bytes() for p in path.glob("ckpt-step*")}
    done = run("resume.py", "--run-id", "ref", "--runs-dir", tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (message,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"none of the {len(entries)} checkpoints in {path} is usable" in message
    assert {p.name: p.read_bytes() for p in path.glob("ckpt-step*")} == before
    assert events(path, "resume") == [] and not (path / "lock.json").exists()


# -- a full disk ---------------------------------------------------------------------------------------


def ckpt_from(step):
    return lambda name: name.startswith(".ckpt-step") and ".json" not in name and int(name[10:19]) >= step


def test_full_disk_while_training_keeps_the_last_good_checkpoint(tmp_path, reference, monkeypatch):
    """Through launch and the Trainer: every checkpoint write from step 60 on fails with ENOSPC. Training
    goes on, with one warning and one "write-failed" event for all those failures; the final save fails,
    so the run ends with one error line and exit 6, step 59 intact. With room again, resume completes
    bit-equal."""
    path = copy_run(reference, tmp_path, cut_at=8 * STEPS_PER_EPOCH)  # step 56
    monkeypatch.setattr(jobs.run.files, "_write_all", enospc_after(0.5, ckpt_from(60)))
    code, out, err = resume(tmp_path)
    monkeypatch.undo()
    assert code == EXIT_WRITE_FAILED, err
    assert "Traceback" not in err
    assert max(e["step"] for e in manifest_entries(path)) == 59
    for e in manifest_entries(path):
        CheckpointStore(path).verify(e)
    assert temp_files(path) == []
    assert not list(path.glob(f"{checkpoint_name(60)}*"))
    (failed,) = events(path, "write-failed")  # ten failed saves, one report
    assert failed["file"] == "checkpoint" and failed["error"] == "[Errno 28] No space left on device"
    assert "the last committed checkpoint (step 59) is intact" in failed["message"]
    assert not events(path, "write-recovered")
    (error,) = events(path, "error")
    assert error["message"] == ("the final checkpoint could not be written: [Errno 28] No space left on device; "
                                "the last committed checkpoint (step 59) is intact")
    assert err.count("warning: checkpoint write failed: [Errno 28] No space left on device") == 1, err
    assert err.splitlines()[-1] == f"error: {error['message']}; once the disk has room again, continue with " \
        f"`python scripts/resume.py --run-id ref --runs-dir {tmp_path}`", err
    assert json.loads((path / "status.json").read_text())["state"] == "failed"

    code, out, err = resume(tmp_path)
    assert code == 0, err
    assert resumed_at(path) == 59
    assert final_digest(path) == reference.digest


def test_one_failed_write_does_not_cost_the_final_checkpoint(tmp_path, reference, monkeypatch):
    """A write that fails slowly (the disk fills up during it) and is collected only when the run ends
    must not keep the final checkpoint from being written (it used to: exit 1 for a finished run)."""
    path = copy_run(reference, tmp_path, cut_at=9 * STEPS_PER_EPOCH)  # step 63
    last = LONG_STEPS - 1
    monkeypatch.setattr(jobs.run.files, "_write_all", enospc_after(
        0.5, lambda name: name.startswith(f".{checkpoint_name(last)}.tmp"), delay=1.0))
    code, out, err = resume(tmp_path)
    monkeypatch.undo()
    assert code == 0, err
    (failed,) = events(path, "write-failed")
    assert failed["step"] == LONG_STEPS and "No space left on device" in failed["message"]
    assert "the last committed checkpoint (step 68) is intact" in failed["message"]
    (recovered,) = events(path, "write-recovered")
    assert recovered["file"] == "checkpoint" and recovered["failures"] == 1 and recovered["step"] == LONG_STEPS
    assert not events(path, "error")
    assert events(path, "finish") and final_digest(path) == reference.digest
    assert json.loads((path / "status.json").read_text())["state"] == "completed"


def test_full_disk_from_the_start_of_a_new_run(tmp_path, monkeypatch):
    """No checkpoint can be written at all: the warning says that none is committed (not that a
    previous one is intact), the run ends failed (exit 6), and no checkpoint or temp file is left."""
    monkeypatch.setattr(jobs.run.files, "_write_all", enospc_after(0.5, ckpt_from(0)))
    code, out, err = call("train", *SHORT, "--run-id", "full", "--runs-dir", tmp_path, "--checkpoint-every-steps", "5")
    monkeypatch.undo()
    assert code == EXIT_WRITE_FAILED, err
    path = tmp_path / "full"
    assert not list(path.glob("ckpt-step*")) and not (path / "manifest.json").exists() and temp_files(path) == []
    (failed,) = events(path, "write-failed")
    assert failed["message"].startswith("checkpoint write failed: [Errno 28] No space left on device; "
                                        "no checkpoint of this run is committed; training goes on")
    assert "is intact" not in err and "no checkpoint of this run is committed" in err.splitlines()[-1]
    assert json.loads((path / "status.json").read_text())["state"] == "failed"


# -- atomic writes ---------------------------------------------------------------------------------


KILLED_WRITER = """
import sys, time
from pathlib import Path
from jobs.run.files import write_atomic
def slow(f, data):
    for i in range(0, len(data), 4096):
        f.write(data[i:i + 4096]); f.flush()
        if i == 4096 * 8:
            print("writing", flush=True)
            time.sleep(60)
write_atomic(Path(sys.argv[1]), b"new" * 100000, slow)
"""


def test_sigkill_inside_an_atomic_write_leaves_the_old_file(tmp_path):
    """A real process killed inside write_atomic: the file is the old one, whole; the temp file left
    behind is the only trace, and the next lock holder's store removes it."""
    target = tmp_path / "ckpt-step000000001.pt"
    target.write_bytes(b"old" * 1000)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=REPO, env=clean_env(),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "writing\n"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert target.read_bytes() == b"old" * 1000
    (leftover,) = temp_files(tmp_path)
    assert leftover.name == f".{target.name}.tmp-{proc.pid}" and leftover.stat().st_size > 4096 * 8
    assert CheckpointStore(tmp_path).remove_temp_files() == [leftover]
    assert sorted(tmp_path.iterdir()) == [target]


# -- retention -------------------------------------------------------------------------------------


# -- host copies for the background writer -------------------------------------------------------------
