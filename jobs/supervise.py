"""The batch job's supervisor: runs the trainer as its child, forwards SLURM's signals to it, and
requeues the job once the trainer dies abnormally after making progress.

    python -m jobs.supervise -- python scripts/train.py ... --run-id ID [--runs-dir DIR]

Exec'd by the batch scripts, the supervisor *is* the batch shell: SLURM's `B:USR2` warning reaches it,
and it forwards USR2, TERM and INT to the trainer at once. A trainer killed outright (the OOM killer's
SIGKILL, a segfault) or failing with an unhandled error (a CUDA error) is retried, by requeuing the job,
only when all of these hold:
- it died by a signal, or exited 1 (an unhandled error), 6 (its checkpoint could not be written) or 7
  (hung: no step for --hang-timeout-seconds, jobs.hang_watchdog); 0, 2 (bad input), 3 (locked),
  4 (diverged), 5 (out of memory), 75 (signal-stop, saved) are final;
- the run committed a checkpoint newer than the step this trainer started from (it made progress);
- no earlier crash of the run happened at the same step (a crash that repeats itself);
- fewer than `max_crash_retries` crashes were retried (the run's loop config, --max-crash-retries);
- no TERM reached the job (SLURM is cancelling or preempting it, and decides itself);
- it runs inside a SLURM job.
Every crash is recorded as a `crash` event: exit status, step, and whether it was requeued and why (not).
Under `srun` with several tasks each task has its supervisor; only task 0's records and requeues (the
other trainers' deaths reach rank 0 as a failed collective).

A signal that arrives before the trainer's handlers are in (it imports torch) is held back and forwarded
once they are: a warning is never lost, and never kills the trainer with USR2's default action. The
trainer says how far it got in a step file (jobs.step_file), which survives its SIGKILL. The supervisor
imports no torch: it is up in a few tens of milliseconds.
"""
import signal

FORWARDED = (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
_received: list[int] = []  # every signal to forward, from the first moment on


def _record(signum, frame) -> None:
    _received.append(signum)


if __name__ == "__main__":  # before the other imports: the batch shell ignored USR2 until now
    for _sig in FORWARDED:
        signal.signal(_sig, _record)

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from jobs import slurm  # noqa: E402
from jobs.exit_codes import DEFAULT_MAX_CRASH_RETRIES, EXIT_HUNG, RETRIED_BY_SUPERVISOR  # noqa: E402
from jobs.files import read_json  # noqa: E402
from jobs.manifest import committed_step  # noqa: E402
from jobs.run_dir import DEFAULT_RUNS_DIR, RunDir, resume_command, slurm_job_id  # noqa: E402
from jobs.signals import ignore_usr2_at_exit  # noqa: E402
from jobs.step_file import STEP_FILE_ENV, read_step_file  # noqa: E402

POLL_SECONDS = 0.05  # how soon a signal held back goes out once the trainer's handlers are in


def run_of(command: list[str]) -> RunDir | None:
    """The run a trainer command works on, from its --run-id and --runs-dir (the jobs.cli flags)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--run-id")
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR)
    known, _ = parser.parse_known_args(command[1:])
    try:
        return RunDir(Path(known.runs_dir), known.run_id) if known.run_id else None
    except Exception:  # a bad run id: the trainer itself says so (exit 2)
        return None


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    if returncode == EXIT_HUNG:
        return f"exit code {returncode}: hung, no step within --hang-timeout-seconds"
    return f"exit code {returncode}"


def crash_decision(*, returncode: int, terminating: bool, job_id: str | None, start_step: int | None,
                   committed: int | None, crash_step: int | None, crashes: list[dict],
                   max_retries: int) -> tuple[bool, str]:
    """(requeue?, why): the rules of the module docstring, in order."""
    if terminating:
        return False, "SLURM is stopping the job (SIGTERM reached it)"
    if not job_id:
        return False, "not inside a SLURM job"
    if start_step is None:
        return False, "it died before its first step"
    if committed is None or committed <= start_step:
        return False, f"no progress: no checkpoint committed since it started at step {start_step}"
    if crash_step is not None and any(c.get("step") == crash_step for c in crashes):
        return False, f"it crashed at step {crash_step} before"
    retried = sum(1 for c in crashes if c.get("requeued"))
    if retried >= max_retries:
        return False, f"crash retry cap reached ({retried} of --max-crash-retries {max_retries})"
    return True, f"crash retry {retried + 1} of {max_retries}"


class Supervisor:
    def __init__(self, command: list[str]):
        self.command = command
        self.child: subprocess.Popen | None = None
        self.step_path: str | None = None
        self.forwarded = 0  # how many of _received the trainer has been sent

    def _forward(self, signum, frame) -> None:
        _received.append(signum)
        self._forward_pending()

    def _forward_pending(self) -> None:
        """Send the trainer what it has not had yet, once its handlers are in (the step file says so)."""
        child = self.child
        if child is None or child.returncode is not None or self.forwarded == len(_received):
            return
        if not read_step_file(self.step_path)[0]:
            return  # still starting: USR2 ignored, TERM fatal; the wait loop tries again
        while self.forwarded < len(_received):
            try:
                os.kill(child.pid, _received[self.forwarded])
            except ProcessLookupError:
                return
            self.forwarded += 1

    def run(self) -> int:
        for sig in FORWARDED:
            signal.signal(sig, self._forward)
        fd, self.step_path = tempfile.mkstemp(prefix="jobs-steps-")
        os.close(fd)
        try:
            try:
                # USR2 stays ignored in the trainer until its own handler is in (SIG_IGN survives exec)
                self.child = subprocess.Popen(self.command, env=dict(os.environ, **{STEP_FILE_ENV: self.step_path}),
                                              preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
            except OSError as e:
                print(f"supervise: cannot start {self.command[0]}: {e}", file=sys.stderr)
                return 127
            returncode = self._wait()
            _, start_step, crash_step = read_step_file(self.step_path)
        finally:
            os.unlink(self.step_path)
        if returncode >= 0 and returncode not in RETRIED_BY_SUPERVISOR:
            return returncode
        return self._crashed(returncode, start_step, crash_step)

    def _wait(self) -> int:
        while True:  # a handler forwards at once; what the trainer was not ready for goes from here
            try:
                return self.child.wait(timeout=POLL_SECONDS)
            except subprocess.TimeoutExpired:
                self._forward_pending()

    def _crashed(self, returncode: int, start_step: int | None, crash_step: int | None) -> int:
        exit_code = 128 - returncode if returncode < 0 else returncode  # like a shell: 137 for SIGKILL
        what = describe_exit(returncode)
        if slurm.task_id() != "0":
            # one task of several (srun): rank 0's trainer sees the loss, stops, and its supervisor decides
            print(f"supervise: the trainer of task {slurm.task_id()} ended ({what})", file=sys.stderr)
            return exit_code
        run = run_of(self.command)
        if run is None:
            print(f"supervise: the trainer ended ({what}); no --run-id in its command, so no retry", file=sys.stderr)
            return exit_code
        run.tolerate_write_failures(lambda text: print(text, file=sys.stderr, flush=True))
        config = read_json_quietly(run.config_file)
        max_retries = (config.get("loop") or {}).get("max_crash_retries", DEFAULT_MAX_CRASH_RETRIES)
        committed = committed_step(run.path)
        job = slurm_job_id()
        requeue, reason = crash_decision(
            returncode=returncode, terminating=signal.SIGTERM in _received, job_id=job, start_step=start_step,
            committed=committed, crash_step=crash_step, crashes=run.events("crash"),
            max_retries=max_retries)
        if requeue:
            failed = slurm.requeue_job(job)
            if failed:
                requeue, reason = False, failed
        step_text = f"in step {crash_step + 1}" if crash_step is not None else "before its first step"
        run.event("crash", crash_step, exit_status=what, exit_code=exit_code, start_step=start_step,
                  committed_step=committed, requeued=requeue, reason=reason)
        if requeue:
            run.event("requeue", committed, via="crash")
            print(f"supervise: the trainer of run {run.run_id} died {step_text} ({what}); requeued SLURM job {job} "
                  f"({reason}); it continues from step {committed}", file=sys.stderr, flush=True)
        else:
            print(f"supervise: the trainer of run {run.run_id} died {step_text} ({what}); not requeued: {reason}; "
                  f"continue with {resume_command(run.run_id, run.path.parent)}", file=sys.stderr, flush=True)
        return exit_code


def read_json_quietly(path: Path) -> dict:
    try:
        return read_json(path) or {}
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("usage: python -m jobs.supervise -- TRAINER COMMAND ...", file=sys.stderr)
        return 2
    return Supervisor(command).run()


if __name__ == "__main__":
    ignore_usr2_at_exit()  # a warning as the finished job's batch shell exits must not fail it
    sys.exit(main())
