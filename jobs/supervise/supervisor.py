"""The supervisor: runs the trainer as its child, forwards SLURM's signals to it, and hands a trainer that
died abnormally to jobs.supervise.crash, which requeues the job when the run made progress.

Exec'd by the batch scripts, the supervisor *is* the batch shell: SLURM's `B:USR2` warning reaches it, and
it forwards USR2, TERM and INT to the trainer at once. Under `srun` with several tasks each task has its
supervisor; only task 0's records and requeues (the other trainers' deaths reach rank 0 as a failed
collective).

A signal that arrives before the trainer's handlers are in (it imports torch) is held back and forwarded
once they are: a warning is never lost, and never kills the trainer with USR2's default action. The trainer
says how far it got in a step file (jobs.step_file), which survives its SIGKILL.
"""
import os
import signal
import subprocess
import sys
import tempfile

from jobs.exit_codes import RETRIED_BY_SUPERVISOR
from jobs.step_file import STEP_FILE_ENV, read_step_file
from jobs.supervise.crash import handle_crash

FORWARDED = (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
POLL_SECONDS = 0.05  # how soon a signal held back goes out once the trainer's handlers are in


class Supervisor:
    def __init__(self, command: list[str], received: list[int] | None = None):
        self.command = command
        self.received = [] if received is None else received  # every signal to forward, in order
        self.child: subprocess.Popen | None = None
        self.step_path: str | None = None
        self.forwarded = 0  # how many of `received` the trainer has been sent

    def _forward(self, signum, frame) -> None:
        self.received.append(signum)
        self._forward_pending()

    def _forward_pending(self) -> None:
        """Send the trainer what it has not had yet, once its handlers are in (the step file says so)."""
        child = self.child
        if child is None or child.returncode is not None or self.forwarded == len(self.received):
            return
        if not read_step_file(self.step_path)[0]:
            return  # still starting: USR2 ignored, TERM fatal; the wait loop tries again
        while self.forwarded < len(self.received):
            try:
                os.kill(child.pid, self.received[self.forwarded])
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
        return handle_crash(self.command, returncode, start_step, crash_step,
                            terminating=signal.SIGTERM in self.received)

    def _wait(self) -> int:
        while True:  # a handler forwards at once; what the trainer was not ready for goes from here
            try:
                return self.child.wait(timeout=POLL_SECONDS)
            except subprocess.TimeoutExpired:
                self._forward_pending()


def main(argv: list[str] | None = None, received: list[int] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("usage: python -m jobs.supervise -- TRAINER COMMAND ...", file=sys.stderr)
        return 2
    return Supervisor(command, received).run()
