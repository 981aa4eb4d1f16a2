"""scripts/evaluate.py: the homework's table from a run's kept checkpoints, read-only and checksum-checked."""
import json

import pytest

from tests.helpers_runs import LONG_EPOCHS, call, copy_run, manifest_entries, status_of, tree_snapshot
from tests.integration.test_lock import end, hold

pytestmark = pytest.mark.usefixtures("hermetic")


def evaluate(runs, *args) -> tuple[int, str, str]:
    return call("evaluate", "--run-id", "ref", "--runs-dir", runs, "--device", "cpu", *args)


def test_every_kept_epoch_gives_the_validation_accuracy_training_logged(tmp_path, reference):
    """--checkpoint all on a run that kept every epoch end: one row per checkpoint, and each epoch end's
    accuracy and loss are the very figures the training logged for that epoch."""
    path = copy_run(reference, tmp_path)
    code, out, err = evaluate(tmp_path, "--checkpoint", "all", "--split", "val", "--json")
    assert code == 0, err
    results = json.loads(out)
    assert [r["step"] for r in results] == [e["step"] for e in manifest_entries(path)]
    logged = {m["epoch"]: m for m in map(json.loads, (path / "metrics.jsonl").read_text().splitlines())}
    at_epoch_ends = [r for r in results if float(r["epoch"]).is_integer()]
    assert len(at_epoch_ends) >= LONG_EPOCHS - 1
    for r in at_epoch_ends:
        assert {"step", "epoch", "split", "accuracy", "loss", "per_class_accuracy"} <= r.keys()
        assert r["split"] == "val" and len(r["per_class_accuracy"]) == 10
        assert r["accuracy"] == logged[int(r["epoch"])]["val_accuracy"], r["epoch"]
        assert r["loss"] == pytest.approx(logged[int(r["epoch"])]["val_loss"], rel=1e-6)
    code, out, err = evaluate(tmp_path, "--json")  # default: the final checkpoint, on the test set
    (final,) = json.loads(out)
    final_metrics = status_of(tmp_path, "ref")["final_metrics"]
    assert final["split"] == "test" and final["accuracy"] == final_metrics["test_accuracy"]
    assert sum(map(sum, final["confusion_matrix"])) > 0


def test_a_corrupt_checkpoint_is_skipped_with_a_message(tmp_path, reference):
    path = copy_run(reference, tmp_path)
    entries = manifest_entries(path)
    bad = entries[1]
    data = bytearray((path / bad["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / bad["file"]).write_bytes(bytes(data))
    code, out, err = evaluate(tmp_path, "--checkpoint", "all", "--json")
    assert code == 0, err
    assert [r["step"] for r in json.loads(out)] == [e["step"] for e in entries if e is not bad]
    assert f"warning: skipped the checkpoint of step {bad['step']}: {bad['file']} fails its sha256 check" in err


def test_it_only_reads_and_takes_no_lock(tmp_path, reference):
    """With a live trainer holding the run's lock, evaluate.py runs, and the run's files are unchanged."""
    copy_run(reference, tmp_path)
    holder = hold(tmp_path / "ref")
    try:
        before = tree_snapshot(tmp_path)
        code, out, err = evaluate(tmp_path, "--checkpoint", "best")
        assert code == 0, err
        assert "per-class accuracy" in out and "confusion matrix" in out
        # piped, nothing is cut off: the confusion matrix's rows hold every class, the last one too
        rows = out.split("confusion matrix")[1].strip().splitlines()[1:]
        assert len(rows) == 11 and rows[-1].split()[0] == "9" and all(len(row.split()) == 11 for row in rows[1:])
        assert tree_snapshot(tmp_path) == before
    finally:
        end(holder)


@pytest.mark.parametrize("args, message", [
    (("--checkpoint", "123456"), "no kept checkpoint at step 123456; kept: "),
    (("--checkpoint", "newest"), "--checkpoint: must be latest, best, final, all or a step number"),
])
def test_bad_checkpoint_choices_are_one_clean_line(tmp_path, reference, args, message):
    copy_run(reference, tmp_path)
    code, out, err = evaluate(tmp_path, *args)
    assert code == 2 and message in err and "Traceback" not in err
    code, out, err = call("evaluate", "--run-id", "nope", "--runs-dir", tmp_path)
    assert code == 2 and "no run 'nope'" in err
