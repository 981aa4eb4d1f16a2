"""Whether the process a record names (a lock's holder, a status writer) is provably gone."""
import os
import socket


def alive(pid) -> bool:
    """Whether a process with this pid runs on this host (one we may not signal counts as alive; a zombie,
    killed but not yet reaped by its parent, does not)."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc to ask: it exists


def dead_here(record: dict) -> bool:
    """The record's process ran on this host and is gone (on another host nothing is proven)."""
    return record.get("host") == socket.gethostname() and not alive(record.get("pid"))
