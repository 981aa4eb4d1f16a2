"""What the layout before jobs/ was split into packages wrote keeps working (docs/design.md, "Decisions"): a
submitit job it pickled trains, and a run it wrote resumes through `python -m jobs.supervise` (the batch scripts'
command) to the weights the old code reached (tests/data/previous-layout/README.md)."""
import json
import shutil
import subprocess

import pytest

from jobs.run.run_dir import RunDir
from tests.helpers_runs import PYTHON, REPO, SHORT, call, clean_env, events, final_digest, start, status_of

OLD = REPO / "tests" / "data" / "previous-layout"
OLD_DIGEST = "cfb7f7c359f56f4c666545fccbbdfeac260e4c6f8daec7fed98d6c11e28470c3"  # the old code's 3 epochs
pytestmark = pytest.mark.usefixtures("hermetic")


def test_a_submitit_job_pickled_by_the_previous_layout_trains_its_run(tmp_path):
    runs = tmp_path / "runs"
    code = f"""
from submitit.core.utils import DelayedSubmission
submission = DelayedSubmission.load({str(OLD / "submitit-job.pkl")!r})  # imports jobs.submitit_job, as submitit does
job = submission.function
job.runs_dir = {str(runs)!r}  # it was queued for /nonexistent/runs
print(type(job).__module__, submission.result())
"""
    done = subprocess.run([PYTHON, "-c", code], cwd=REPO, env=clean_env(), capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"jobs.launch.submitit_job {{'run_id': 'pickled', 'runs_dir': '{runs}'}}"
    assert status_of(runs, "pickled")["state"] == "completed"
    code, out, err = call("train", *SHORT, "--device", "cpu", "--run-id", "same", "--runs-dir", runs)
    assert code == 0, err
    assert final_digest(runs / "pickled") == final_digest(runs / "same")  # the very run it was queued for


def test_a_run_written_by_the_previous_layout_resumes_under_the_supervisor(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(OLD / "runs", runs)
    before = status_of(runs, "char-lm")  # the old status file's names, read in the generic ones
    old_status = json.loads((OLD / "runs" / "char-lm" / "status.json").read_text())
    assert before["primary_metric"] == "val_accuracy" and before["best_metric"] == old_status["best_accuracy"]
    assert before["final_metrics"]["test_accuracy"] == old_status["test_accuracy"] and before["unit"] == "images"
    proc = start("resume.py", "--run-id", "char-lm", "--runs-dir", runs, "--epochs", "3", "--local", supervised=True)
    assert proc.wait(180) == 0, proc.stderr
    (resumed,) = events(runs / "char-lm", "resume")
    assert resumed["step"] == 10 and resumed["changes"] == {"epochs": 3}
    assert final_digest(runs / "char-lm") == OLD_DIGEST
    after = status_of(runs, "char-lm")
    assert after["state"] == "completed" and after["step"] == 30 and after["unit"] == "tokens"
    assert [m["epoch"] for m in RunDir(runs, "char-lm").metrics()] == [1, 2, 3]
