"""Plain log lines and event details show rounded numbers; the JSON files keep them whole."""
import json
import re

import pytest

from jobs.readable import readable, readable_fields
from tests.helpers_runs import SHORT, call

pytest_plugins = ["tests.helpers_runs"]  # the fixtures `reference` and `hermetic`
pytestmark = pytest.mark.usefixtures("hermetic")


def test_each_kind_of_number_is_rounded_by_what_it_measures():
    assert readable("val_accuracy", 0.852134) == "85.21%"
    assert readable("test_loss", 0.8109223937988281) == "0.8109"
    assert readable("images_per_sec", 817.4521) == "817"
    assert readable("epoch_seconds", 2.04529) == "2.05"
    assert readable("lr", 0.013612345) == "0.01361"
    assert readable("step", 1056) == "1056" and readable("signal", "SIGTERM") == "SIGTERM"
    assert readable("checkpoint_ok", True) == "True" and readable("test_accuracy", None) == "-"
    assert readable("task_parts", {"data": 0.2061, "model": 5.45612}) == "{data=0.2061, model=5.456}"
    assert readable_fields({"epoch": 3, "train_loss": 0.65601, "time": 1.5}, skip=("time",)) == \
        "epoch 3 train_loss 0.6560"


def test_a_runs_plain_lines_are_rounded_and_its_files_are_not(tmp_path):
    code, out, err = call("train", *SHORT, "--run-id", "r", "--runs-dir", tmp_path)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("epoch 1/2 "))
    assert re.search(r" train_loss \d+\.\d{4} train_accuracy \d+\.\d{2}% lr 0\.1 images_per_sec \d+ "
                     r"epoch_seconds \d+\.\d{2} val_accuracy \d+\.\d{2}% val_loss \d+\.\d{4} eval_seconds "
                     r"\d+\.\d{2}$", line), line
    finished = next(line for line in out.splitlines() if line.startswith("finished run r"))
    assert re.search(r"test_accuracy \d+\.\d{2}%, test_loss \d+\.\d{4}$", finished), finished
    metrics = [json.loads(m) for m in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(repr(metrics[0]["train_loss"])) > 8  # the file holds the whole float
