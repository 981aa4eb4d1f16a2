"""One writer per run: a filelock on the run directory plus a record of who holds it.

The OS lock (flock) dies with its process, so on one host a killed trainer never blocks the next
one. The holder record (`lock.json`) covers what flock cannot see: a holder on another node of a
shared filesystem. A record left behind by a holder that is provably gone (same host; or the same
SLURM job, requeued; or a SLURM job that is no longer running) is broken and the event recorded.
"""
import os
import socket
import time
from pathlib import Path

import filelock

from jobs.files import read_json, write_json_atomic
from jobs.run_dir import slurm_job_id


class RunLocked(Exception):
    """Another live process holds the run."""


def describe_holder(holder: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("time", 0)))
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{job}, since {since}"


class RunLock:
    def __init__(self, run_path: Path, slurm_job_running=None):
        self.lock_file = Path(run_path) / "lock"
        self.holder_file = Path(run_path) / "lock.json"
        self._lock = filelock.FileLock(self.lock_file, timeout=0)
        self.record_error: OSError | None = None  # set when the holder record could not be written
        # how to ask SLURM whether a job still runs: injected so jobs.lock needs no scheduler
        self._slurm_job_running = slurm_job_running or (lambda job_id: None)

    def acquire(self, force: bool = False) -> dict | None:
        """Take the lock. Returns the broken holder's record if one was broken, else None."""
        if force:  # break any lock explicitly: a fresh lock file, the old holder keeps a dead inode
            self.lock_file.unlink(missing_ok=True)
            self._lock = filelock.FileLock(self.lock_file, timeout=0)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            holder = self._live_holder_record()
            raise RunLocked(f"run is in use by {describe_holder(holder)}") from None
        broken = self.holder()
        if broken and not force and not self._provably_gone(broken):
            self._lock.release()
            raise RunLocked(f"run is held by {describe_holder(broken)}, which may still be running "
                            "on another host; pass --force if it is not")
        me = {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": slurm_job_id(),
              "time": time.time()}
        try:
            write_json_atomic(self.holder_file, me)
            self.record_error = None
        except OSError as e:  # full disk: the flock still guards the run; only the name of its holder is missing
            self.record_error = e
        return broken

    def _live_holder_record(self, wait: float = 2.0) -> dict:
        """The record of whoever holds the OS lock. A holder writes it just after taking the lock, so in
        between there is none, or still the one of an earlier holder that was killed (a dead pid on this
        host): wait a moment for the live holder's own record rather than name the wrong process."""
        deadline = time.monotonic() + wait
        while True:
            holder = self.holder() or {}
            if (holder.get("pid") not in (None, "?") and not self._dead_here(holder)) or time.monotonic() > deadline:
                return holder
            time.sleep(0.05)

    @staticmethod
    def _dead_here(holder: dict) -> bool:
        if holder.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(holder["pid"]), 0)
        except (ProcessLookupError, ValueError, TypeError):
            return True
        except PermissionError:
            return False
        return False

    def _provably_gone(self, holder: dict) -> bool:
        if holder.get("host") == socket.gethostname():
            return True  # we got the flock on this host, so its holder process is gone
        job = holder.get("slurm_job_id")
        if job and job == slurm_job_id():
            return True  # an earlier run of this very (requeued) job
        return bool(job) and self._slurm_job_running(job) is False

    def holder(self) -> dict | None:
        try:
            return read_json(self.holder_file)
        except ValueError:
            return {"host": "?", "pid": "?"}  # torn record: treat as unknown holder

    def release(self) -> None:
        if self._lock.is_locked:
            try:
                self.holder_file.unlink(missing_ok=True)
            except OSError:  # a read-only or vanished run directory: the flock goes with the process anyway
                pass
            try:
                self._lock.release()
            except OSError:
                pass

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
