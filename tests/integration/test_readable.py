"""Plain log lines and event details show rounded numbers; the JSON files keep them whole."""
import json
import re

import pytest

from tests.helpers_runs import SHORT, call

pytestmark = pytest.mark.usefixtures("hermetic")


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
