"""The ResNet training task: schedule, learning, and a state_dict that captures the whole future."""
import math

import pytest
import torch

from jobs.checkpoint.host_copy import snapshot
from jobs.checkpoint.rng import capture_rng, restore_rng
from resnet.config import DEFAULTS
from resnet.task import ResNetTask, epoch_permutation, lr_factor


def tiny_config(**changes) -> dict:
    return {**DEFAULTS, "size": 1, "batch_size": 32, "epochs": 2, "synthetic": 400, **changes}


def test_step_schedule_divides_by_ten_at_half_and_three_quarters():
    total = 64_000
    assert lr_factor(0, total, 352, "step", 0) == 1.0
    assert lr_factor(31_999, total, 352, "step", 0) == 1.0
    assert lr_factor(32_000, total, 352, "step", 0) == pytest.approx(0.1)
    assert lr_factor(47_999, total, 352, "step", 0) == pytest.approx(0.1)
    assert lr_factor(48_000, total, 352, "step", 0) == pytest.approx(0.01)


def test_warmup_and_cosine():
    assert lr_factor(0, 1000, 100, "cosine", 1.0) == pytest.approx(0.01)
    assert lr_factor(99, 1000, 100, "cosine", 1.0) == pytest.approx(1.0)
    assert lr_factor(550, 1000, 100, "cosine", 1.0) == pytest.approx(0.5)
    assert lr_factor(999, 1000, 100, "cosine", 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.999)))


def test_epoch_permutation_is_a_pure_function_of_seed_and_epoch():
    assert torch.equal(epoch_permutation(100, 0, 3), epoch_permutation(100, 0, 3))
    assert not torch.equal(epoch_permutation(100, 0, 3), epoch_permutation(100, 0, 4))
    assert sorted(epoch_permutation(100, 1, 0).tolist()) == list(range(100))


def test_a_size_one_net_learns_synthetic_data_well_above_chance():
    task = ResNetTask(tiny_config(synthetic=1200, epochs=4))
    assert task.describe() == "resnet-8 standard"
    while task.step < task.total_steps:
        task.train_step()
    assert task.evaluate()["val_accuracy"] > 0.5  # chance is 0.1
    assert task.final_metrics()["test_accuracy"] > 0.5


def test_state_dict_and_rng_capture_the_whole_future():
    config = tiny_config()
    task = ResNetTask(config)
    for _ in range(7):  # into the second epoch: permutation and generator state both matter
        task.train_step()
    saved = snapshot({"task": task.state_dict(), "rng": capture_rng()})
    for _ in range(7):
        task.train_step()
    expected = task.state_dict()["model"]

    torch.manual_seed(1234)  # a different global RNG than the saved one
    resumed = ResNetTask(config)
    resumed.load_state_dict(saved["task"])
    restore_rng(saved["rng"])
    for _ in range(7):
        resumed.train_step()
    got = resumed.state_dict()["model"]
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_logits_and_loss_use_no_softmax_before_the_loss():
    task = ResNetTask(tiny_config())
    out = task.train_step()
    assert out["loss"].item() == pytest.approx(math.log(10), abs=0.7)  # a softmax first would floor it higher
