"""scripts/status.py: the fields of --json and the state of a run as it trains, dies and completes."""
import json
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers_runs import (
    SHORT,
    SHORT_STEPS,
    call,
    checkpoint_model_digest,
    discard,
    events,
    isolated,
    manifest_entries,
    spawn,
    status_of,
    wait_for_event,
)

pytestmark = pytest.mark.usefixtures("hermetic")

FIELDS = {"run_id", "state", "epoch", "epochs", "step", "restarts", "last_checkpoint_step", "best_metric",
          "final_metrics", "slurm_job_id", "model_digest"}


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    """A real trainer: its status while it trains, after a SIGKILL, and after an in-process resume."""
    runs = tmp_path_factory.mktemp("status-runs")
    path = runs / "st"
    with isolated():  # its first use imports torch (1-2 s): not inside the trainer's 1.8 s below
        pass
    proc = spawn("train.py", *SHORT, "--run-id", "st", "--runs-dir", runs, "--checkpoint-every-steps", "1",
                 slow=0.1)
    try:
        assert wait_for_event(path, proc, {"start"}) is not None, proc.stderr
        time.sleep(0.3)
        with isolated():
            running = status_of(runs, "st")
        assert proc.poll() is None, "the run ended too soon to observe it running"
        assert proc.kill9() == -signal.SIGKILL
    finally:
        discard(proc)
    on_disk = json.loads((path / "status.json").read_text())
    with isolated():
        stopped = status_of(runs, "st")
        code, out, err = call("resume", "--run-id", "st", "--runs-dir", runs, "--local")
        assert code == 0, err
        completed = status_of(runs, "st")
    return {"runs": runs, "path": path, "pid": proc.pid, "running": running, "stopped": stopped,
            "status_file_after_kill": on_disk, "completed": completed}


def test_status_running_while_a_trainer_runs(lifecycle):
    s = lifecycle["running"]
    assert FIELDS <= s.keys()
    assert s["state"] == "running" and s["hint"] is None
    assert s["run_id"] == "st" and s["epochs"] == 2 and s["restarts"] == 0
    assert 0 <= s["step"] < SHORT_STEPS


def test_status_stopped_after_sigkill(lifecycle):
    s = lifecycle["stopped"]
    on_disk = lifecycle["status_file_after_kill"]
    # the file still says running, with the pid of the killed process: status sees through it
    assert on_disk["state"] == "running" and on_disk["pid"] == lifecycle["pid"]
    assert s["state"] == "stopped"
    assert "died without a final save" in s["hint"] and "scripts/resume.py --run-id st" in s["hint"]


def test_status_completed_fields(lifecycle):
    s, path = lifecycle["completed"], lifecycle["path"]
    assert FIELDS <= s.keys()
    assert s["run_id"] == "st" and s["state"] == "completed" and s["hint"] is None
    assert (s["epoch"], s["epochs"], s["step"]) == (2, 2, SHORT_STEPS)
    assert s["restarts"] == 1 == len(events(path, "resume"))
    assert s["last_checkpoint_step"] == SHORT_STEPS
    metrics = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert s["primary_metric"] == "val_accuracy" and s["best_metric"] == max(m["val_accuracy"] for m in metrics)
    (finish,) = events(path, "finish")
    final = s["final_metrics"]
    assert final["test_accuracy"] == finish["test_accuracy"] and 0 <= final["test_accuracy"] <= 1
    assert s["slurm_job_id"] is None
    newest = max(manifest_entries(path), key=lambda e: e["step"])
    assert newest["step"] == SHORT_STEPS and newest["final"]
    # the digest, recomputed from the checkpoint file with torch.load, independently of jobs/
    assert s["model_digest"] == checkpoint_model_digest(path / newest["file"])
    assert len(s["model_digest"]) == 64


def test_status_table_and_detail_render(lifecycle, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich's width when not on a terminal
    code, out, err = call("status", "--runs-dir", lifecycle["runs"])
    assert code == 0, err
    assert "st" in out and "completed" in out
    code, out, err = call("status", "--runs-dir", lifecycle["runs"], "--run-id", "st")
    assert code == 0, err
    assert "recent events" in out and "per-epoch metrics" in out and "resume" in out
    # piped: plain aligned text, no boxes, no width it was squeezed to or padded out to
    assert not set("┏━┃│└") & set(out) and all(line == line.rstrip() for line in out.splitlines()), out


def test_status_and_resume_of_a_finished_run_do_not_import_torch(lifecycle):
    """Importing torch is most of what status.py would cost (seconds on a small machine, at every --watch
    refresh or scripted call); status.py, and resume.py on a run that has finished, never need it."""
    runs = str(lifecycle["runs"])
    for argv in (["scripts/status.py", "--runs-dir", runs], ["scripts/status.py", "--runs-dir", runs, "--json"],
                 ["scripts/status.py", "--runs-dir", runs, "--run-id", "st"],
                 ["scripts/resume.py", "--runs-dir", runs, "--run-id", "st", "--local"]):
        probe = (f"import runpy, sys\nsys.argv = {argv!r}\ntry:\n    runpy.run_path({argv[0]!r}, run_name='__main__')\n"
                 "except SystemExit as e:\n    code = e.code\nprint('exit', code, 'torch', 'torch' in sys.modules)")
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert done.stdout.splitlines()[-1] == "exit 0 torch False", (argv, done.stdout[-300:], done.stderr[-300:])
    assert "is already finished" in done.stdout
