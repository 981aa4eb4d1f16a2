"""The workload contract checked at its edges (docs/design.md, invariant 7): what a workload's task returns or
holds is taken where the meaning is clear, and otherwise the run ends with one line naming what is wrong (exit 8,
never retried, never called a full disk); a bug in the workload's own code keeps its traceback (exit 1); a resume
may not swap the workload, and what it changes of the loop's settings is recorded."""
import json
import subprocess

import pytest

from jobs.exit_codes import EXIT_BAD_INPUT, EXIT_CONTRACT, EXIT_FAILED
from tests.helpers_runs import PYTHON, REPO, SCRIPTS, call, clean_env, events, manifest_entries, status_of

pytestmark = pytest.mark.usefixtures("hermetic")
WORKLOADS = "tests.broken_workloads"


def train(runs, workload: str, *extra, run_id="w"):
    return call("run", "--workload", f"{WORKLOADS}:{workload}", "--config", '{"epochs": 2}', "--run-id", run_id,
                "--runs-dir", runs, *extra)


@pytest.mark.parametrize("workload", ["FLOAT_LOSS", "LOSS_ONLY", "NO_MODEL_KEY"])
def test_what_the_contract_allows_trains_to_the_end(tmp_path, workload):
    code, out, err = train(tmp_path, workload)
    assert code == 0, err
    final = manifest_entries(tmp_path / "w")[-1]
    assert final["final"] and final["step"] == 8 and len(final["model_digest"]) == 64


@pytest.mark.parametrize("workload, says", [
    ("TEXT_STEP", "train_step() returned str 'done'; it must return the loss, or a dict with \"loss\""),
    ("TENSOR_METRICS", "evaluate() returned 'val_per_sample': a tensor of shape [16]; every value must be a number"),
    ("OPAQUE_STATE", "the checkpoint's state holds what torch.load(weights_only=True) refuses to load back at a "
                     "resume (tests.broken_workloads.Opaque)"),
])
def test_a_broken_contract_is_one_line_exit_8_and_never_a_full_disk(tmp_path, workload, says):
    code, out, err = train(tmp_path, workload)
    assert code == EXIT_CONTRACT, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: the workload broke the contract at step ") and says in line, line
    assert "docs/your-own-training.md" in line and "disk" not in err and "Traceback" not in err
    (error,) = events(tmp_path / "w", "error")
    assert error["cause"] == "contract" and error["message"] == line[len("error: "):]
    summary = status_of(tmp_path, "w")
    assert summary["state"] == "failed" and "fix the workload's code, then resume" in summary["hint"]


def test_a_bug_in_the_workloads_own_code_keeps_its_traceback(tmp_path):
    done = subprocess.run([PYTHON, str(SCRIPTS / "run.py"), "--workload", f"{WORKLOADS}:BUGGY_STEP", "--config",
                           '{"epochs": 2}', "--run-id", "w", "--runs-dir", tmp_path], cwd=REPO, timeout=120,
                          env=clean_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == EXIT_FAILED, done.stderr
    assert "Traceback" in done.stderr and "ZeroDivisionError: division by zero" in done.stderr
    assert "1 / 0" in done.stderr and "disk" not in done.stderr  # its own line, in its own file
    (error,) = events(tmp_path / "w", "error")
    assert error["message"] == "ZeroDivisionError: division by zero" and error["step"] == 5


def test_a_resume_may_not_swap_the_workload_and_nothing_is_rewritten(tmp_path):
    code, out, err = train(tmp_path, "FLOAT_LOSS")
    assert code == 0, err
    before = {name: (tmp_path / "w" / name).read_bytes() for name in ("config.json", "events.jsonl", "status.json")}
    code, out, err = train(tmp_path, "NO_MODEL_KEY", "--resume-if-exists")
    assert code == EXIT_BAD_INPUT
    assert err.strip() == (f"error: this config contradicts the run being resumed (workload: run has "
                           f"'{WORKLOADS}:FLOAT_LOSS', given '{WORKLOADS}:NO_MODEL_KEY'). Resume it with its own "
                           f"workload, or start a new run id")
    assert {name: (tmp_path / "w" / name).read_bytes() for name in before} == before


def test_what_a_resume_changes_of_the_loop_is_recorded(tmp_path):
    code, out, err = train(tmp_path, "FLOAT_LOSS", "--checkpoint-every-steps", "2")
    assert code == 0, err
    code, out, err = call("run", "--workload", f"{WORKLOADS}:FLOAT_LOSS", "--config", '{"epochs": 3}', "--run-id",
                          "w", "--runs-dir", tmp_path, "--resume-if-exists", "--override", "epochs",
                          "--checkpoint-every-steps", "3", "--keep-last", "5")
    assert code == 0, err
    (resumed,) = events(tmp_path / "w", "resume")
    assert resumed["changes"] == {"epochs": 3}
    assert resumed["loop_changes"] == {"checkpoint_every_steps": 3, "keep_last": 5}
    assert json.loads((tmp_path / "w" / "config.json").read_text())["loop"]["checkpoint_every_steps"] == 3


def test_a_workload_that_lets_nothing_change_says_so(tmp_path):
    code, out, err = train(tmp_path, "NOTHING_SAFE", "--resume-if-exists", "--override", "epochs")
    assert code == EXIT_BAD_INPUT
    assert err.strip() == "error: --override epochs: this workload lets a resumed run change no field"
