"""Where one start's seconds go, written by the trainer (rank 0) into `<run>/goodput/<start>.json`.

The file is rewritten in place and never fsynced: a process killed outright leaves its last writes in the page
cache, which is what the next start and status.py read (like jobs.step_file). A fixed-width first line,
"<last step> <seconds since the process started>", is rewritten after every step (one pwrite); the JSON after
it, at each change of phase. Every second from the process's start to its last write is in one phase:

- startup: imports, build, restore, compilation, up to the end of the first step;
- train: the steps after the first (data loading inside a step included);
- checkpoint: what training waits for while a save is taken (the write itself runs in the background);
- evaluation: the epoch-end evaluation and its records;
- final: the final save or the stop's save, the requeue and the exit.

Whether a start's steps were kept or recomputed is known only from the next start (jobs.goodput.accounting).
Torch-free: status.py and the supervisor read these files."""
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

DIRECTORY = "goodput"
PHASES = ("startup", "train", "checkpoint", "evaluation", "final")
HEADER_BYTES = 64  # the step line; the JSON starts after it


def ledger_files(run_path: Path) -> list[Path]:
    return sorted((Path(run_path) / DIRECTORY).glob("*.json"))


class Ledger:
    """This process's ledger. `resume_step`: the step it trains from; `world_size`: the processes it speaks for;
    `since_start`: the seconds since the process started (jobs.train.startup)."""

    def __init__(self, run_path: Path, *, resume_step: int, world_size: int, cadence: str | float | None,
                 since_start: float):
        self._origin = time.monotonic() - since_start  # the process's start, on this clock
        self.body = {"started": time.time() - self.elapsed(), "host": socket.gethostname(), "pid": os.getpid(),
                     "world_size": world_size, "resume_step": resume_step, "first_step": None,
                     "cadence": cadence, "interval_seconds": None, "save_cost_seconds": None,
                     "phase": "startup", "seconds": dict.fromkeys(PHASES, 0.0), "at": 0.0,
                     "snapshots": [], "saves": 0, "end": None}
        self._entered = 0.0  # start-up began with the process
        self.fd = self._create(Path(run_path) / DIRECTORY)
        self.step(resume_step)
        self._write_body()

    @staticmethod
    def _create(directory: Path) -> int | None:
        """The next start's file, numbered in order (only the run's lock holder writes here)."""
        try:
            directory.mkdir(exist_ok=True)
            index = len(list(directory.glob("*.json")))
            while True:
                index += 1
                try:
                    return os.open(directory / f"{index:05d}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
        except OSError:
            return None  # accounting is not worth failing a training for: this start goes unaccounted

    def elapsed(self) -> float:
        return time.monotonic() - self._origin

    @property
    def phase(self) -> str:
        return self.body["phase"]

    def train_seconds(self) -> float:
        """The seconds of train steps so far (the first step is start-up)."""
        seconds = self.body["seconds"]["train"]
        return seconds + (self.elapsed() - self._entered if self.phase == "train" else 0.0)

    def enter(self, phase: str) -> None:
        now = self.elapsed()
        self.body["seconds"][self.phase] += now - self._entered
        self.body["phase"], self._entered, self.body["at"] = phase, now, now
        self._write_body()

    @contextmanager
    def within(self, phase: str):
        """A phase inside another (a save inside the final phase, an evaluation at an epoch's end)."""
        before = self.phase
        self.enter(phase)
        try:
            yield
        finally:
            self.enter(before)

    def first_step_done(self, step: int) -> None:
        self.body["first_step"] = step
        self.step(step)
        self.enter("train")

    def snapshot(self, step: int) -> None:
        """A checkpoint of `step` is being taken: the train seconds it would keep."""
        self.body["snapshots"].append([step, round(self.train_seconds(), 4)])
        self.body["saves"] += 1

    def cadence_in_use(self, interval: float | None, save_cost: float | None) -> None:
        self.body["interval_seconds"], self.body["save_cost_seconds"] = interval, save_cost

    def step(self, step: int) -> None:
        if self.fd is not None:
            self._pwrite(f"{step} {self.elapsed():.4f}".ljust(HEADER_BYTES - 1).encode() + b"\n", 0)

    def end(self, how: str) -> None:
        """How the process ends (finished, stopped, failed, ...); the last write, as late as the exit allows."""
        self.body["end"] = how
        self.enter(self.phase)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _write_body(self) -> None:
        if self.fd is not None:
            self._pwrite(json.dumps(self.body).encode() + b"\n", HEADER_BYTES)

    def _pwrite(self, data: bytes, offset: int) -> None:
        try:
            os.pwrite(self.fd, data, offset)
        except OSError:
            os.close(self.fd)
            self.fd = None


class NoLedger:
    """The ledger of ranks other than 0 (rank 0's speaks for all of them), and of runs that cannot keep one."""
    phase = "startup"

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    @contextmanager
    def within(self, phase: str):
        yield

    def train_seconds(self) -> float:
        return 0.0


def read_ledger(path: Path) -> dict | None:
    """One start's record, its phase seconds brought up to its last step line; None if unreadable."""
    try:
        data = path.read_bytes()
        words = data[:HEADER_BYTES].split()
        body, _ = json.JSONDecoder().raw_decode(data[HEADER_BYTES:].decode())  # a longer earlier body may trail
        last_step, last_at = int(words[0]), float(words[1])
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    at = max(last_at, body["at"])
    body["seconds"][body["phase"]] += at - body["at"]
    body.update(last_step=last_step, total_seconds=at, path=str(path))
    return body
