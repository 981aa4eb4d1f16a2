"""The batch job's supervisor (`python -m jobs.supervise`) outside SLURM: it forwards USR2 and TERM to the
trainer (which survives a USR2 during its start-up), records a crash with its step and exit status, and passes
final exit codes through. Its retry rules are unit-tested (tests/unit/test_supervise.py); the requeue itself is
tested on the dev cluster (tests/slurm/test_slurm_e2e.py)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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

pytestmark = pytest.mark.usefixtures("hermetic")


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


def handles(pid: int, sig: int) -> bool:
    """Whether process `pid` has a handler installed for `sig` (/proc/PID/status, SigCgt)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask >> (sig - 1) & 1)


def test_a_usr2_while_the_trainer_starts_is_held_back_then_honoured(tmp_path):
    """USR2 reaches the supervisor while its trainer still imports torch (USR2 ignored there): it is held
    back until the trainer's handler is in, then forwarded, and the run stops at its first step boundary
    (step 0) with its checkpoint: not killed, not lost."""
    runs = tmp_path / "runs"
    proc = start("train.py", *LONG, "--run-id", "early", "--runs-dir", runs, supervised=True)
    try:
        deadline = time.monotonic() + 30
        while not handles(proc.pid, signal.SIGUSR2):  # the supervisor's handler is in
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.005)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        trainer_started = [c for c in children if handles(int(c), signal.SIGUSR2)]
        proc.send(signal.SIGUSR2)
        assert proc.wait(60) == 75, proc.stderr
    finally:
        discard(proc)
    assert not trainer_started, "the trainer was ready before the signal: the test did not test the hold-back"
    (stop,) = events(runs / "early", "stop")
    assert stop["signal"] == "SIGUSR2" and stop["step"] == 0 and stop["checkpoint_ok"], stop
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
           f"continue with `python scripts/resume.py --run-id sup --runs-dir {runs}`" in proc.stderr

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
