"""Saving (jobs.train.checkpointer): the cadence, the checkpoint's dict, the background write's result and the
reports of a write that fails, on a real run directory."""
import time

import pytest
import torch

import jobs.run.files
from jobs.checkpoint import layout
from jobs.checkpoint.store import CheckpointStore
from jobs.distributed.ranks import Ranks
from jobs.run.run_dir import RunDir
from jobs.train.checkpointer import Checkpointer
from jobs.train.config import LoopConfig
from jobs.train.divergence import Diverged, LossWatch
from jobs.train.metrics import LoopState, Metrics
from tests.helpers_runs import enospc_after, events
from tests.tiny_task import TinyTask


def checkpointer(tmp_path, **loop) -> tuple[Checkpointer, TinyTask, RunDir, list[str]]:
    run, warnings, task = RunDir(tmp_path, "r"), [], TinyTask({})
    run.path.mkdir(parents=True)
    store = CheckpointStore(run.path, weights_of=layout.weights, refuse_nonfinite=True)
    saver = Checkpointer(task, Metrics(LoopState(), None, 1, Ranks(), task.unit), run, store, LoopConfig(**loop),
                         Ranks(), LossWatch(Ranks()),
                         run.tolerate_write_failures(warnings.append))
    return saver, task, run, warnings


def test_a_save_is_due_by_steps_or_by_seconds(tmp_path):
    saver, task, _, _ = checkpointer(tmp_path, checkpoint_every_steps=2, checkpoint_every_seconds=None)
    task.train_step()
    assert not saver.due()
    task.train_step()
    assert saver.due()
    saver.save(wait=True)
    assert not saver.due()
    timed, _, _, _ = checkpointer(tmp_path / "t", checkpoint_every_seconds=0.05)
    assert not timed.due()
    time.sleep(0.06)
    assert timed.due()


def test_a_save_commits_the_plain_dict_and_says_so_once(tmp_path):
    saver, task, run, _ = checkpointer(tmp_path)
    task.train_step()
    assert saver.save(epoch_end=True, metric=0.5, wait=True)
    assert (saver.last.step, events(run.path, "checkpoint")[0]["step"]) == (1, 1)
    entry = CheckpointStore(run.path).entries()[-1]
    state = torch.load(run.path / entry["file"], weights_only=True)
    assert set(state) == {"format", "step", "epoch", "task", "rng", "loop"} and state["step"] == 1
    assert state["epoch"] == 1 / task.steps_per_epoch and entry["metric"] == 0.5 and entry["epoch_end"]
    assert set(state["rng"]) >= {"python", "numpy", "torch"} and state["loop"]["history"] == []
    assert state["loop"]["window"]["steps"] == 0  # the epoch under way (this test adds no step to it)
    assert saver.save_if_needed() and len(events(run.path, "checkpoint")) == 1  # this step is saved already


def test_a_failed_write_is_reported_once_and_its_recovery_too(tmp_path, monkeypatch):
    saver, task, run, warnings = checkpointer(tmp_path)
    task.train_step()
    saver.save(wait=True)
    monkeypatch.setattr(jobs.run.files, "_write_all", enospc_after(0.5, lambda name: name.startswith(".ckpt")))
    for _ in range(3):
        task.train_step()
        assert saver.save(wait=True) is False
    assert saver.last.step == 1 and "No space left on device" in saver.not_saved()
    assert saver.not_saved().endswith("the last committed checkpoint (step 1) is intact")
    (failed,) = events(run.path, "write-failed")
    assert failed["message"].startswith("checkpoint write failed: [Errno 28] No space left on device; the last "
                                        "committed checkpoint (step 1) is intact; training goes on")
    assert len(warnings) == 1
    monkeypatch.undo()
    task.train_step()
    assert saver.save(wait=True) and saver.last.step == 5
    (recovered,) = events(run.path, "write-recovered")
    assert recovered["failures"] == 3 and recovered["step"] == 5


def test_nonfinite_weights_end_the_run_as_diverged_before_a_commit(tmp_path):
    saver, task, run, _ = checkpointer(tmp_path)
    task.train_step()
    with torch.no_grad():
        task.model.weight[0, 0] = float("nan")
    with pytest.raises(Diverged) as raised:
        saver.save(wait=True)
    assert raised.value.what == "weights" and CheckpointStore(run.path).entries() == []
