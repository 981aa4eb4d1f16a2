"""Reading which checkpoints a run has committed, without torch (status, the supervisor, resume.py).

`manifest.json` lists the complete checkpoints; each checkpoint also has a sidecar `<file>.json` with
the same entry, from which a lost or corrupt manifest is rebuilt (jobs.checkpoint.store writes both)."""
import hashlib
from pathlib import Path

from jobs.checkpoint.layout import MANIFEST, SIDECARS
from jobs.run.files import read_json


def committed_entries(directory: Path, warn=lambda message: None) -> list[dict]:
    """Committed checkpoints, oldest first: the manifest, or the sidecars if it is unreadable."""
    directory = Path(directory)
    manifest_file = directory / MANIFEST
    try:
        manifest = read_json(manifest_file)
        if manifest is not None:
            return list(manifest["checkpoints"])
    except (ValueError, KeyError, TypeError) as e:
        warn(f"warning: {manifest_file} is corrupt ({e}); rebuilding it from the sidecar files")
    else:
        if not any(directory.glob(SIDECARS)):
            return []
        warn(f"warning: {manifest_file} is missing; rebuilding it from the sidecar files")
    entries = []
    for sidecar in sorted(directory.glob(SIDECARS)):
        try:
            entries.append(read_json(sidecar))
        except ValueError:
            continue
    return sorted(entries, key=lambda e: e["step"])


def committed_step(directory: Path) -> int | None:
    """The step of the newest committed checkpoint; None if there is none (or the directory is unreadable)."""
    try:
        entries = committed_entries(directory)
    except OSError:
        return None
    return max((e["step"] for e in entries), default=None)


def verified_bytes(directory: Path, entry: dict) -> bytes:
    """The checkpoint's bytes if their size and sha256 match its entry; ValueError otherwise."""
    path = Path(directory) / entry["file"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{entry['file']} is missing") from None
    if len(data) != entry["size"]:
        raise ValueError(f"{entry['file']} has {len(data)} bytes, expected {entry['size']} (truncated?)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ValueError(f"{entry['file']} fails its sha256 check (corrupted)")
    return data
