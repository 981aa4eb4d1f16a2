"""How far a trainer has got, for the supervisor that started it (jobs.supervise).

The supervisor names a small file in JOBS_STEP_FILE; the trainer rewrites it in place: "ready" once its
signal handlers are in (jobs.signals.catch_early), then "<step it started from> <steps done>" after every
step (one pwrite, no fsync: a killed process's writes stay in the page cache, which is all the supervisor
on the same node reads). So the supervisor knows when a forwarded signal will be caught rather than kill,
and at which step a trainer that was killed outright died."""
import os
from pathlib import Path

STEP_FILE_ENV = "JOBS_STEP_FILE"
READY = "ready"


def mark_ready() -> None:
    """The trainer's signal handlers are installed: signals may be forwarded to it now."""
    path = os.environ.get(STEP_FILE_ENV)
    if path:
        try:
            Path(path).write_text(READY + "\n")
        except OSError:
            pass


class StepFile:
    def __init__(self, fd: int | None):
        self.fd = fd
        self.start: int | None = None

    @classmethod
    def from_environment(cls) -> "StepFile":
        path = os.environ.get(STEP_FILE_ENV)
        try:
            return cls(os.open(path, os.O_WRONLY) if path else None)
        except OSError:
            return cls(None)

    def write(self, step: int) -> None:
        if self.fd is None:
            return
        if self.start is None:
            self.start = step
        try:
            os.pwrite(self.fd, f"{self.start:>20} {step:>20}\n".encode(), 0)
        except OSError:
            self.fd = None


def read_step_file(path: str) -> tuple[bool, int | None, int | None]:
    """(ready, step the trainer started training from, steps done); the steps are None before its first step."""
    try:
        words = Path(path).read_text().split()
    except OSError:
        return False, None, None
    if len(words) == 2 and all(w.isdigit() for w in words):
        return True, int(words[0]), int(words[1])
    return words == [READY], None, None
