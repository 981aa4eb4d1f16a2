"""--tensorboard: the run's scalars under <run>/tensorboard, read back with TensorBoard's own reader. SIGKILLed and
resumed, the run shows one loss per step and tag (what the killed process wrote past its checkpoint is purged, and
nothing up to the checkpoint is missing) and one point per epoch."""
import pytest

from tests.helpers_runs import LONG, LONG_STEPS, STEPS_PER_EPOCH, call, discard, events, spawn, wait_for_event

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed: pip install -e '.[tensorboard]'")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

pytestmark = pytest.mark.usefixtures("hermetic")


def scalars(run_dir, tag: str) -> list:
    accumulator = EventAccumulator(str(run_dir / "tensorboard"))
    accumulator.Reload()
    return accumulator.Scalars(tag)


def test_a_killed_and_resumed_run_shows_one_scalar_per_step_and_tag(tmp_path):
    runs = tmp_path / "runs"
    path = runs / "tb"
    proc = spawn("train.py", *LONG, "--run-id", "tb", "--runs-dir", runs, "--tensorboard", "--checkpoint-every-steps",
                 "3", slow=0.05)
    try:
        while not any(e["step"] >= 30 for e in events(path, "checkpoint")):
            assert wait_for_event(path, proc, {"checkpoint"}) is not None, proc.stderr
        proc.kill9()
    finally:
        discard(proc)
    code, out, err = call("resume", "--run-id", "tb", "--runs-dir", runs, "--local")
    assert code == 0, err
    (resumed,) = events(path, "resume")
    assert len(list((path / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one file per process
    losses = scalars(path, "train/loss")
    assert [e.step for e in losses] == list(range(1, LONG_STEPS + 1)), resumed
    assert [e.step for e in scalars(path, "train/lr")] == list(range(1, LONG_STEPS + 1))
    epochs = scalars(path, "epoch/val_accuracy")
    assert [e.step for e in epochs] == list(range(STEPS_PER_EPOCH, LONG_STEPS + 1, STEPS_PER_EPOCH))


def test_without_the_package_it_is_one_clear_line(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    code, out, err = call("train", *LONG, "--run-id", "x", "--runs-dir", tmp_path, "--tensorboard")
    assert code == 2 and err.strip() == "error: --tensorboard needs the tensorboard package: pip install -e " \
        "'.[tensorboard]'"
    assert not (tmp_path / "x").exists()
