"""A second workload, unlike the ResNet (examples/char_lm.py: a position in a token stream, its own
generator, Adam, a GRU), trained by the same jobs/ through the generic scripts/run.py: SIGKILLed mid-run
and resumed, it ends bit-equal to an uninterrupted run."""
import json
import random
import re

import pytest

from tests.helpers_runs import call, discard, events, final_digest, run, spawn, wait_for_event

pytestmark = pytest.mark.usefixtures("hermetic")

WORKLOAD = "examples.char_lm:WORKLOAD"
WORDS = "the a run job node step epoch signal queue resume checkpoint model token stream train".split()


def lm_args(tmp_path, run_id: str) -> list:
    text = tmp_path / "text.txt"
    if not text.exists():
        rng = random.Random(0)
        text.write_text(" ".join(rng.choice(WORDS) for _ in range(4000)))
    config = {"text": str(text), "context": 16, "batch_size": 8, "embed": 16, "hidden": 32, "steps_per_epoch": 12,
              "epochs": 4}
    return ["--workload", WORKLOAD, "--config", json.dumps(config), "--run-id", run_id, "--runs-dir",
            tmp_path / "runs", "--checkpoint-every-steps", "1"]


def test_sigkill_and_resume_end_bit_equal_to_an_uninterrupted_run(tmp_path):
    done = run("run.py", *lm_args(tmp_path, "whole"))
    assert done.returncode == 0, done.stderr
    proc = spawn("run.py", *lm_args(tmp_path, "killed"), slow=0.05)
    path = tmp_path / "runs" / "killed"
    try:
        assert wait_for_event(path, proc, {"checkpoint"}) is not None, proc.stderr
        proc.kill9()
    finally:
        discard(proc)
    killed_at = max(e["step"] for e in events(path, "checkpoint"))
    assert killed_at < 48, "the run ended before the kill"
    code, out, err = call("resume", "--run-id", "killed", "--runs-dir", tmp_path / "runs", "--local")
    assert code == 0, err
    (resumed,) = events(path, "resume")
    assert 0 < resumed["step"] <= killed_at
    assert final_digest(path) == final_digest(tmp_path / "runs" / "whole")
    metrics = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4] and metrics[-1]["val_accuracy"] > 0.1


@pytest.mark.parametrize("args, message", [
    (["--workload", "nowhere.at_all:WORKLOAD"], "workload 'nowhere.at_all:WORKLOAD': no module 'nowhere' here; "
                                                "the workload's module must be importable"),
    (["--workload", "examples.char_lm"], "workload 'examples.char_lm': name the workload object as module:ATTRIBUTE"),
    (["--workload", "examples.char_lm:CharTask"], "workload 'examples.char_lm:CharTask' is a class: name the "
                                                  "workload object"),
    (["--workload", WORKLOAD, "--config", "{not json"], "--config: not valid JSON"),
    (["--workload", WORKLOAD, "--config", '{"text": "/no/such/file"}'], "text: no file '/no/such/file'"),
    (["--workload", WORKLOAD, "--config", '{"text": "README.md", "context": 0}'], "context must be a positive"),
    (["--workload", WORKLOAD, "--resume-if-exists", "--override", "hidden"], "--override hidden: this workload"),
])
def test_bad_input_to_run_py_is_one_clean_line(tmp_path, args, message):
    code, out, err = call("run", *args, "--run-id", "x", "--runs-dir", tmp_path)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_a_partial_config_resumes_with_its_defaults_filled_in(tmp_path):
    """The config names a few fields and the workload's complete() fills in the rest: the run freezes the
    whole config, and the same partial config given again (a requeued job's --resume-if-exists) matches it."""
    args = lm_args(tmp_path, "partial")
    args[args.index("--config") + 1] = json.dumps({"text": str(tmp_path / "text.txt"), "steps_per_epoch": 3,
                                                   "epochs": 1, "hidden": 8, "embed": 4})
    code, out, err = call("run", *args)
    assert code == 0, err
    frozen = json.loads((tmp_path / "runs" / "partial" / "config.json").read_text())["task"]
    assert frozen["context"] == 32 and frozen["lr"] == 3e-3  # the workload's defaults, frozen
    code, out, err = call("run", *args, "--resume-if-exists")
    assert code == 0 and "contradicts" not in err, err


def test_evaluate_report_and_status_speak_the_workloads_words(tmp_path):
    """The tools build the run's own workload: evaluate.py scores char_lm's checkpoints with its evaluate() and
    final_metrics(), report.py and status.py show its metric names and its unit."""
    args = lm_args(tmp_path, "lm")
    args[args.index("--config") + 1] = json.dumps({"text": str(tmp_path / "text.txt"), "steps_per_epoch": 4,
                                                   "epochs": 2, "hidden": 8, "embed": 4, "context": 8})
    code, out, err = call("run", *args)
    assert code == 0, err
    runs = tmp_path / "runs"
    code, out, err = call("evaluate", "--run-id", "lm", "--runs-dir", runs, "--json")
    assert code == 0, err
    (final,) = json.loads(out)
    finish = events(runs / "lm", "finish")[0]
    assert final["split"] == "test" and final["test_accuracy"] == finish["test_accuracy"]
    code, out, err = call("evaluate", "--run-id", "lm", "--runs-dir", runs, "--split", "val", "--checkpoint", "all")
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("step"))
    assert header.split() == ["step", "epoch", "split", "val_accuracy", "val_loss", "val_bits_per_byte"]
    code, out, err = call("report", "lm", "--runs-dir", runs, "--output", tmp_path / "lm.png")
    assert code == 0, err
    assert "| best validation accuracy | test accuracy | test bits per byte | test loss |" in out
    assert " tok/s |" in out
    code, out, err = call("status", "--run-id", "lm", "--runs-dir", runs)
    assert code == 0, err
    assert "validation bits per byte" in out and "tokens/s" in out and re.search(r"^unit +tokens$", out, re.M)
