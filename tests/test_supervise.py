"""jobs/supervise.py, the batch job's supervisor, outside SLURM: it forwards USR2 and TERM to the trainer
(which survives a USR2 during its start-up), records a crash with its step and exit status, passes final
exit codes through, and decides about crash retries by the rules of its docstring. The requeue itself
is tested on the dev cluster (tests/test_slurm_e2e.py)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from jobs.supervise import crash_decision
from tests.helpers_runs import (
    LONG,
    LONG_STEPS,
    REPO,
    clean_env,
    committed_step,
    discard,
    events,
    final_digest,
    spawn,
    start,
)

pytest_plugins = ["tests.helpers_runs"]  # the fixtures `reference` and `hermetic`
pytestmark = pytest.mark.usefixtures("hermetic")

DECIDE = dict(returncode=-9, terminating=False, job_id="7", start_step=10, committed=20, crash_step=23,
              crashes=[], max_retries=3)


@pytest.mark.parametrize("change, requeue, reason", [
    ({}, True, "crash retry 1 of 3"),
    ({"terminating": True}, False, "SLURM is stopping the job (SIGTERM reached it)"),
    ({"job_id": None}, False, "not inside a SLURM job"),
    ({"start_step": None}, False, "it died before its first step"),
    ({"committed": 10}, False, "no progress: no checkpoint committed since it started at step 10"),
    ({"committed": None}, False, "no progress: no checkpoint committed since it started at step 10"),
    ({"crashes": [{"step": 23, "requeued": True}]}, False, "it crashed at step 23 before"),
    ({"crashes": [{"step": 5, "requeued": True}]}, True, "crash retry 2 of 3"),
    ({"crashes": [{"step": s, "requeued": True} for s in (1, 2, 3)]}, False,
     "crash retry cap reached (3 of --max-crash-retries 3)"),
    ({"max_retries": 0}, False, "crash retry cap reached (0 of --max-crash-retries 0)"),
])
def test_crash_decision(change, requeue, reason):
    assert crash_decision(**{**DECIDE, **change}) == (requeue, reason)


@pytest.mark.parametrize("code", [0, 2, 3, 4, 5, 75])
def test_final_exit_codes_pass_through_without_a_crash(code, tmp_path):
    done = subprocess.run([sys.executable, "-m", "jobs.supervise", "--", sys.executable, "-c",
                           f"import sys; sys.exit({code})", "--run-id", "x", "--runs-dir", tmp_path],
                          cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == code and done.stderr == ""
    assert not (tmp_path / "x").exists()


def next_event(path, kind: str, proc, after: int = 0, timeout: float = 60) -> dict:
    """The first `kind` event past the first `after` ones, written by the trainer under `proc` (the
    supervisor: the trainer is its child, another pid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events(path)[after:] if e["event"] == kind]
        if found:
            return found[0]
        assert proc.poll() is None, f"the supervisor exited ({proc.returncode}):\n{proc.stderr}"
        time.sleep(0.02)
    raise AssertionError(f"no {kind} event within {timeout} s:\n{proc.stderr}")


def test_a_usr2_at_start_up_never_kills_the_supervised_trainer(tmp_path):
    """USR2 the moment the job starts (preemption sends it at once): whether it lands while the trainer's USR2
    is still ignored (dropped) or once train.py caught it early (a stop at step 0), nobody dies of it."""
    runs = tmp_path / "runs"
    proc = start("train.py", *LONG, "--run-id", "early", "--runs-dir", runs, supervised=True)
    try:
        time.sleep(0.05)
        proc.send(signal.SIGUSR2)
        next_event(runs / "early", "start", proc)
        if proc.poll() is None:  # dropped: it trains on; TERM stops it
            time.sleep(0.2)
            proc.send(signal.SIGTERM)
        assert proc.wait(60) == 75, proc.stderr
    finally:
        discard(proc)
    assert not events(runs / "early", "crash") and "Traceback" not in proc.stderr


def test_supervised_trainer_gets_the_signals_and_its_crash_is_recorded(tmp_path, reference):
    """Under the supervisor: a SIGKILL of the trainer is a crash (exit 137, a `crash` event; no requeue
    outside SLURM); USR2 and TERM sent to the supervisor stop the trainer at a step boundary (exit 75,
    zero steps lost). The run then ends bit-equal."""
    runs = tmp_path / "runs"
    path = runs / "sup"
    args = ("--run-id", "sup", "--runs-dir", runs)
    proc = start("train.py", *LONG, "--checkpoint-every-steps", "2", *args, slow=0.05, supervised=True)
    try:
        trainer = next_event(path, "start", proc)["pid"]
        deadline = time.monotonic() + 60
        while (committed_step(path) or 0) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(trainer, signal.SIGKILL)
        assert proc.wait(30) == 128 + signal.SIGKILL, proc.stderr
    finally:
        discard(proc)
    (crash,) = events(path, "crash")
    assert crash["exit_status"] == "killed by SIGKILL" and crash["exit_code"] == 137
    assert crash["requeued"] is False and crash["reason"] == "not inside a SLURM job"
    assert crash["start_step"] == 0 and 4 <= crash["committed_step"] <= crash["step"] < LONG_STEPS, crash
    assert f"died in step {crash['step'] + 1} (killed by SIGKILL); not requeued: not inside a SLURM job; " \
           "continue with `python scripts/resume.py --run-id sup`" in proc.stderr

    stops = []
    for sig in (signal.SIGUSR2, signal.SIGTERM):
        proc = start("resume.py", *args, "--local", supervised=True)
        try:
            resumed = next_event(path, "resume", proc, after=len(events(path)))
            time.sleep(0.2)
            proc.send(sig)
            assert proc.wait(60) == 75, proc.stderr
        finally:
            discard(proc)
        (stop,) = [e for e in events(path, "stop") if e["pid"] == resumed["pid"]]
        assert stop["signal"] == sig.name and stop["checkpoint_ok"], stop
        stops.append((resumed["step"], stop["step"]))
    assert stops[0][0] == crash["committed_step"]  # the crash lost only the steps after the last checkpoint
    assert stops[1][0] == stops[0][1]  # resumed exactly where the USR2 stop saved
    proc = spawn("resume.py", *args, "--local")
    assert proc.wait(120) == 0, proc.stderr
    assert events(path, "resume")[-1]["step"] == stops[1][1]  # and where the TERM stop saved
    assert final_digest(path) == reference.digest
