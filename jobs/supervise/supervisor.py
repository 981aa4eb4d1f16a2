"""The supervisor: runs the trainer as its child, forwards signals to it, and hands a trainer that died
abnormally to jobs.supervise.crash, which requeues a batch job, or has the trainer run again in place
elsewhere, when the run made progress.

Exec'd by the batch scripts, the supervisor *is* the batch shell: SLURM's `B:USR2` warning reaches it, and
it forwards USR2, TERM and INT to the trainer at once. Under `srun` with several tasks each task has its
supervisor; only task 0's records and requeues (the other trainers' deaths reach rank 0 as a failed
collective). Outside a batch job (a workstation, tmux, salloc) it retries a crashed trainer in place: the same
command again, with JOBS_SUPERVISED_RETRY=1 so that a command that started the run continues it, in the warm
standby it keeps once the trainer has done its first step (jobs.supervise.standby).

A signal that arrives before the trainer's handlers are in (it imports torch) is held back and forwarded
once they are: a warning is never lost, and never kills the trainer with USR2's default action. The trainer
says how far it got in a step file (jobs.step_file), which survives its SIGKILL; each trainer started gets a
fresh one. A Ctrl-C in the terminal whose foreground the supervisor is in reaches the trainer (in the same
process group) from the terminal itself: it is not forwarded again, which would be a second Ctrl-C.
"""
import os
import signal
import subprocess
import sys
import tempfile

from jobs.environment import SUPERVISED_RETRY_ENV, JobEnvironment
from jobs.exit_codes import RETRIED_BY_SUPERVISOR
from jobs.step_file import STEP_FILE_ENV, read_step_file
from jobs.supervise.crash import handle_crash
from jobs.supervise.standby import Standby, can_stand_in

FORWARDED = (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
POLL_SECONDS = 0.05  # how soon a signal held back goes out once the trainer's handlers are in


class Supervisor:
    def __init__(self, command: list[str], received: list[int] | None = None):
        self.command = command
        self.received = [] if received is None else received  # every signal to forward, in order
        self.child: subprocess.Popen | None = None
        self.step_path: str | None = None
        self.forwarded = 0  # how many of `received` the trainers have been sent (or need not be)
        environment = JobEnvironment()  # a retry runs in place: a standby can make it start warm
        self.in_place = environment.batch_job_id is None and environment.tasks == 1 and can_stand_in(command)
        self.standby: Standby | None = None

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
            signum = self.received[self.forwarded]
            if signum != signal.SIGINT or not in_terminal_foreground():
                try:
                    os.kill(child.pid, signum)
                except ProcessLookupError:
                    return
            self.forwarded += 1

    def run(self) -> int:
        for sig in FORWARDED:
            signal.signal(sig, self._forward)
        retry = False
        try:
            while True:
                returncode, start_step, crash_step = self._attempt(retry)
                if returncode >= 0 and returncode not in RETRIED_BY_SUPERVISOR:
                    return returncode
                received = {signal.Signals(s).name for s in self.received}
                if returncode < 0 and signal.Signals(-returncode).name in received:
                    # the signal forwarded to it (SLURM's TERM as a requeue or a cancel, a Ctrl-C): not a crash
                    return 128 - returncode
                standby = self.standby.state() if self.standby else None
                exit_code, retry = handle_crash(self.command, returncode, start_step, crash_step, received, standby)
                if not retry:
                    return exit_code
        finally:
            if self.standby is not None:
                self.standby.discard()

    def _attempt(self, retry: bool) -> tuple[int, int | None, int | None]:
        """Run the trainer once, with a fresh step file: (its return code, the step it started from, the steps
        it had done); 127 if it cannot start."""
        fd, self.step_path = tempfile.mkstemp(prefix="jobs-steps-")
        os.close(fd)
        env = {k: v for k, v in os.environ.items() if k != SUPERVISED_RETRY_ENV}
        env[STEP_FILE_ENV] = self.step_path
        if retry:
            env[SUPERVISED_RETRY_ENV] = "1"
        try:
            self.child = self.standby.hand_over(env) if retry and self.standby else None
            self.standby = None
            try:
                self.child = self.child or subprocess.Popen(self.command, env=env, preexec_fn=_ignore_usr2)
            except OSError as e:
                print(f"supervise: cannot start {self.command[0]}: {e}", file=sys.stderr)
                return 127, None, None
            returncode = self._wait()
            _, start_step, crash_step = read_step_file(self.step_path)
        finally:
            os.unlink(self.step_path)
        return returncode, start_step, crash_step

    def _wait(self) -> int:
        while True:  # a handler forwards at once; what the trainer was not ready for goes from here
            try:
                return self.child.wait(timeout=POLL_SECONDS)
            except subprocess.TimeoutExpired:
                self._forward_pending()
                if self.in_place and self.standby is None and read_step_file(self.step_path)[2] is not None:
                    self.standby = Standby(self.command, _ignore_usr2)  # its trainer has done its first step


def _ignore_usr2() -> None:
    """USR2 stays ignored in the trainer until its own handler is in (SIG_IGN survives exec)."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def in_terminal_foreground() -> bool:
    """Whether this process is in the foreground process group of its controlling terminal, where a Ctrl-C
    reaches every process of the group: the trainer too."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False  # no controlling terminal (a batch job, a daemon, nohup with setsid)
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def main(argv: list[str] | None = None, received: list[int] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("usage: python -m jobs.supervise -- TRAINER COMMAND ...", file=sys.stderr)
        return 2
    return Supervisor(command, received).run()
