"""Progress for people: a rich progress bar on a terminal, plain greppable lines under sbatch.

Output is best-effort: under sbatch stdout and stderr are files, often on the disk that just filled up,
and a line that cannot be written must not stop the training."""
import contextlib
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class Reporter:
    """`interactive=None` picks rich on a TTY and plain lines otherwise (sbatch logs, pipes). `quiet`: only
    warnings (the ranks other than 0 of a run trained by several processes: rank 0 shows the progress)."""

    def __init__(self, interactive: bool | None = None, plain_every_seconds: float = 30.0, quiet: bool = False):
        self.quiet = quiet
        self.interactive = (sys.stdout.isatty() if interactive is None else interactive) and not quiet
        self.console = Console(stderr=False, highlight=False) if self.interactive else None
        self.plain_every_seconds = plain_every_seconds
        self._progress: Progress | None = None
        self._task = None
        self._last_plain = 0.0

    def message(self, text: str) -> None:
        if self.quiet:
            return
        with contextlib.suppress(OSError):
            if self.console:
                self.console.print(text, markup=False)
            else:
                print(text, flush=True)

    def warn(self, text: str) -> None:
        with contextlib.suppress(OSError):
            print(text, file=sys.stderr, flush=True)

    def start_epoch(self, epoch: int, epochs: int, done: int, total: int) -> None:
        self._last_plain = time.monotonic()
        if not self.interactive:
            return
        self._progress = Progress(TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                  console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task("train", total=total, completed=done, info="")

    def step(self, epoch: int, epochs: int, done: int, total: int, info: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, info=info)
        elif not self.quiet and time.monotonic() - self._last_plain >= self.plain_every_seconds:
            self._last_plain = time.monotonic()
            self.message(f"epoch {epoch}/{epochs} step {done}/{total} {info}")

    def end_epoch(self, line: str) -> None:
        self.close()
        self.message(line)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
