"""Whether the process a record names (a lock's holder, a status writer) is provably gone."""
import os
import socket


def alive(pid) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def dead_here(record: dict) -> bool:
    """The record's process ran on this host and is gone (on another host nothing is proven)."""
    return record.get("host") == socket.gethostname() and not alive(record.get("pid"))
