"""One writer per run: a filelock on the run directory plus a record of who holds it.

The OS lock (flock) dies with its process, so on one host a killed trainer never blocks the next
one. The holder record (`lock.json`) covers what flock cannot see: a holder on another node of a
shared filesystem. A record left behind by a holder that is provably gone (same host; or the same
SLURM job, requeued; or a SLURM job that is no longer running) is broken and the event recorded.

Where the filesystem has no flock (Lustre mounted without `-o flock` answers ENOSYS), the lock is an
exclusive-create file, `lock.excl`, with the same holder record. A killed holder leaves that file
behind; it is broken like a record: when its holder is provably gone (on the same host: its pid is dead).
"""
import errno
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

import filelock

from jobs.environment import JobEnvironment
from jobs.run.files import read_json, write_json_atomic
from jobs.run.processes import dead_here


class RunLocked(Exception):
    """Another live process holds the run."""


def describe_holder(holder: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("time", 0)))
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{job}, since {since}"


NO_FLOCK = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK}  # Lustre without -o flock; other network filesystems
_warned_no_flock: set[str] = set()  # directories already warned about, once per process


def flock_works(path: Path) -> bool:
    """Whether the filesystem holding `path` (created if missing) supports flock()."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError as e:
        return e.errno not in NO_FLOCK  # EWOULDBLOCK: a holder has it, so flock works
    finally:
        os.close(fd)
    return True


class RunLock:
    def __init__(self, run_path: Path, slurm_job_running=None, warn=None, world_size: int = 1):
        self.world_size = world_size  # the processes training the run; only rank 0 takes the lock
        self.lock_file = Path(run_path) / "lock"
        self.exclusive_file = Path(run_path) / "lock.excl"  # the lock where flock is missing
        self.holder_file = Path(run_path) / "lock.json"
        self._lock = None  # chosen when taken: flock, or the exclusive-create file
        self.record_error: OSError | None = None  # set when the holder record could not be written
        # how to ask SLURM whether a job still runs: injected so jobs.run.lock needs no scheduler
        self._slurm_job_running = slurm_job_running or (lambda job_id: None)
        self._warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))

    @property
    def without_flock(self) -> bool:
        return isinstance(self._lock, filelock.SoftFileLock)

    def _os_lock(self):
        if flock_works(self.lock_file):
            return filelock.UnixFileLock(self.lock_file, timeout=0)
        directory = str(self.lock_file.parent.parent)
        if directory not in _warned_no_flock:
            _warned_no_flock.add(directory)
            self._warn(f"warning: the filesystem of {directory} does not support flock() (on Lustre: mounted "
                       "without -o flock); runs there are locked by an exclusive-create file "
                       f"({self.exclusive_file.name}) instead, which a killed holder leaves behind: it is broken "
                       "once its holder is provably gone")
        return filelock.SoftFileLock(self.exclusive_file, timeout=0)

    def acquire(self, force: bool = False) -> dict | None:
        """Take the lock. Returns the broken holder's record if one was broken, else None."""
        if force:  # break any lock explicitly: a fresh lock file, the old holder keeps a dead inode
            self.lock_file.unlink(missing_ok=True)
            self.exclusive_file.unlink(missing_ok=True)
        self._lock = self._os_lock()
        stale = None
        try:
            self._lock.acquire()
        except filelock.Timeout:
            holder = self._live_holder_record()
            if not (self.without_flock and self._provably_gone(holder, lock_taken=False)):
                raise RunLocked(f"run is in use by {describe_holder(holder)}") from None
            stale = holder  # an exclusive-create file left by a holder that is gone: break it
            self.exclusive_file.unlink(missing_ok=True)
            try:
                self._lock.acquire()
            except filelock.Timeout:  # another starter broke it first, and holds it now
                raise RunLocked(f"run is in use by {describe_holder(self._live_holder_record())}") from None
        broken = stale or self.holder()
        if broken and not force and not self._provably_gone(broken):
            self._lock.release()
            raise RunLocked(f"run is held by {describe_holder(broken)}, which may still be running "
                            "on another host; pass --force if it is not")
        me = {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": JobEnvironment().job_id,
              "world_size": self.world_size, "time": time.time()}
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
            if (holder.get("pid") not in (None, "?") and not dead_here(holder)) or time.monotonic() > deadline:
                return holder
            time.sleep(0.05)

    def _provably_gone(self, holder: dict, lock_taken: bool = True) -> bool:
        if holder.get("host") == socket.gethostname():
            # we took the lock on this host, so its holder process is gone; an exclusive-create file that is
            # still there proves nothing by itself: its holder's pid must be dead
            return lock_taken or dead_here(holder)
        job = holder.get("slurm_job_id")
        if job and job == JobEnvironment().job_id:
            return True  # an earlier run of this very (requeued) job
        return bool(job) and self._slurm_job_running(job) is False

    def holder(self) -> dict | None:
        try:
            return read_json(self.holder_file)
        except ValueError:
            return {"host": "?", "pid": "?"}  # torn record: treat as unknown holder

    def release(self) -> None:
        if self._lock is not None and self._lock.is_locked:
            try:
                self.holder_file.unlink(missing_ok=True)
            except OSError:  # a read-only or vanished run directory: the flock goes with the process anyway
                pass
            try:
                self._lock.release()
            except OSError:
                pass
