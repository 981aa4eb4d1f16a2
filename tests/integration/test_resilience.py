"""Runs that survive anything: real scripts/train.py and resume.py processes, real signals, compared bit
for bit with an uninterrupted run (docs/design.md, invariants 2, 3, 4 and 6)."""
import json
import random
import signal
import time

import pytest

from tests.helpers_runs import (
    LONG,
    LONG_STEPS,
    LOOP,
    discard,
    events,
    logged,
    manifest_entries,
    run,
    spawn,
    start,
    status_of,
    temp_files,
    wait_for_event,
)

pytestmark = pytest.mark.usefixtures("hermetic")

KILLS = 20
SLOW_WRITE = 0.25  # each checkpoint write takes this long, in 8 chunks: most kills land inside one


class Campaign:
    def __init__(self, runs, run_id):
        self.runs, self.path = runs, runs / run_id
        self.resume_args = ("resume.py", "--run-id", run_id, "--runs-dir", runs)
        self.kills = []  # one record per SIGKILL
        self.resumes_checked = 0
        # at the last kill: the newest step in the manifest, and the newest with a sidecar (a sidecar is
        # written once its checkpoint is durable; with no manifest yet, resume rebuilds it from them)
        self.committed = self.complete = None
        self.proc = None

    def check_resume_step(self):
        for e in events(self.path, "resume"):
            if e["pid"] == self.proc.pid:  # bounded lost work: the resume starts at the committed step
                assert self.committed is not None
                # (or later, from a whole checkpoint the first manifest was not written for yet)
                assert self.committed <= e["step"] <= self.complete, (e, self.kills)
                self.resumes_checked += 1

    def kill(self):
        assert self.proc.poll() is None, (f"the run finished after {len(self.kills)} kills; lengthen it or "
                                          f"shorten the delays\n{self.proc.stderr}")
        assert self.proc.kill9() == -signal.SIGKILL
        committed = max((e["step"] for e in manifest_entries(self.path)), default=0)
        logged = [e["step"] for e in events(self.path, "checkpoint") if e["pid"] == self.proc.pid]
        # a checkpoint is logged only after its manifest commit: nothing logged may be lost
        assert not logged or committed >= logged[-1], (committed, logged)
        # its own temp file (named with its pid) of a checkpoint: the kill landed inside that write
        mid_write = any(p.name.startswith(".ckpt-step") and p.name.endswith(f".tmp-{self.proc.pid}")
                        for p in temp_files(self.path))
        complete = max([int(p.name[9:18]) for p in self.path.glob("ckpt-step*.pt.json")], default=0)
        self.kills.append({"pid": self.proc.pid, "committed": committed, "mid_write": mid_write})
        self.committed, self.complete = committed, max(committed, complete)


def test_sigkill_campaign_ends_bit_equal_to_an_uninterrupted_run(tmp_path, reference):
    rng = random.Random(20240607)
    c = Campaign(tmp_path / "runs", "campaign")
    c.proc = start("train.py", *LONG, *LOOP, "--run-id", "campaign", "--runs-dir", c.runs, slow=SLOW_WRITE)
    try:
        while len(c.kills) < KILLS:
            # a random moment: mostly while training (so mostly inside a slow write), sometimes while
            # starting (data, lock, loading the checkpoint); never before the first run wrote its config
            if c.kills and rng.random() < 0.15:
                time.sleep(rng.uniform(0.0, 0.6))
            else:
                ready = wait_for_event(c.path, c.proc, {"start", "resume"})
                assert ready is not None, f"process ended before it trained:\n{c.proc.stderr}"
                time.sleep(rng.uniform(0.0, 0.8))
            c.check_resume_step()
            c.kill()
            # the last resume runs to the end without the slow-write hook (it changes no numbers)
            c.proc = spawn(*c.resume_args, slow=SLOW_WRITE if len(c.kills) < KILLS else None)
        assert wait_for_event(c.path, c.proc, {"resume"}) is not None, c.proc.stderr
        c.check_resume_step()
        assert c.proc.wait(300) == 0, c.proc.stderr
        assert "Traceback" not in c.proc.stderr
    finally:
        discard(c.proc)

    mid_write = sum(k["mid_write"] for k in c.kills)
    print(f"\nSIGKILL campaign: {len(c.kills)} kills, {mid_write} inside a checkpoint write "
          f"(leftover .ckpt-*.tmp-* file), {c.resumes_checked} resume steps checked")
    assert len(c.kills) >= KILLS
    assert mid_write >= 3, c.kills
    assert c.resumes_checked >= KILLS * 0.7  # a kill while starting may land before the resume event
    assert temp_files(c.path) == []  # every leftover was removed by the next lock holder
    done = run("status.py", "--runs-dir", c.runs, "--json")
    assert done.returncode == 0, done.stderr
    (summary,) = json.loads(done.stdout)
    assert summary["state"] == "completed" and summary["step"] == LONG_STEPS
    assert summary["restarts"] == len(events(c.path, "resume"))
    assert summary["model_digest"] == reference.digest
    assert logged(c.path) == logged(reference.path)  # every epoch logged as the uninterrupted run logged it
    # each killed holder's lock record was found stale, broken and recorded
    assert len(events(c.path, "lock-broken")) >= c.resumes_checked


def _stop_and_check(path, proc, sig, rng):
    assert wait_for_event(path, proc, {"start", "resume"}) is not None, proc.stderr
    time.sleep(rng.uniform(0.05, 0.6))
    proc.send(sig)
    code = proc.wait()
    assert code == 75, (sig, code, proc.stderr)
    assert "Traceback" not in proc.stderr
    (stop,) = [e for e in events(path, "stop") if e["pid"] == proc.pid]
    assert stop["signal"] == signal.Signals(sig).name and stop["checkpoint_ok"] is True
    (received,) = [e for e in events(path, "signal") if e["pid"] == proc.pid]
    assert received["step"] == stop["step"]
    committed = [e["step"] for e in manifest_entries(path)]
    assert stop["step"] in committed, (stop, committed)  # the stop checkpoint is committed
    # outside SLURM nothing requeues it: the user is told how to continue
    assert f"stopped at step {stop['step']}, checkpoint saved; continue with `python scripts/resume.py" \
        in proc.stdout + proc.stderr
    assert 0 <= stop["step"] < LONG_STEPS
    return stop["step"]


def test_signal_stops_lose_zero_steps_and_end_bit_equal(tmp_path, reference):
    """TERM and USR2 (twice each) and one Ctrl-C at random moments: exit 75, and the next run resumes
    at exactly the stopped step. Then a double Ctrl-C: exit 130 at once. Then the run completes."""
    rng = random.Random(7)
    runs = tmp_path / "runs"
    path = runs / "sig"
    resume = ("resume.py", "--run-id", "sig", "--runs-dir", runs)
    # writes of 0.1 s every 3 steps: some signals arrive while a write is in flight, some not
    loop = ["--checkpoint-every-steps", "3", "--keep-every-epochs", "1"]
    proc = start("train.py", *LONG, *loop, "--run-id", "sig", "--runs-dir", runs, slow=0.1)
    stops = []
    try:
        sigs = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT, signal.SIGUSR2, signal.SIGTERM)
        for i, sig in enumerate(sigs):
            stops.append(_stop_and_check(path, proc, sig, rng))
            assert status_of(runs, "sig")["state"] == "stopped"
            # the last one gets the double Ctrl-C below: its writes take 1 s, so the second Ctrl-C can
            # land while the first one's stop checkpoint is being written
            proc = spawn(*resume, slow=1.0 if i == len(sigs) - 1 else 0.1)
            resumed = wait_for_event(path, proc, {"resume"})
            assert resumed is not None, proc.stderr
            assert resumed["step"] == stops[-1], (resumed, stops)  # zero steps lost

        # a second Ctrl-C while the first one's stop checkpoint is being written: stop at once, exit 130
        time.sleep(rng.uniform(0.05, 0.3))
        proc.send(signal.SIGINT)
        assert wait_for_event(path, proc, {"signal"}, timeout=30) is not None, proc.stderr
        proc.send(signal.SIGINT)
        assert proc.wait() == 130, proc.stderr
        assert "interrupted: stopped at once" in proc.stderr and "Traceback" not in proc.stderr
        assert not [e for e in events(path, "stop") if e["pid"] == proc.pid]  # no orderly stop

        proc = spawn(*resume)
        assert proc.wait(300) == 0, proc.stderr
    finally:
        discard(proc)
    summary = status_of(runs, "sig")
    assert summary["state"] == "completed" and summary["step"] == LONG_STEPS
    assert summary["model_digest"] == reference.digest
    assert logged(path) == logged(reference.path)
    assert len(stops) == 5 and sorted(stops) == stops  # a run never goes back
