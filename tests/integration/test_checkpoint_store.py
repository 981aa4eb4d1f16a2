"""The checkpoint store: corruption and fallback, a full disk, atomic writes, retention, manifest rebuild
(DESIGN invariant 3). Resumes run in-process (scripts/resume.py's main) on copies of the reference run."""
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch

import jobs.files
from jobs.checkpoint import CheckpointStore, checkpoint_name
from jobs.errors import UserError
from jobs.exit_codes import EXIT_WRITE_FAILED
from jobs.files import write_atomic
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
    events,
    final_digest,
    manifest_entries,
    run,
    temp_files,
)

pytest_plugins = ["tests.helpers_runs"]  # the fixtures `reference` and `hermetic`
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
def small_state(value: float) -> dict:
    return {"task": {"model": {"w": torch.full((4096,), value)}}, "step": int(value)}


def enospc_after(fraction: float, match=lambda name: True, delay: float = 0.0):
    """A jobs.files._write_all that writes part of the data, then fails as a full disk does."""
    real = jobs.files._write_all

    def write(f, data):
        if not match(os.path.basename(f.name)):
            return real(f, data)
        f.write(data[: int(len(data) * fraction)])
        time.sleep(delay)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write


@pytest.mark.parametrize("failing", ["ckpt", "sidecar", "manifest"])
def test_full_disk_in_the_store_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing):
    store = CheckpointStore(tmp_path, keep_last=2, warn=lambda _: None)
    store.save(small_state(1.0), step=1, epoch=0.1)
    store.save(small_state(2.0), step=2, epoch=0.2)
    manifest_before = (tmp_path / "manifest.json").read_bytes()
    prefix = {"ckpt": ".ckpt-step000000003.pt.tmp", "sidecar": ".ckpt-step000000003.pt.json.tmp",
              "manifest": ".manifest.json.tmp"}[failing]
    monkeypatch.setattr(jobs.files, "_write_all", enospc_after(0.5, lambda name: name.startswith(prefix)))
    with pytest.raises(OSError) as raised:
        store.save(small_state(3.0), step=3, epoch=0.3)
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert (tmp_path / "manifest.json").read_bytes() == manifest_before
    assert temp_files(tmp_path) == []
    state, entry = store.load_latest()
    assert entry["step"] == 2 and torch.equal(state["task"]["model"]["w"], torch.full((4096,), 2.0))
    for e in store.entries():
        store.verify(e)
    # the disk has room again: the next save commits and clears what the failed one left behind
    store.save(small_state(4.0), step=4, epoch=0.4)
    assert [e["step"] for e in store.entries()] == [2, 4]
    assert sorted(p.name for p in tmp_path.glob("ckpt-step*")) == [
        checkpoint_name(2), checkpoint_name(2) + ".json", checkpoint_name(4), checkpoint_name(4) + ".json"]


def ckpt_from(step):
    return lambda name: name.startswith(".ckpt-step") and ".json" not in name and int(name[10:19]) >= step


def test_full_disk_while_training_keeps_the_last_good_checkpoint(tmp_path, reference, monkeypatch):
    """Through launch and the Trainer: every checkpoint write from step 60 on fails with ENOSPC. Training
    goes on, with one warning and one "write-failed" event for all those failures; the final save fails,
    so the run ends with one error line and exit 6, step 59 intact. With room again, resume completes
    bit-equal."""
    path = copy_run(reference, tmp_path, cut_at=8 * STEPS_PER_EPOCH)  # step 56
    monkeypatch.setattr(jobs.files, "_write_all", enospc_after(0.5, ckpt_from(60)))
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
    assert "the previous checkpoint (step 59) is intact" in failed["message"]
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
    monkeypatch.setattr(jobs.files, "_write_all", enospc_after(
        0.5, lambda name: name.startswith(f".{checkpoint_name(last)}.tmp"), delay=1.0))
    code, out, err = resume(tmp_path)
    monkeypatch.undo()
    assert code == 0, err
    (failed,) = events(path, "write-failed")
    assert failed["step"] == LONG_STEPS and "No space left on device" in failed["message"]
    assert "the previous checkpoint (step 68) is intact" in failed["message"]
    (recovered,) = events(path, "write-recovered")
    assert recovered["file"] == "checkpoint" and recovered["failures"] == 1 and recovered["step"] == LONG_STEPS
    assert not events(path, "error")
    assert events(path, "finish") and final_digest(path) == reference.digest
    assert json.loads((path / "status.json").read_text())["state"] == "completed"


def test_full_disk_from_the_start_of_a_new_run(tmp_path, monkeypatch):
    """No checkpoint can be written at all: the warning says that none is committed (not that a
    previous one is intact), the run ends failed (exit 6), and no checkpoint or temp file is left."""
    monkeypatch.setattr(jobs.files, "_write_all", enospc_after(0.5, ckpt_from(0)))
    code, out, err = call("train", *SHORT, "--run-id", "full", "--runs-dir", tmp_path, "--checkpoint-every-steps", "5")
    monkeypatch.undo()
    assert code == EXIT_WRITE_FAILED, err
    path = tmp_path / "full"
    assert not list(path.glob("ckpt-step*")) and not (path / "manifest.json").exists() and temp_files(path) == []
    (failed,) = events(path, "write-failed")
    assert failed["message"].startswith("checkpoint write failed: [Errno 28] No space left on device; "
                                        "no checkpoint of this run is committed yet")
    assert "is intact" not in err and "no checkpoint of this run is committed" in err.splitlines()[-1]
    assert json.loads((path / "status.json").read_text())["state"] == "failed"


# -- atomic writes ---------------------------------------------------------------------------------
def test_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    write_atomic(target, b"old" * 1000)
    monkeypatch.setattr(jobs.files, "_write_all", enospc_after(0.3))
    with pytest.raises(OSError):
        write_atomic(target, b"new" * 1000)
    assert target.read_bytes() == b"old" * 1000
    assert list(tmp_path.iterdir()) == [target]


KILLED_WRITER = """
import sys, time
from pathlib import Path
from jobs.files import write_atomic
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
def test_retention_keeps_last_k_best_final_and_every_nth_epoch(tmp_path):
    store = CheckpointStore(tmp_path, keep_last=2, keep_every_epochs=2, warn=lambda _: None)
    metrics = {2: 0.3, 4: 0.9, 6: 0.5, 8: 0.6, 10: 0.7}  # epoch-end checkpoints (2 steps an epoch)
    for step in range(1, 12):
        epoch_end = step in metrics
        store.save(small_state(float(step)), step=step, epoch=step / 2, epoch_end=epoch_end,
                   metric=metrics.get(step))
    # last 2 (10, 11), best (4: 0.9), every 2nd epoch end (epochs 2, 4: steps 4, 8)
    expected = [4, 8, 10, 11]
    assert [e["step"] for e in store.entries()] == expected
    assert sorted(p.name for p in tmp_path.glob("ckpt-step*.pt")) == [checkpoint_name(s) for s in expected]
    assert sorted(p.name for p in tmp_path.glob("ckpt-step*.pt.json")) == [
        checkpoint_name(s) + ".json" for s in expected]
    store.save(small_state(12.0), step=12, epoch=6.0, epoch_end=True, final=True, metric=0.1)
    store.save(small_state(13.0), step=13, epoch=6.5)
    store.save(small_state(14.0), step=14, epoch=7.0)
    # 12 is final (kept), 6 was never kept (epoch 3), 10 (epoch 5) and 11 fell out of the last 2
    assert [e["step"] for e in store.entries()] == [4, 8, 12, 13, 14]
    for e in store.entries():
        data = store.verify(e)
        assert hashlib.sha256(data).hexdigest() == e["sha256"] and len(data) == e["size"]
        state = torch.load(tmp_path / e["file"], weights_only=True)
        assert torch.equal(state["task"]["model"]["w"], torch.full((4096,), float(e["step"])))


def test_manifest_rebuild_from_sidecars(tmp_path):
    warnings = []
    store = CheckpointStore(tmp_path, keep_last=5, warn=warnings.append)
    for step in (1, 2, 3):
        store.save(small_state(float(step)), step=step, epoch=step / 10)
    committed = store.entries()
    (tmp_path / "manifest.json").unlink()
    assert store.entries() == committed
    assert warnings == [f"warning: {tmp_path / 'manifest.json'} is missing; rebuilding it from the sidecar files"]
    (tmp_path / "manifest.json").write_text("not json")
    (tmp_path / (checkpoint_name(3) + ".json")).write_text('{"step": ')  # a torn sidecar is skipped
    assert store.entries() == committed[:2]
    assert "is corrupt" in warnings[-1]
    store.save(small_state(4.0), step=4, epoch=0.4)  # a save writes a whole manifest again
    assert [e["step"] for e in json.loads((tmp_path / "manifest.json").read_text())["checkpoints"]] == [1, 2, 4]


def test_load_latest_with_nothing_usable_names_every_reason(tmp_path):
    store = CheckpointStore(tmp_path, warn=lambda _: None)
    for step in (1, 2):
        store.save(small_state(float(step)), step=step, epoch=step / 10)
    truncate(tmp_path / checkpoint_name(1))
    os.remove(tmp_path / checkpoint_name(2))
    seen = []
    with pytest.raises(UserError) as raised:
        store.load_latest(on_fallback=lambda entry, reason: seen.append(entry["step"]))
    assert seen == [2, 1]
    message = str(raised.value)
    assert message.startswith(f"none of the 2 checkpoints in {tmp_path} is usable")
    assert f"{checkpoint_name(2)} is missing" in message and "truncated" in message
    assert CheckpointStore(tmp_path / "empty-run").load_latest() is None  # no checkpoints yet: start


# -- host copies for the background writer -------------------------------------------------------------
def test_host_copy_stages_tensors_by_dtype_and_keeps_every_layout():
    """The staged path (on a GPU: one gather and one device-to-host copy per dtype, into buffers kept
    between saves) is exercised here on CPU tensors: every tensor comes back bit-equal, with its shape,
    strides (channels_last included) and dtype; a second take reuses the buffers and sees new values, and
    one after a tensor changed shape allocates anew."""
    from jobs.checkpoint import HostCopy

    torch.manual_seed(0)
    conv = torch.randn(8, 3, 3, 3).contiguous(memory_format=torch.channels_last)
    state = {"task": {"model": {"conv": conv, "bias": torch.randn(8), "count": torch.tensor(7),
                                "half": torch.randn(5).to(torch.bfloat16), "flags": torch.tensor([True, False])},
                      "strided": torch.randn(4, 6)[:, ::2], "step": 3},
             "rng": {"python": (3, tuple(range(5)), None)}, "loop": {"history": [{"epoch": 1}]}}
    host = HostCopy(on=("cpu",))
    copied, events = host.take(state)
    assert events == []
    for key, value in state["task"]["model"].items():
        got = copied["task"]["model"][key]
        assert got.dtype == value.dtype and got.shape == value.shape and got.stride() == value.stride(), key
        assert torch.equal(got, value) and got.data_ptr() != value.data_ptr(), key
    assert torch.equal(copied["task"]["strided"], state["task"]["strided"])  # not dense: copied on its own
    assert copied["rng"] == state["rng"] and copied["loop"] == state["loop"] and copied["task"]["step"] == 3
    buffer = copied["task"]["model"]["conv"].data_ptr()
    conv.add_(1)
    again, _ = host.take(state)
    assert again["task"]["model"]["conv"].data_ptr() == buffer  # the same buffers, new values
    assert torch.equal(again["task"]["model"]["conv"], conv)
    # what it hands the writer saves and loads back as the state itself
    with tempfile.TemporaryDirectory() as directory:
        entry = CheckpointStore(directory).save(again, step=3, epoch=0.1)
        loaded = torch.load(os.path.join(directory, entry["file"]), weights_only=True)
    assert all(torch.equal(loaded["task"]["model"][k], v) for k, v in state["task"]["model"].items())
    # a tensor of another shape (and a parameter, which requires grad): new buffers, right values, no grad
    state["task"]["model"]["bias"] = torch.nn.Parameter(torch.randn(9))
    changed, _ = host.take(state)
    assert changed["task"]["model"]["conv"].data_ptr() != buffer
    for key, value in state["task"]["model"].items():
        got = changed["task"]["model"][key]
        assert got.shape == value.shape and torch.equal(got, value) and not got.requires_grad, key
