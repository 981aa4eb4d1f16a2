"""One writer per run (docs/design.md, invariant 5): real trainers racing for one run, real lock holders that are
alive or SIGKILLed, holders on another host or in a finished SLURM job, and --force."""
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from jobs.run.lock import RunLock, RunLocked
from tests.helpers_runs import (
    LONG_STEPS,
    REPO,
    SHORT,
    SHORT_STEPS,
    call,
    clean_env,
    copy_run,
    discard,
    events,
    final_digest,
    spawn,
    tree_snapshot,
)

pytestmark = pytest.mark.usefixtures("hermetic")

HOST = socket.gethostname()
CUT = LONG_STEPS - 1

# A lock holder without torch (starts in ~0.1 s). "record" takes the lock the way a trainer does; "late"
# takes the OS lock first and writes its holder record only after a pause, as a trainer does for a
# moment between the two; it prints once it holds the OS lock.
HOLDER = """
import errno, fcntl, os, socket, sys, time
from jobs.run.files import write_json_atomic
from jobs.run.lock import RunLock
if os.environ.get("NO_FLOCK"):  # a filesystem without flock, as Lustre mounted without -o flock
    def no_flock(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")
    fcntl.flock = no_flock
lock = RunLock(sys.argv[1])
if sys.argv[2] == "record":
    lock.acquire()
    print("holding", flush=True)
else:
    lock._lock = lock._os_lock()
    lock._lock.acquire()
    print("holding", flush=True)
    time.sleep(float(sys.argv[3]))
    write_json_atomic(lock.holder_file, {"host": socket.gethostname(), "pid": os.getpid(),
                                         "slurm_job_id": None, "time": time.time()})
time.sleep(120)
"""


def hold(run_path, mode="record", pause=0.0, **env) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_path), mode, str(pause)], cwd=REPO,
                            env=clean_env(**env), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "holding\n"
    return proc


def end(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def resume(runs, *extra):
    return call("resume", "--run-id", "ref", "--runs-dir", runs, "--local", *extra)


def test_two_trainers_started_at_once_exactly_one_trains(tmp_path):
    """Both with --resume-if-exists, as two overlapping runs of one requeued SLURM job would be. (Plain
    train.py may instead answer "already exists" (exit 2) when the other one has written its config.)"""
    runs = tmp_path / "runs"
    args = ("train.py", *SHORT, "--run-id", "dup", "--runs-dir", runs, "--checkpoint-every-steps", "1",
            "--resume-if-exists")
    a, b = spawn(*args, slow=0.2), spawn(*args, slow=0.2)  # forked 1 ms apart: they meet at the lock
    try:
        ended = {}
        while len(ended) < 2:
            for p in (a, b):
                if p.pid not in ended and p.poll() is not None:
                    ended[p.pid] = time.monotonic()
            time.sleep(0.01)
        codes = {a.pid: a.wait(), b.pid: b.wait()}
    finally:
        discard(a)
        discard(b)
    assert sorted(codes.values()) == [0, 3], (a.stderr, b.stderr)
    winner, loser = (a, b) if codes[a.pid] == 0 else (b, a)
    assert ended[loser.pid] < ended[winner.pid]  # refused at once, not after waiting its turn
    lines = loser.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run 'dup': run is in use by "), loser.stderr
    assert f"pid {winner.pid} on host {HOST}" in lines[0]
    path = runs / "dup"
    assert {e["pid"] for e in events(path)} == {winner.pid}  # the loser wrote nothing
    assert [e["event"] for e in events(path)].count("start") == 1
    assert events(path, "finish")[0]["step"] == SHORT_STEPS


def test_a_loser_names_the_live_holder_not_a_stale_record(tmp_path):
    """Between taking the OS lock and writing lock.json a trainer holds the run without a record of its
    own, and lock.json may still name an earlier, killed holder: the refusal must name the live one."""
    (tmp_path / "lock.json").write_text(json.dumps({"host": HOST, "pid": 2**22 + 7, "slurm_job_id": None,
                                                    "time": time.time() - 60}))  # a dead pid
    holder = hold(tmp_path, "late", 0.5)
    try:
        with pytest.raises(RunLocked) as refused:
            RunLock(tmp_path).acquire()
    finally:
        end(holder)
    assert str(refused.value).startswith(f"run is in use by pid {holder.pid} on host {HOST}")


def test_stale_lock_of_a_killed_holder_is_broken_and_training_continues(tmp_path, reference):
    path = copy_run(reference, tmp_path, cut_at=CUT)
    holder = hold(path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert json.loads((path / "lock.json").read_text())["pid"] == holder.pid  # left behind
    code, out, err = resume(tmp_path)
    assert code == 0, err
    assert f"warning: broke the lock left by pid {holder.pid} on {HOST}" in err
    (broken,) = events(path, "lock-broken")
    assert broken["holder"]["pid"] == holder.pid and broken["forced"] is False
    assert events(path, "resume")[-1]["step"] == CUT
    assert final_digest(path) == reference.digest
    assert not (path / "lock.json").exists()  # released at the end


def test_live_holder_refuses_a_second_trainer_and_force_breaks_it(tmp_path, reference):
    path = copy_run(reference, tmp_path, cut_at=CUT)
    holder = hold(path)
    try:
        before = tree_snapshot(tmp_path)
        code, out, err = resume(tmp_path)
        assert code == 3, err
        (line,) = err.strip().splitlines()
        assert line.startswith(f"error: run 'ref': run is in use by pid {holder.pid} on host {HOST}, since ")
        assert tree_snapshot(tmp_path) == before  # nothing written
        code, out, err = resume(tmp_path, "--force")
        assert code == 0, err
    finally:
        end(holder)
    (broken,) = events(path, "lock-broken")
    assert broken["holder"]["pid"] == holder.pid and broken["forced"] is True
    assert final_digest(path) == reference.digest


def test_holder_on_another_host_needs_force(tmp_path, reference):
    path = copy_run(reference, tmp_path, cut_at=CUT)
    record = {"host": "other-node", "pid": 4242, "slurm_job_id": None, "time": time.time()}
    (path / "lock.json").write_text(json.dumps(record))
    before = tree_snapshot(tmp_path)
    code, out, err = resume(tmp_path)
    assert code == 3, err
    assert "run is held by pid 4242 on host other-node" in err and "pass --force" in err
    assert tree_snapshot(tmp_path) == before
    code, out, err = resume(tmp_path, "--force")
    assert code == 0, err
    assert events(path, "lock-broken")[0]["holder"] == record
    assert final_digest(path) == reference.digest


def test_holder_in_a_finished_slurm_job_is_broken(tmp_path, reference):
    """A record from another node whose SLURM job squeue no longer lists is provably gone."""
    path = copy_run(reference, tmp_path, cut_at=CUT)
    record = {"host": "node-17", "pid": 4242, "slurm_job_id": "991", "time": time.time()}
    (path / "lock.json").write_text(json.dumps(record))
    code, out, err = resume(tmp_path)  # the test PATH's squeue lists no job
    assert code == 0, err
    (broken,) = events(path, "lock-broken")
    assert broken["holder"] == record and broken["forced"] is False


def test_without_flock_the_lock_is_an_exclusive_file_and_a_killed_holders_is_broken(tmp_path, reference,
                                                                                     monkeypatch):
    """flock() failing with ENOSYS (Lustre without -o flock): one warning that says why, a live holder
    still refuses a second trainer, and the exclusive-create file a SIGKILLed holder leaves behind is
    broken because its pid is dead; the run then ends bit-equal to the reference."""
    def no_flock(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")
    monkeypatch.setattr(fcntl, "flock", no_flock)
    path = copy_run(reference, tmp_path, cut_at=CUT)
    holder = hold(path, NO_FLOCK="1")
    try:
        assert (path / "lock.excl").exists()
        code, out, refused = resume(tmp_path)
        assert code == 3, refused
        assert f"error: run 'ref': run is in use by pid {holder.pid} on host {HOST}" in refused
    finally:
        end(holder)  # SIGKILL: lock.excl and lock.json stay behind
    assert (path / "lock.excl").exists()
    code, out, err = resume(tmp_path)
    assert code == 0, err
    warnings = [line for line in (refused + err).splitlines() if "does not support flock()" in line]
    assert len(warnings) == 1 and "Lustre" in warnings[0] and "lock.excl" in warnings[0]
    assert f"warning: broke the lock left by pid {holder.pid} on {HOST}" in err
    (broken,) = events(path, "lock-broken")
    assert broken["holder"]["pid"] == holder.pid and broken["forced"] is False
    assert final_digest(path) == reference.digest
    assert not (path / "lock.excl").exists() and not (path / "lock.json").exists()  # released at the end
