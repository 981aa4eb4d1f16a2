"""Durable file writes: a file is either the old one or the whole new one, never half of each."""
import json
import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` survive a crash of the machine, not only of the process."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    # Same directory, so os.replace is a rename within one filesystem (atomic); the pid keeps
    # two writers from sharing a temp file. Leftovers are recognised by the ".tmp-" infix.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_atomic(path: Path, data: bytes, write=None) -> None:
    """temp file -> flush -> fsync -> os.replace -> fsync(dir). `write(f, data)` may be swapped
    (tests slow it down or make it fail); on any error the temp file is removed and the old file stays."""
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            (write or _write_all)(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _write_all(f, data: bytes) -> None:
    f.write(data)


def write_json_atomic(path: Path, obj) -> None:
    write_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: Path):
    """The parsed file, or None if it is missing; a corrupt file raises ValueError."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    return json.loads(text)


def append_json_line(path: Path, obj) -> None:
    """Append one JSON line; O_APPEND keeps concurrent lines whole, fsync keeps them after a crash."""
    line = (json.dumps(obj, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json_lines(path: Path) -> list[dict]:
    """All complete lines; a torn last line (a kill mid-append) is skipped, not fatal."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
