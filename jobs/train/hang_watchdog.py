"""A trainer that stops making steps ends itself, so that its job can go on: a hang becomes a crash.

A collective that never returns, a GPU that stopped answering, a file system that blocks a read: the
process lives on, holds its allocation until the time limit and saves nothing more, and a time-limit
warning cannot stop it at a step boundary that never comes. The loop marks each step boundary; a daemon
thread looks once a second, and once no step has come for `seconds` it writes every thread's stack to
stderr (where it hangs), records a `hang` event and the run's status if the disk lets it within a few
seconds, and ends the process with EXIT_HUNG. The batch job's supervisor retries that like a crash: it
requeues the job if the run made progress since this start. What it loses is what a SIGKILL loses.

Time while the process is stopped (SIGSTOP, Ctrl-Z, a suspended SLURM job) is not a hang: a look that
comes seconds later than due means the process was not running, and moves the deadline by as much.
A hang inside a C extension that keeps holding the GIL stops this thread too; hangs in a collective, a
device synchronisation, a lock or a read let go of it.
"""
import faulthandler
import os
import sys
import threading
import time
from collections.abc import Callable

from jobs import testing
from jobs.exit_codes import EXIT_HUNG

LOOK_SECONDS = 1.0
PAUSE_SECONDS = 2.0  # a look this much later than due: the process was stopped, not hung
RECORD_SECONDS = 5.0  # at most this long for the hang's event and status (the disk may be what hangs)


class HangWatchdog:
    """`start()`, then `stepped(step)` at every step boundary, then `stop()`. Off when `seconds` is 0/None."""

    def __init__(self, seconds: float | None, record: Callable[[float], None]):
        self.seconds = seconds
        self.record = record  # record(idle seconds): the run's event and status, from the watchdog's thread
        self.last_step_at = time.monotonic()
        self._stopped = threading.Event()
        self._hang_at = testing.hang_at_step()

    def start(self) -> None:
        self.last_step_at = time.monotonic()
        if self.seconds:
            threading.Thread(target=self._watch, name="hang-watchdog", daemon=True).start()

    def stepped(self, step: int) -> None:
        self.last_step_at = time.monotonic()
        if step == self._hang_at:
            threading.Event().wait()  # blocks in a lock's wait, as a real hang blocks in a syscall

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        looked = time.monotonic()
        while not self._stopped.wait(LOOK_SECONDS):
            now = time.monotonic()
            late = now - looked - LOOK_SECONDS
            if late > PAUSE_SECONDS:
                self.last_step_at += late
            looked = now
            idle = now - self.last_step_at
            if idle >= self.seconds:
                self._end(idle)

    def _end(self, idle: float) -> None:
        """Stacks to stderr, the event and status (bounded in time), then exit: nothing here may block for good."""
        try:
            stderr = sys.stderr.fileno()
        except (AttributeError, ValueError, OSError):  # replaced by an object without a descriptor
            stderr = 2
        os.write(stderr, (f"error: no training step for {idle:.1f} s (--hang-timeout-seconds {self.seconds:g}): "
                          f"the trainer is hung; the stacks of its threads follow, then it exits with status "
                          f"{EXIT_HUNG} so that the run can go on from its last checkpoint\n").encode())
        faulthandler.dump_traceback(file=stderr, all_threads=True)

        def record() -> None:
            self.record(idle)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()

        recorder = threading.Thread(target=record, name="hang-record", daemon=True)
        recorder.start()
        recorder.join(RECORD_SECONDS)
        os._exit(EXIT_HUNG)
