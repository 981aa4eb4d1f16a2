"""Checkpoint store: atomic, verified checkpoints with a manifest as the commit marker
(docs/design.md, invariant 3).

Each checkpoint (jobs.checkpoint.layout) is written durably with its sidecar before `manifest.json` lists it,
so a checkpoint is never "latest" before it is whole; a lost or corrupt manifest is rebuilt from the sidecars.
The store does not know the task's state: `weights_of(state)` says where the model's weights are in it.
"""
import hashlib
import io
import pickle
import time
from pathlib import Path

import torch
from torch.serialization import get_unsafe_globals_in_checkpoint

from jobs import testing
from jobs.checkpoint.layout import CHECKPOINTS, FORMAT, MANIFEST, TEMP_FILES, checkpoint_name, sidecar_name
from jobs.checkpoint.manifest import committed_entries, verified_bytes
from jobs.errors import CONTRACT, ContractError, UserError
from jobs.run.files import write_atomic, write_json_atomic

STATE_HOLDS = f"a task's state_dict() may hold tensors, numbers, strings, lists and dicts ({CONTRACT})"


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's elements in row-major order, as bytes (a view: no copy when it is contiguous on the host)."""
    return memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def _tensors(value, name: str = ""):
    """(name, tensor) of every tensor in a nested state, in order: a state dict's keys, then its nested dicts'."""
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{name}.{index}" if name else str(index))


def model_digest(weights) -> str:
    """sha256 over the raw bytes of every tensor of the weights (a model state_dict: in key order)."""
    digest = hashlib.sha256()
    for _, tensor in _tensors(weights):
        digest.update(tensor_bytes(tensor))  # hashlib lets go of the GIL for large buffers
    return digest.hexdigest()


def nonfinite_tensors(weights) -> list[str]:
    """Names of the floating-point tensors of the weights that hold a NaN or an infinity."""
    return [name for name, tensor in _tensors(weights)
            if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


class NonFiniteCheckpoint(Exception):
    """The model state to be saved holds NaN or infinite values: it is not written (a diverged run)."""

    def __init__(self, step: int, names: list[str]):
        super().__init__(f"the model state of step {step} holds non-finite values ({', '.join(names[:3])}"
                         f"{', ...' if len(names) > 3 else ''}); not saved")
        self.step = step


class CheckpointStore:
    """Saves, lists, verifies and prunes the checkpoints of one run directory."""

    def __init__(self, directory: Path, keep_last: int = 3, keep_every_epochs: int | None = None, warn=print,
                 weights_of=lambda state: state, refuse_nonfinite: bool = False):
        self.directory = Path(directory)
        self.manifest_file = self.directory / MANIFEST
        self.keep_last = keep_last
        self.keep_every_epochs = keep_every_epochs
        self.warn = warn
        self.weights_of = weights_of  # where the model's weights are in a state (digest, non-finite check)
        self.refuse_nonfinite = refuse_nonfinite  # a diverged run's weights are never committed
        self.write = testing.slow_checkpoint_write()

    # -- writing -----------------------------------------------------------------------------
    def save(self, state: dict, step: int, epoch: float, *, epoch_end: bool = False, final: bool = False,
             metric: float | None = None) -> dict:
        """Write `state` (already a host snapshot) durably, then commit it in the manifest."""
        started = time.perf_counter()
        weights = self.weights_of(state)
        if self.refuse_nonfinite:
            bad = nonfinite_tensors(weights)
            if bad:
                raise NonFiniteCheckpoint(step, bad)
        data = self._serialized(state)
        name = checkpoint_name(step)
        entry = {"file": name, "step": step, "epoch": epoch, "epoch_end": epoch_end, "final": final,
                 "metric": metric, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                 "model_digest": model_digest(weights), "time": time.time()}
        previous = self.entries()  # before the new sidecar exists, so a rebuild never lists it half-done
        write_atomic(self.directory / name, data, self.write)
        write_json_atomic(self.directory / sidecar_name(name), entry)
        entries = [e for e in previous if e["step"] != step] + [entry]
        entries.sort(key=lambda e: e["step"])
        kept = self._retained(entries)
        write_json_atomic(self.manifest_file, {"format": FORMAT, "checkpoints": kept})
        self._delete_unlisted(kept)
        entry["seconds"] = time.perf_counter() - started
        return entry

    def _serialized(self, state: dict) -> bytes:
        """torch.save's bytes. A state it cannot pickle, or one that torch.load(weights_only=True) would refuse at
        the resume, is the workload's, not a disk's: a ContractError (the pickle's globals are scanned at every
        save, without building its tensors: a fraction of a millisecond)."""
        buffer = io.BytesIO()
        try:
            torch.save(state, buffer)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            raise ContractError(f"the checkpoint's state cannot be saved ({type(e).__name__}: {e}); {STATE_HOLDS}") \
                from e
        buffer.seek(0)
        refused = get_unsafe_globals_in_checkpoint(buffer)
        if refused:
            raise ContractError(f"the checkpoint's state holds what torch.load(weights_only=True) refuses to load "
                                f"back at a resume ({', '.join(refused[:3])}); {STATE_HOLDS}")
        return buffer.getvalue()

    def _retained(self, entries: list[dict]) -> list[dict]:
        keep = {e["step"] for e in entries[-self.keep_last:]}
        keep |= {e["step"] for e in entries if e.get("final")}
        scored = [e for e in entries if e.get("metric") is not None]
        if scored:
            keep.add(max(scored, key=lambda e: (e["metric"], e["step"]))["step"])
        if self.keep_every_epochs:
            keep |= {e["step"] for e in entries
                     if e.get("epoch_end") and round(e["epoch"]) % self.keep_every_epochs == 0}
        return [e for e in entries if e["step"] in keep]

    def _delete_unlisted(self, kept: list[dict]) -> None:
        names = {e["file"] for e in kept}
        for path in self.directory.glob(CHECKPOINTS):
            if path.name not in names:
                path.unlink(missing_ok=True)
                (path.parent / sidecar_name(path.name)).unlink(missing_ok=True)

    def remove_temp_files(self) -> list[Path]:
        """Temp files left by a writer that was killed mid-write (only the lock holder calls this)."""
        leftovers = list(self.directory.glob(TEMP_FILES))
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    # -- reading -----------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        """Committed checkpoints, oldest first: the manifest, or the sidecars if it is unreadable."""
        return committed_entries(self.directory, self.warn)

    def verify(self, entry: dict) -> bytes:
        """The checkpoint's bytes if their size and sha256 match the entry; ValueError otherwise."""
        return verified_bytes(self.directory, entry)

    def load_latest(self, on_fallback=None) -> tuple[dict, dict] | None:
        """(state, entry) of the newest checkpoint that verifies; None if the run has none yet.

        A bad checkpoint is reported through `on_fallback(entry, reason)` and the previous one is tried;
        if checkpoints exist but none verifies, that is a UserError (never silently start over)."""
        entries = self.entries()
        reasons = []
        for entry in reversed(entries):
            try:
                data = self.verify(entry)
                state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except Exception as e:  # any unreadable checkpoint means: try the previous one
                reasons.append(str(e))
                if on_fallback:
                    on_fallback(entry, str(e))
                continue
            return state, entry
        if entries:
            raise UserError(f"none of the {len(entries)} checkpoints in {self.directory} is usable: "
                            + "; ".join(reasons))
        return None
