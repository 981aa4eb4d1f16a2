"""The loop's figures in the workload's words (jobs.train.metrics): the epoch's sums, its record, the best metric."""
import time

import pytest
import torch

from jobs.distributed.ranks import Ranks
from jobs.train.metrics import EpochWindow, LoopState, Metrics
from tests.tiny_task import TinyTask


def test_counts_weight_the_loss_and_give_the_accuracy_and_the_rate():
    window = EpochWindow("images")
    window.add({"loss": torch.tensor(1.0), "images": 2, "correct": torch.tensor(1), "lr": 0.1})
    window.add({"loss": 0.25, "images": 6, "correct": 6, "lr": 0.05})
    figures = window.figures(Ranks(), seconds=2.0)
    assert figures == {"train_loss": (1.0 * 2 + 0.25 * 6) / 8, "train_accuracy": 7 / 8, "lr": 0.05,
                       "images_per_sec": 4.0}
    assert list(figures) == ["train_loss", "train_accuracy", "lr", "images_per_sec"]  # the line's order
    text, rate = window.progress(world_size=1)
    assert text.startswith("loss 0.4375 acc 87.50% lr 0.05 ") and text.endswith(" img/s") and rate > 0


def test_only_a_loss_is_needed_and_other_numbers_are_averaged_over_the_steps():
    window = EpochWindow("samples")
    window.add({"loss": torch.tensor(2.0), "grad_norm": torch.tensor(3.0)})
    window.add({"loss": torch.tensor(1.0), "grad_norm": 1.0})
    figures = window.figures(Ranks(), seconds=4.0)
    assert figures == {"train_loss": 1.5, "train_grad_norm": 2.0, "steps_per_sec": 0.5}
    text, _ = window.progress(world_size=1)
    assert text.startswith("loss 1.5000 grad_norm 2 ") and text.endswith(" steps/s")


def test_a_window_sums_into_its_own_tensors():
    window, loss, correct = EpochWindow("images"), torch.tensor(1.0), torch.tensor(3)
    window.add({"loss": loss, "images": 4, "correct": correct})
    loss.fill_(100.0)
    correct.fill_(0)  # the task reuses its tensors: the sums must not change with them
    assert window.figures(Ranks(), 1.0)["train_accuracy"] == 0.75 and window.figures(Ranks(), 1.0)["train_loss"] == 1.0


def test_epochs_are_evaluated_on_their_cadence_and_at_the_end_and_the_best_is_kept():
    task = TinyTask({"epochs": 3})
    metrics = Metrics(LoopState(), "val_score", eval_every_epochs=2, ranks=Ranks(), unit=task.unit)
    records = []
    for _ in range(3):
        metrics.start_epoch()
        for _ in range(task.steps_per_epoch):
            metrics.add(task.train_step())
        records.append(metrics.end_epoch(task))
    assert [r["epoch"] for r in records] == [1, 2, 3] and [r["step"] for r in records] == [4, 8, 12]
    assert "val_score" not in records[0] and "val_score" in records[1] and "val_score" in records[2]
    assert metrics.state.best_metric == max(records[1]["val_score"], records[2]["val_score"])
    assert metrics.last_metric == records[2]["val_score"] and metrics.state.history == records
    assert metrics.rate == records[2]["samples_per_sec"] and metrics.rate_unit == "samples"
    assert metrics.state.train_seconds == pytest.approx(sum(r["epoch_seconds"] for r in records))


def test_the_display_comes_at_most_twice_a_second():
    metrics = Metrics(LoopState(), None, 1, Ranks(), "samples")
    assert metrics.add({"loss": 1.0}) is True and metrics.add({"loss": 1.0}) is False
    metrics.window.shown = time.perf_counter() - 1
    assert metrics.add({"loss": 1.0}) is True and metrics.progress().startswith("loss 1.0000")


def test_the_loop_state_is_the_checkpoints_plain_dict_both_ways():
    old = {"history": [{"epoch": 1}], "best_metric": 0.5, "train_seconds": 3.0}  # as checkpoints hold it
    assert LoopState.from_dict(old).to_dict() == old
    finished = dict(old, final_metrics={"test_accuracy": 0.9})
    assert LoopState.from_dict(finished).to_dict() == finished
    assert LoopState.from_dict(None).to_dict() == {"history": [], "best_metric": None, "train_seconds": 0.0}
    newer = dict(old, written_by_a_newer_version=[1, 2])  # kept as it was, not refused
    assert LoopState.from_dict(newer).to_dict() == newer


def test_a_task_that_names_no_unit_is_read_as_the_contract_had_it_before():
    metrics = Metrics(LoopState(), None, 1, Ranks(), unit=None)
    metrics.add({"loss": 1.0, "images": 4, "correct": 2, "lr": 0.1})  # the old contract: images and correct
    assert metrics.unit == "images" and metrics.last_count == 4
    figures = metrics.window.figures(Ranks(), seconds=1.0)
    assert figures == {"train_loss": 1.0, "train_accuracy": 0.5, "lr": 0.1, "images_per_sec": 4.0}
    plain = Metrics(LoopState(), None, 1, Ranks(), unit=None)
    plain.add({"loss": 1.0})
    assert plain.unit == "samples" and plain.window.figures(Ranks(), 2.0) == {"train_loss": 1.0, "steps_per_sec": 0.5}


def test_an_epoch_resumed_from_its_sums_logs_what_an_uninterrupted_one_does():
    steps = [{"loss": torch.tensor(0.1 * i + 1 / 3), "images": 7, "correct": torch.tensor(i), "lr": 0.1 / (i + 1),
              "grad_norm": torch.tensor(i / 7)} for i in range(9)]
    whole = EpochWindow("images")
    for out in steps:
        whole.add(out)
    cut = EpochWindow("images")
    for out in steps[:4]:
        cut.add(out)
    state = cut.state()
    assert isinstance(state["correct"], int) and isinstance(state["loss"], float)  # plain numbers, exact
    resumed = EpochWindow.from_state(state)
    assert time.perf_counter() - resumed.started >= state["seconds"]  # its time and rate go on from the cut
    for out in steps[4:]:
        resumed.add(out)
    assert resumed.figures(Ranks(), 1.0) == whole.figures(Ranks(), 1.0)
