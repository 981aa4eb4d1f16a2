"""The checkpoint store on its own (docs/design.md, invariant 3): atomic writes, a full disk, retention, the
manifest's rebuild, fallback reasons, the host copy and the weights' digest."""
import errno
import hashlib
import json
import os
import tempfile

import pytest
import torch

import jobs.run.files
from jobs.checkpoint import layout
from jobs.checkpoint.host_copy import HostCopy
from jobs.checkpoint.layout import checkpoint_name
from jobs.checkpoint.store import CheckpointStore, NonFiniteCheckpoint, model_digest, nonfinite_tensors
from jobs.errors import UserError
from jobs.run.files import write_atomic
from tests.helpers_runs import enospc_after, temp_files


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
def small_state(value: float) -> dict:
    return {"task": {"model": {"w": torch.full((4096,), value)}}, "step": int(value)}


@pytest.mark.parametrize("failing", ["ckpt", "sidecar", "manifest"])
def test_full_disk_in_the_store_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing):
    store = CheckpointStore(tmp_path, keep_last=2, warn=lambda _: None)
    store.save(small_state(1.0), step=1, epoch=0.1)
    store.save(small_state(2.0), step=2, epoch=0.2)
    manifest_before = (tmp_path / "manifest.json").read_bytes()
    prefix = {"ckpt": ".ckpt-step000000003.pt.tmp", "sidecar": ".ckpt-step000000003.pt.json.tmp",
              "manifest": ".manifest.json.tmp"}[failing]
    monkeypatch.setattr(jobs.run.files, "_write_all", enospc_after(0.5, lambda name: name.startswith(prefix)))
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


def test_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    write_atomic(target, b"old" * 1000)
    monkeypatch.setattr(jobs.run.files, "_write_all", enospc_after(0.3))
    with pytest.raises(OSError):
        write_atomic(target, b"new" * 1000)
    assert target.read_bytes() == b"old" * 1000
    assert list(tmp_path.iterdir()) == [target]


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


def test_host_copy_stages_tensors_by_dtype_and_keeps_every_layout():
    """The staged path (on a GPU: one gather and one device-to-host copy per dtype, into buffers kept
    between saves) is exercised here on CPU tensors: every tensor comes back bit-equal, with its shape,
    strides (channels_last included) and dtype; a second take reuses the buffers and sees new values, and
    one after a tensor changed shape allocates anew."""
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


# -- the weights: found where the store is told, digested in key order, refused when non-finite --------
def test_the_store_digests_the_weights_it_is_told_of_in_key_order(tmp_path):
    weights = {"a": torch.arange(4.0), "b": torch.ones(2, dtype=torch.float16)}
    state = {"task": {"model": weights, "optimizer": {"m": torch.zeros(3)}}, "step": 1}
    entry = CheckpointStore(tmp_path, weights_of=layout.weights).save(state, step=1, epoch=0.1)
    expected = hashlib.sha256(weights["a"].numpy().tobytes() + weights["b"].numpy().tobytes()).hexdigest()
    assert entry["model_digest"] == expected
    assert model_digest({"x": {"a": weights["a"]}, "y": [weights["b"]]}) == expected  # nested: in order
    assert layout.weights({"task": {"w": 1}}) == {"w": 1}  # a task state without "model": all of it


def test_nonfinite_weights_are_refused_by_name_and_nothing_is_written(tmp_path):
    store = CheckpointStore(tmp_path, weights_of=layout.weights, refuse_nonfinite=True)
    state = {"task": {"model": {"ok": torch.ones(2), "bad": torch.tensor([1.0, float("nan")])}}}
    with pytest.raises(NonFiniteCheckpoint) as raised:
        store.save(state, step=5, epoch=1.0)
    assert raised.value.step == 5 and "(bad)" in str(raised.value) and not list(tmp_path.iterdir())
    assert nonfinite_tensors({"m": {"w": torch.tensor([float("inf")]), "i": torch.tensor([1])}}) == ["m.w"]
