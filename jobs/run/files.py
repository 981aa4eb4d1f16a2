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
        with open(path) as f:  # not pathlib: status.py reads thousands of these
            text = f.read()
    except FileNotFoundError:
        return None
    return json.loads(text)


def append_json_lines(path: Path, records: list) -> None:
    """Append JSON lines in one write; O_APPEND keeps concurrent lines whole, fsync keeps them after a crash.

    A file whose last line is torn (a crash or a full disk cut an earlier append) gets a newline first,
    so the torn line never swallows these records. A failed write is cut back to the old end of the
    file, so a full disk leaves no half line behind either."""
    data = "".join(json.dumps(record, sort_keys=True) + "\n" for record in records).encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end = os.fstat(fd).st_size
        if end and os.pread(fd, 1, end - 1) != b"\n":
            data = b"\n" + data
        try:
            remaining = memoryview(data)
            while remaining:  # a write cut short (by a signal) goes on; a full disk raises ENOSPC
                remaining = remaining[os.write(fd, remaining):]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, end)
            except OSError:
                pass  # the torn tail stays; the next append starts on a new line and readers skip it
            raise
    finally:
        os.close(fd)


def read_json_lines(path: Path, containing: str | None = None) -> list[dict]:
    """All complete records; a torn line (cut by a kill or a full disk, anywhere in the file) is skipped.
    `containing`: only the lines holding this text are parsed (status.py counts resumes over thousands of runs)."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        if containing is not None and containing not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
