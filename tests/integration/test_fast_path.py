"""The GPU fast path and the recipe presets, on the CPU (the GPU tests are tests/integration/test_gpu.py: CUDA graphs
cannot be captured on a CPU).

On the CPU, torch.compile traces with the "eager" backend here (resnet.task.COMPILE_BACKEND): the same
wrapping (a compiled module around the plain one) in seconds instead of inductor's minute."""
import json

import pytest
import torch

import resnet.task
from resnet.config import DEFAULTS, PRESETS, complete
from resnet.graphed_step import GraphedStep
from resnet.task import ResNetTask
from tests.helpers_runs import SHORT, TINY, call, copy_run, events, final_digest, manifest_entries, status_of

pytestmark = pytest.mark.usefixtures("hermetic")


@pytest.fixture
def traced(monkeypatch):
    monkeypatch.setattr(resnet.task, "COMPILE_BACKEND", "eager")


def tiny(**changes) -> dict:
    return {**DEFAULTS, "size": 1, "batch_size": 32, "epochs": 2, "synthetic": 256, **changes}


def test_fast_path_state_dicts_have_the_plain_modules_keys(traced):
    fast = ResNetTask(tiny(fast=True, compile=True, bf16=True, channels_last=True))
    eager = ResNetTask(tiny())
    # where each start's seconds went, for jobs' first-step event (a graph's warm-up and capture: on a GPU)
    assert list(fast.startup_phases) == ["data", "to_device", "model", "compile", "optimizer"]
    assert list(eager.startup_phases) == ["data", "to_device", "model", "optimizer"]
    # the compiled wrapper's own state dict would carry the prefix: the task saves the plain module's
    assert all(k.startswith("_orig_mod.") for k in fast.forward.state_dict())
    for _ in range(3):
        fast.train_step()
    state = fast.state_dict()
    assert not [k for k in state["model"] if "_orig_mod" in k]
    assert state["model"].keys() == eager.state_dict()["model"].keys()
    eager.load_state_dict(state)  # a fast-path checkpoint loads into an eager task, and back
    assert all(torch.equal(a, b) for a, b in zip(eager.model.state_dict().values(), state["model"].values(),
                                                  strict=True))
    fast.load_state_dict(eager.state_dict())
    assert fast.step == eager.step == 3
    # evaluation runs through the compiled module too, and scores what the same settings score uncompiled
    uncompiled = ResNetTask(tiny(fast=True, bf16=True, channels_last=True))
    uncompiled.load_state_dict(fast.state_dict())
    assert fast.evaluate() == uncompiled.evaluate()


def test_an_optimizer_state_keeps_the_loading_runs_kernel_choice():
    """A GPU fast-path checkpoint says fused=True (the graph's SGD kernel); an eager run that loads it keeps
    its own choice, so its updates stay the ones it made before."""
    task = ResNetTask(tiny())
    state = task.state_dict()
    state["optimizer"]["param_groups"][0]["fused"] = True
    task.load_state_dict(state)
    assert task.optimizer.param_groups[0]["fused"] is None and task.optimizer.param_groups[0]["foreach"] is None


def test_the_graphs_warm_up_steps_are_undone():
    """Capturing a CUDA graph needs warm-up steps on the real batch: afterwards the weights, BatchNorm's
    statistics and the momentum are as before them (in place: the graph keeps their addresses), and a
    momentum buffer that the warm-up created is zero, which SGD's next step treats as no buffer at all."""
    task = ResNetTask(tiny())
    task.train_step()  # momentum buffers exist
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    momentum = {p: task.optimizer.state[p]["momentum_buffer"].clone() for p in task.model.parameters()}
    addresses = [p.data_ptr() for p in task.model.parameters()]
    undo = GraphedStep(task.model, task.optimizer, task._step)._undo_record()
    for _ in range(3):
        task.train_step()
    undo()
    assert [p.data_ptr() for p in task.model.parameters()] == addresses
    assert all(torch.equal(v, before[k]) for k, v in task.model.state_dict().items())
    assert all(torch.equal(task.optimizer.state[p]["momentum_buffer"], m) for p, m in momentum.items())

    fresh, twin = ResNetTask(tiny()), ResNetTask(tiny())
    undo = GraphedStep(fresh.model, fresh.optimizer, fresh._step)._undo_record()
    fresh.train_step()
    undo()
    assert all(not fresh.optimizer.state[p]["momentum_buffer"].any() for p in fresh.model.parameters())
    fresh.augment_generator.set_state(twin.augment_generator.get_state())
    fresh.step = 0
    fresh.train_step(), twin.train_step()  # the same first step, with a zero buffer or none
    assert all(torch.equal(a, b) for a, b in zip(fresh.model.state_dict().values(), twin.model.state_dict().values(),
                                                  strict=True))


def test_a_fast_run_continues_eager_and_back(tmp_path, traced):
    """train.py --fast, then resumed without it (--override fast), then with it again: each picks up the
    other's checkpoint at its step, and the run completes."""
    args = (*TINY, "--run-id", "fast", "--runs-dir", tmp_path)
    code, out, err = call("train", *args, "--epochs", "1", "--fast")
    assert code == 0, err
    config = json.loads((tmp_path / "fast" / "config.json").read_text())["task"]
    assert config["fast"] and config["bf16"] and config["channels_last"]
    code, out, err = call("train", *args, "--epochs", "2", "--resume-if-exists", "--override", "epochs",
                          "--override", "fast")
    assert code == 0, err
    code, out, err = call("train", *args, "--epochs", "3", "--fast", "--resume-if-exists", "--override", "epochs",
                          "--override", "fast")
    assert code == 0, err
    resumes = events(tmp_path / "fast", "resume")
    assert [e["step"] for e in resumes] == [7, 14]
    assert [e["changes"] for e in resumes] == [
        {"bf16": False, "channels_last": False, "epochs": 2, "fast": False},
        {"bf16": True, "channels_last": True, "epochs": 3, "fast": True}]
    assert status_of(tmp_path, "fast")["state"] == "completed"
    starts = events(tmp_path / "fast", "first-step")
    assert len(starts) == 3 and all(set(e["task_parts"]) >= {"data", "model", "optimizer"} for e in starts)


def test_presets_fill_the_fields_and_flags_override_them(tmp_path):
    code, out, err = call("train", *SHORT, "--preset", "better", "--weight-decay", "2e-4", "--run-id", "b",
                          "--runs-dir", tmp_path)
    assert code == 0, err
    config = json.loads((tmp_path / "b" / "config.json").read_text())["task"]
    assert config["preset"] == "better"
    given = ("weight_decay", "epochs")  # on the command line: they beat the preset
    assert {k: config[k] for k in PRESETS["better"] if k not in given} == {
        k: v for k, v in PRESETS["better"].items() if k not in given}
    assert config["weight_decay"] == 2e-4 and config["epochs"] == 2 and config["lr"] == 0.1
    # resuming with another recipe is a contradiction, named field by field
    code, out, err = call("train", *SHORT, "--run-id", "b", "--runs-dir", tmp_path, "--resume-if-exists")
    assert code == 2 and "contradicts the run being resumed" in err and "preset: run has 'better', given 'paper'" in err


def test_a_run_frozen_before_the_presets_resumes_as_it_was(tmp_path, reference):
    """config.json written before preset/nesterov/label_smoothing/eval_flip/fast existed: resume fills them in
    as that run had them (off), and the run ends bit-equal to the reference."""
    path = copy_run(reference, tmp_path, cut_at=63)
    frozen = json.loads((path / "config.json").read_text())
    for field in ("preset", "nesterov", "label_smoothing", "eval_flip", "fast"):
        del frozen["task"][field]
    (path / "config.json").write_text(json.dumps(frozen))
    assert complete(frozen["task"]) == json.loads(json.dumps({**frozen["task"], "preset": "paper", "nesterov": False,
                                                             "label_smoothing": 0.0, "eval_flip": False,
                                                             "fast": False}))
    code, out, err = call("resume", "--run-id", "ref", "--runs-dir", tmp_path, "--local")
    assert code == 0, err
    assert final_digest(path) == reference.digest


def test_bench_json_on_the_cpu(tmp_path):
    code, out, err = call("bench", "--device", "cpu", "--size", "1", "--batch-size", "32", "--steps", "2",
                          "--saves", "1", "--json")
    assert code == 0, err
    figures = json.loads(out)
    keys = ("device, model, size, batch_size, seed_style_img_s, eager_img_s, fast_img_s, compile_s, sync_save_ms, "
            "async_stall_ms, checkpoint_overhead_pct").split(", ")
    assert set(keys) <= set(figures), figures
    assert figures["device"] == "cpu" and figures["model"] == "resnet-8 standard" and figures["batch_size"] == 32
    assert figures["fast_img_s"] is None and figures["compile_s"] is None  # no CUDA graphs on a CPU
    assert figures["seed_style_img_s"] > 0 and figures["eager_img_s"] > 0
    assert figures["sync_save_ms"] > 0 and figures["async_stall_ms"] > 0 and figures["checkpoint_overhead_pct"] >= 0


def test_checkpoint_manifest_of_a_fast_run_is_plain(tmp_path, traced):
    code, out, err = call("train", *TINY, "--epochs", "1", "--fast", "--run-id", "f", "--runs-dir", tmp_path)
    assert code == 0, err
    state = torch.load(tmp_path / "f" / manifest_entries(tmp_path / "f")[-1]["file"], weights_only=True)
    assert not [k for k in state["task"]["model"] if k.startswith("_orig_mod")]
