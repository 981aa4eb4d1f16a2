"""What a (re)start costs until its first training step, and the compile caches that cut it.

A requeued job pays its start-up again: imports, data to the device, CUDA's initialisation, and for a
compiled model (torch.compile) the compilation. Each start records a `first-step` event with the seconds
from the process's start to the end of its first step, by phase. torch.compile's caches (inductor's
FX-graph and autograd caches, Triton's kernels) live next to the runs, so that a requeued job, or a new
run of the same model, loads its kernels instead of compiling them again.
"""
import os
import time
from pathlib import Path

COMPILE_CACHE = ".compile-cache"  # in the runs directory, shared by its runs (safe for concurrent use)
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"  # inductor's caches; Triton's kernels go below it too
_IMPORTED = time.monotonic()
process_started: float | None = None  # CLOCK_BOOTTIME when a standby became this trainer
_chosen_here: str | None = None  # the cache directory this process chose (a user's own choice is kept)


def seconds_since_process_start() -> float:
    """From /proc (Linux: the kernel's own start time of this process), else since this module's import; in a
    supervisor's standby (jobs.supervise.standby), since it was handed its trainer."""
    try:
        uptime = time.clock_gettime(time.CLOCK_BOOTTIME)  # /proc/uptime's clock, to the nanosecond
        if process_started is not None:
            return max(uptime - process_started, 0.0)
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return max(uptime - started / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def use_compile_cache(runs_dir: Path) -> None:
    """Point torch.compile's caches into the runs directory, unless the user chose a place already."""
    global _chosen_here
    if os.environ.get(CACHE_ENV) in (None, _chosen_here):
        _chosen_here = os.environ[CACHE_ENV] = str(Path(runs_dir).resolve() / COMPILE_CACHE)


class StartupClock:
    """Marks seconds since the process started: imports until launch(), then each phase after it."""

    def __init__(self):
        self.marks = {"launch": seconds_since_process_start()}

    def mark(self, phase: str) -> None:
        self.marks[phase] = seconds_since_process_start()

    def phases(self) -> dict:
        """{"seconds": total, "imports": ..., "<phase>": duration, ...} in the order they were marked."""
        out, previous = {"imports": round(self.marks["launch"], 3)}, self.marks["launch"]
        for phase, at in list(self.marks.items())[1:]:
            out[phase] = round(at - previous, 3)
            previous = at
        out["seconds"] = round(previous, 3)
        return out
