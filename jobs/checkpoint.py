"""Checkpoint store: atomic, verified checkpoints with a manifest as the commit marker.

A checkpoint is `ckpt-step<N>.pt` (torch.save of a plain dict) plus a sidecar `ckpt-step<N>.pt.json`
with its size and sha256. `manifest.json` lists the complete checkpoints; it is written (atomically)
only after the checkpoint and its sidecar are durable, so a checkpoint is never "latest" before it
is whole. If the manifest itself is lost or corrupt, it is rebuilt from the sidecars.
"""
import copy
import hashlib
import io
import os
import threading
import time
from pathlib import Path

import torch

from jobs.errors import UserError
from jobs.files import write_atomic, write_json_atomic
from jobs.manifest import MANIFEST, committed_entries, verified_bytes

SLOW_WRITE_ENV = "JOBS_TEST_SLOW_WRITE_SECONDS"  # test hook: stretch each write so kills land inside it


def checkpoint_name(step: int) -> str:
    return f"ckpt-step{step:09d}.pt"


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's elements in row-major order, as bytes (a view: no copy when it is contiguous on the host)."""
    return memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def model_digest(model_state: dict) -> str:
    """sha256 over the raw bytes of every tensor of a model state_dict, in key order."""
    digest = hashlib.sha256()
    for value in model_state.values():
        if isinstance(value, torch.Tensor):
            digest.update(tensor_bytes(value))  # hashlib lets go of the GIL for large buffers
    return digest.hexdigest()


class NonFiniteCheckpoint(Exception):
    """The model state to be saved holds NaN or infinite values: it is not written (a diverged run)."""

    def __init__(self, step: int, names: list[str]):
        super().__init__(f"the model state of step {step} holds non-finite values ({', '.join(names[:3])}"
                         f"{', ...' if len(names) > 3 else ''}); not saved")
        self.step = step


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or an infinity."""
    return [name for name, value in state.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()]


def _dense(tensor: torch.Tensor) -> bool:
    """Its elements fill one block of memory (contiguous or channels_last): it can be copied as a flat block."""
    return tensor.is_contiguous() or (tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last))


# immutable leaves: shared with the state, not copied (an optimizer state dict holds hundreds of them)
_ATOMIC = frozenset({int, float, bool, str, bytes, type(None), torch.dtype, torch.device})


class _Group:
    """The tensors of one (device, dtype): views into one flat buffer on the device and one on the host."""

    def __init__(self, device: torch.device, dtype: torch.dtype, members: list):
        self.indices = [index for index, _, _ in members]  # positions in the state's staged tensors
        total = sum(torch.Size(shape).numel() for _, shape, _ in members)
        self.device_flat = torch.empty(total, dtype=dtype, device=device)
        self.host_flat = torch.empty(total, dtype=dtype, pin_memory=device.type == "cuda")
        self.device_views, self.host_views, offset = [], [], 0
        for _, shape, stride in members:
            self.device_views.append(self.device_flat.as_strided(shape, stride, offset))
            self.host_views.append(self.host_flat.as_strided(shape, stride, offset))
            offset += torch.Size(shape).numel()


class HostCopy:
    """Host copies of a state's tensors for the background writer, taken without making training wait.

    The device tensors of one dtype are gathered by one multi-tensor copy into a staging buffer on the
    device, which goes to a pinned host buffer in one device-to-host copy (hundreds of small copies cost
    ~20 us each to launch); both buffers are kept from one save to the next. Nothing waits: a CUDA event
    per device marks when the copy has landed, and the writer thread waits for it before it reads. Kernels
    queued after the copies cannot change what they copy (same stream). CPU tensors are cloned.
    `on` names the device types staged this way (tests stage CPU tensors to check the layout).

    Training waits for the Python part, so it is one walk over the state: while the tensors have the
    layout of the last save (every save but the first), the walk puts the kept host views straight into
    the copy it builds; otherwise it allocates new buffers and walks again."""

    def __init__(self, on: tuple[str, ...] = ("cuda",)):
        self.on = on
        self._layout: list = []  # the (shape, stride, dtype, device) of every staged tensor, in order, as allocated
        self._host_views: list = []  # the host view of each staged tensor, by position
        self._groups: list[_Group] = []

    def take(self, state) -> tuple[object, list]:
        """(host state, events to wait for before reading it)."""
        with torch.no_grad():  # the copies need no autograd bookkeeping (parameters require grad)
            host_state, staged, layout = self._walk(state)
            if layout != self._layout:  # the first save, or tensors of another shape: new buffers
                self._allocate(layout)
                host_state, staged, _ = self._walk(state)
            events = []
            for group in self._groups:
                torch._foreach_copy_(group.device_views, [staged[index] for index in group.indices])
                group.host_flat.copy_(group.device_flat, non_blocking=True)
                if group.device_flat.device.type == "cuda":
                    event = torch.cuda.Event()
                    event.record(torch.cuda.current_stream(group.device_flat.device))
                    events.append(event)
        return host_state, events

    def _walk(self, state) -> tuple[object, list, list]:
        """(a copy of the state whose staged tensors are the kept host views where their layout matches,
        the staged tensors, their layout)."""
        staged: list[torch.Tensor] = []
        layout: list[tuple] = []
        kept, views, on = self._layout, self._host_views, self.on

        def walk(value):
            if type(value) in _ATOMIC:
                return value
            if isinstance(value, dict):
                return {key: walk(item) for key, item in value.items()}
            if isinstance(value, torch.Tensor):
                index = len(staged)
                where = (value.shape, value.stride(), value.dtype, value.device)
                # a kept layout is a staged one (dense, on a staged device): no need to check it again
                if index < len(kept) and kept[index] == where:
                    staged.append(value)
                    layout.append(where)
                    return views[index]
                if value.device.type in on and _dense(value):
                    staged.append(value)
                    layout.append(where)
                    return None  # a new layout: new buffers and a second walk, so no value is needed
                return value.to("cpu", copy=True)
            if isinstance(value, (list, tuple)):
                if _ATOMIC.issuperset(map(type, value)):  # e.g. a param group's parameter indices
                    return type(value)(value)
                return type(value)(walk(item) for item in value)
            return copy.deepcopy(value)

        return walk(state), staged, layout

    def _allocate(self, layout: list) -> None:
        """One flat buffer per (device, dtype) on each side, and views into them shaped like the tensors."""
        by_group: dict = {}
        for index, (shape, stride, dtype, device) in enumerate(layout):
            by_group.setdefault((device, dtype), []).append((index, shape, stride))
        self._groups = [_Group(device, dtype, members) for (device, dtype), members in by_group.items()]
        self._host_views = [None] * len(layout)
        for group in self._groups:
            for index, view in zip(group.indices, group.host_views, strict=True):
                self._host_views[index] = view
        self._layout = layout


def _slow_write(seconds: float):
    def write(f, data: bytes) -> None:
        chunks = 8
        size = -(-len(data) // chunks)
        for i in range(chunks):
            f.write(data[i * size:(i + 1) * size])
            f.flush()
            time.sleep(seconds / chunks)
    return write


class CheckpointStore:
    """Saves, lists, verifies and prunes the checkpoints of one run directory."""

    def __init__(self, directory: Path, keep_last: int = 3, keep_every_epochs: int | None = None, warn=print):
        self.directory = Path(directory)
        self.manifest_file = self.directory / MANIFEST
        self.keep_last = keep_last
        self.keep_every_epochs = keep_every_epochs
        self.warn = warn
        self.refuse_nonfinite = False  # the trainer turns it on unless the run allows non-finite values
        slow = os.environ.get(SLOW_WRITE_ENV)
        self.write = _slow_write(float(slow)) if slow else None

    # -- writing -----------------------------------------------------------------------------
    def save(self, state: dict, step: int, epoch: float, *, epoch_end: bool = False, final: bool = False,
             metric: float | None = None) -> dict:
        """Write `state` (already a host snapshot) durably, then commit it in the manifest."""
        started = time.perf_counter()
        if self.refuse_nonfinite:
            bad = nonfinite_tensors(state["task"]["model"])
            if bad:
                raise NonFiniteCheckpoint(step, bad)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        name = checkpoint_name(step)
        entry = {"file": name, "step": step, "epoch": epoch, "epoch_end": epoch_end, "final": final,
                 "metric": metric, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                 "model_digest": model_digest(state["task"]["model"]), "time": time.time()}
        previous = self.entries()  # before the new sidecar exists, so a rebuild never lists it half-done
        write_atomic(self.directory / name, data, self.write)
        write_json_atomic(self.directory / (name + ".json"), entry)
        entries = [e for e in previous if e["step"] != step] + [entry]
        entries.sort(key=lambda e: e["step"])
        kept = self._retained(entries)
        write_json_atomic(self.manifest_file, {"format": 1, "checkpoints": kept})
        self._delete_unlisted(kept)
        entry["seconds"] = time.perf_counter() - started
        return entry

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
        for path in self.directory.glob("ckpt-step*.pt"):
            if path.name not in names:
                path.unlink(missing_ok=True)
                (path.parent / (path.name + ".json")).unlink(missing_ok=True)

    def remove_temp_files(self) -> list[Path]:
        """Temp files left by a writer that was killed mid-write (only the lock holder calls this)."""
        leftovers = list(self.directory.glob(".*.tmp-*"))
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


def snapshot(obj):
    """A copy of a state dict whose tensors live on the host, taken synchronously (one copy per tensor)."""
    return HostCopy(on=()).take(obj)[0]


class BackgroundWriter:
    """Writes one checkpoint at a time on a thread; training waits only for queuing the host copies.

    The pinned buffers are reused by the next save: submit() asserts that the previous write was waited
    for, so they are never overwritten while being written."""

    def __init__(self, store: CheckpointStore):
        self.store = store
        self.host = HostCopy()
        self._thread: threading.Thread | None = None
        self._result: dict | None = None
        self._error: BaseException | None = None

    def submit(self, state: dict, **meta) -> None:
        assert self._thread is None, "wait() for and collect() the previous write first"
        host_state, ready = self.host.take(state)
        self._result, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(host_state, ready, meta), daemon=True,
                                        name="checkpoint-writer")
        self._thread.start()

    def _run(self, state: dict, ready: list, meta: dict) -> None:
        time.sleep(0)  # hand the GIL back to the training thread at once: it waits in Thread.start() for us
        try:
            for event in ready:
                event.synchronize()  # the device-to-host copies have landed
            self._result = self.store.save(state, **meta)
        except BaseException as e:  # reported to the training thread by collect()
            self._error = e

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        if self._thread is not None:
            try:
                self._thread.join()
            except RuntimeError:  # a second Ctrl-C interrupted submit() inside Thread.start(): nothing to wait for
                pass

    def collect(self) -> tuple[dict | None, BaseException | None]:
        """The finished write's (entry, error), once; (None, None) while busy or when nothing is new."""
        if self._thread is None or self._thread.is_alive():
            return None, None
        self._thread = None
        return self._result, self._error
