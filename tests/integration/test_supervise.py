"""The supervisor (`python -m jobs.supervise`) outside SLURM, as on a workstation, in tmux or inside salloc: it
forwards USR2 and TERM to the trainer (which survives a USR2 during its start-up) and a terminal's Ctrl-C
once, records a crash with its step and exit status, retries a trainer killed outright in place when the run
made progress (up to --max-crash-retries), and passes final exit codes through. Its retry rules are unit-tested
(tests/unit/test_supervise.py); the requeue in a batch job is tested on the dev cluster
(tests/slurm/test_slurm_e2e.py)."""
import contextlib
import json
import os
import pty
import select
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
    STEPS_PER_EPOCH,
    clean_env,
    committed_step,
    copy_run,
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


def kill_after_progress(path, proc, began: dict) -> None:
    """SIGKILL the trainer whose start or resume event is `began`, once it committed a checkpoint past the
    step it began at (so that the progress rule allows a retry)."""
    deadline = time.monotonic() + 60
    while (committed_step(path) or -1) <= began["step"]:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.02)
    os.kill(began["pid"], signal.SIGKILL)


def retried_line(run_id: str, crash: dict, retry: int, of: int) -> str:
    warm = {"ready": " in its warm standby", "starting": " in its standby (still importing)"}.get(crash["standby"], "")
    return (f"supervise: the trainer of run {run_id} died in step {crash['step'] + 1} (killed by SIGKILL); retrying "
            f"in place{warm} (crash retry {retry} of {of}); it continues from step {crash['committed_step']}")


def standby_ready(proc, timeout: float = 60) -> None:
    """Wait until the supervisor's standby has done its imports: it then names itself jobs-standby-ok."""
    deadline, supervisor = time.monotonic() + timeout, proc.pid
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the supervisor ended before its standby was ready\n{proc.stderr}"
        for child in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{child}/comm").read_text().strip() == "jobs-standby-ok":
                    return
        time.sleep(0.05)
    raise AssertionError(f"no standby of supervisor {supervisor} became ready within {timeout} s")


def test_outside_slurm_a_killed_trainer_is_retried_in_place_and_the_run_ends_bit_exact(tmp_path, reference):
    """`python -m jobs.supervise -- python scripts/train.py --run-id X ...` (a new run) outside SLURM: its trainer
    SIGKILLed twice after making progress is run again in place each time, resumes the run (not refused as an
    existing run, not started over) from its last checkpoint, in the supervisor's warm standby, and the
    supervisor exits 0 once the run is done, with the weights of an uninterrupted run."""
    runs = tmp_path / "runs"
    path = runs / "inplace"
    # slow writes: each trainer lasts long enough for the standby of its retry to import torch
    proc = start("train.py", *LONG, "--checkpoint-every-steps", "2", "--run-id", "inplace", "--runs-dir", runs,
                 slow=0.3, supervised=True)
    try:
        began = [next_event(path, "start", proc)]
        for _ in range(2):
            seen = len(events(path))
            standby_ready(proc)
            kill_after_progress(path, proc, began[-1])
            began.append(next_event(path, "resume", proc, after=seen))
        assert proc.wait(120) == 0, proc.stderr
    finally:
        discard(proc)
    crashes = events(path, "crash")
    assert [(c["retried"], c["requeued"], c["reason"]) for c in crashes] == \
        [(True, False, "crash retry 1 of 3"), (True, False, "crash retry 2 of 3")], crashes
    for crash, trainer, resumed in zip(crashes, began[:-1], began[1:], strict=True):
        assert crash["exit_status"] == "killed by SIGKILL" and crash["start_step"] == trainer["step"], crash
        assert trainer["step"] < crash["committed_step"] <= crash["step"], crash
        assert resumed["step"] == crash["committed_step"] and resumed["pid"] != trainer["pid"], (crash, resumed)
    assert [e["step"] for e in events(path, "resume")] == [c["committed_step"] for c in crashes]
    for retry, crash in enumerate(crashes, 1):
        assert retried_line("inplace", crash, retry, 3) in proc.stderr, proc.stderr
    assert "already exists" not in proc.stderr and len(events(path, "finish")) == 1
    assert final_digest(path) == reference.digest
    # each retry ran in the warm standby: its first step came without the interpreter's start and torch's imports
    assert [c["standby"] for c in crashes] == ["ready", "ready"], crashes
    cold, *warm = events(path, "first-step")
    assert cold["imports"] > 0.8 and all(w["imports"] < 0.5 for w in warm), (cold, warm)


def test_the_crash_cap_holds_and_later_runs_get_the_signals(tmp_path, reference):
    """--max-crash-retries 1: the first SIGKILL of the trainer is retried in place, the second (after progress
    again) is not: exit 137, a `crash` event and a line that say the cap was reached. USR2 and TERM sent to the
    supervisor of a resume stop the trainer at a step boundary (exit 75, zero steps lost). The run then ends
    bit-equal."""
    runs = tmp_path / "runs"
    path = runs / "sup"
    args = ("--run-id", "sup", "--runs-dir", runs)
    proc = start("train.py", *LONG, "--checkpoint-every-steps", "2", "--max-crash-retries", "1", *args, slow=0.05,
                 supervised=True)
    try:
        trainer = next_event(path, "start", proc)
        seen = len(events(path))
        kill_after_progress(path, proc, trainer)
        retried = next_event(path, "resume", proc, after=seen)
        kill_after_progress(path, proc, retried)
        assert proc.wait(30) == 128 + signal.SIGKILL, proc.stderr
    finally:
        discard(proc)
    first, crash = events(path, "crash")
    assert first["retried"] is True and first["reason"] == "crash retry 1 of 1", first
    assert crash["exit_status"] == "killed by SIGKILL" and crash["exit_code"] == 137
    assert crash["retried"] is False and crash["requeued"] is False
    assert crash["reason"] == "crash retry cap reached (1 of --max-crash-retries 1)", crash
    assert crash["start_step"] == retried["step"] == first["committed_step"]
    assert retried["step"] < crash["committed_step"] <= crash["step"] < LONG_STEPS, crash
    assert retried_line("sup", first, 1, 1) in proc.stderr
    assert f"died in step {crash['step'] + 1} (killed by SIGKILL); not retried: crash retry cap reached (1 of " \
           f"--max-crash-retries 1); continue with `python scripts/resume.py --run-id sup --runs-dir {runs}`" \
           in proc.stderr

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


def test_a_trainer_killed_before_it_committed_a_checkpoint_is_not_retried(tmp_path, reference):
    """A resumed trainer SIGKILLed after its first step, while its first checkpoint is still being written (5 s
    per write), made no progress since it started: no retry, exit 137."""
    runs = tmp_path / "runs"
    path = copy_run(reference, runs, cut_at=2 * STEPS_PER_EPOCH)
    copied = len(events(path))
    proc = start("resume.py", "--run-id", reference.run_id, "--runs-dir", runs, "--local", slow=5, supervised=True)
    try:
        first = next_event(path, "first-step", proc, after=copied)
        os.kill(first["pid"], signal.SIGKILL)
        assert proc.wait(30) == 128 + signal.SIGKILL, proc.stderr
    finally:
        discard(proc)
    (crash,) = events(path, "crash")
    assert crash["retried"] is False and crash["committed_step"] == crash["start_step"] == 2 * STEPS_PER_EPOCH
    assert crash["reason"] == f"no progress: no checkpoint committed since it started at step {2 * STEPS_PER_EPOCH}"
    assert f"not retried: {crash['reason']}" in proc.stderr
    assert [e["event"] for e in events(path)[copied:] if e["event"] in ("resume", "crash")] == ["resume", "crash"]


# A stand-in trainer, without torch (it starts in milliseconds): it says in the supervisor's step file when its
# handlers are in and how far it got, as jobs.step_file's trainer does. Its first run commits a checkpoint entry
# and SIGKILLs itself; a retry takes its time to start, then exits 75 on USR2. Each run appends what it saw.
RETRIED_TRAINER = """
import json, os, signal, sys, time
from pathlib import Path
run = Path(sys.argv[sys.argv.index("--runs-dir") + 1]) / "x"
steps = Path(os.environ["JOBS_STEP_FILE"])
seen = {"retry": os.environ.get("JOBS_SUPERVISED_RETRY"), "step_file": steps.read_text(), "time": time.time()}
if seen["retry"]:
    time.sleep(1)  # still starting: USR2 ignored
    signal.signal(signal.SIGUSR2, lambda signum, frame: sys.exit(75))
    seen["ready"] = time.time()
with open(run / "runs.jsonl", "a") as f:
    f.write(json.dumps(seen) + "\\n")
steps.write_text("ready\\n")
if not seen["retry"]:
    (run / "manifest.json").write_text(json.dumps({"format": 1, "checkpoints": [{"step": 4}]}))
    steps.write_text(f"{0:>20} {5:>20}\\n")
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(5)
sys.exit(3)  # the USR2 never came: final, no further retry
"""


def test_a_retried_trainer_gets_a_fresh_step_file_the_retry_mark_and_held_back_signals(tmp_path):
    """The retry is the same command with JOBS_SUPERVISED_RETRY=1 (never set for the first, even when the
    supervisor's environment has it) and a fresh step file: a USR2 sent while the retry starts up is held back
    until its handler is in, then forwarded to it."""
    run = tmp_path / "x"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"loop": {"max_crash_retries": 3}}))
    proc = subprocess.Popen([sys.executable, "-m", "jobs.supervise", "--", sys.executable, "-c", RETRIED_TRAINER,
                             "--run-id", "x", "--runs-dir", tmp_path], cwd=REPO, stderr=subprocess.PIPE, text=True,
                            env=clean_env(JOBS_SUPERVISED_RETRY="1"))
    try:
        deadline = time.monotonic() + 30
        while not events(run, "crash"):  # the supervisor writes it, then starts the retry
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        time.sleep(0.3)
        sent = time.time()
        proc.send_signal(signal.SIGUSR2)
        assert proc.wait(30) == 75
    finally:
        proc.kill()
        proc.wait()
    first, retry = (json.loads(line) for line in (run / "runs.jsonl").read_text().splitlines())
    assert first["retry"] is None and retry["retry"] == "1"
    assert first["step_file"] == retry["step_file"] == ""  # fresh: not the first one's "ready" and steps
    assert retry["time"] < sent < retry["ready"]  # sent while the retry started: held back, not lost
    (crash,) = events(run, "crash")
    assert (crash["step"], crash["start_step"], crash["committed_step"], crash["retried"]) == (5, 0, 4, True)
    assert "retrying in place (crash retry 1 of 3); it continues from step 4" in proc.stderr.read()


# A stand-in trainer that counts the SIGINTs it gets, then exits 75.
COUNTING_TRAINER = """
import os, signal, sys, time
from pathlib import Path
got = []
signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
Path(os.environ["JOBS_STEP_FILE"]).write_text("ready\\n")
print("trainer ready", flush=True)
while not got:
    time.sleep(0.01)
time.sleep(0.5)  # a second one, forwarded, would come now
print(f"trainer got {len(got)} SIGINT", flush=True)
sys.exit(75)
"""


def test_a_ctrl_c_in_the_terminal_reaches_the_trainer_once():
    """In a terminal the supervisor and its trainer are in the foreground process group, so a Ctrl-C reaches
    both: the supervisor does not forward it again (the trainer would take a second Ctrl-C: exit at once,
    without its save)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own with the pty as its terminal, as a shell's foreground job
        try:
            os.chdir(REPO)
            os.execve(sys.executable, [sys.executable, "-m", "jobs.supervise", "--", sys.executable, "-c",
                                       COUNTING_TRAINER], clean_env())
        finally:
            os._exit(127)
    output, typed = b"", False
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    output += os.read(fd, 4096)
                except OSError:  # the terminal's other end closed: the supervisor exited
                    break
            if b"trainer ready" in output and not typed:
                os.write(fd, b"\x03")  # Ctrl-C, as typed
                typed = True
        _, status = os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 75, output
    assert b"trainer got 1 SIGINT" in output, output
