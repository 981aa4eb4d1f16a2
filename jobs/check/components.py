"""The parts of a task that decide its future, found on the task object, and a fingerprint of each: what the
resume check compares between an uninterrupted task and one resumed from its checkpoint."""
import hashlib
import random

import numpy as np
import torch
from torch.utils.data import DataLoader

# the order in which differences are named: a cause before what it changes
KINDS = ("the global RNGs", "a generator", "a data loader", "an LR scheduler", "an optimizer", "a model", "a counter")


def _feed(digest, value) -> None:
    if isinstance(value, torch.Tensor):
        digest.update(str((value.dtype, tuple(value.shape))).encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        for key, item in value.items():
            digest.update(repr(key).encode())
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _feed(digest, item)
    elif isinstance(value, np.ndarray):
        digest.update(value.tobytes())
    elif callable(value):
        digest.update(b"<callable>")  # a scheduler's lambda: the same code in both tasks
    else:
        digest.update(repr(value).encode())


def fingerprint(value) -> str:
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()[:16]


def _loader_state(loader: DataLoader) -> dict:
    """What decides a DataLoader's next batches: its generator, its sampler's generator."""
    sampler = getattr(loader, "sampler", None)
    return {"generator": loader.generator.get_state() if loader.generator is not None else None,
            "sampler": sampler.generator.get_state() if getattr(sampler, "generator", None) is not None else None}


def _kind(name: str, value) -> tuple[str, str] | None:
    """(kind, fingerprint) of a part that decides a task's future; None for anything else."""
    if isinstance(value, torch.nn.Module):
        return "a model", fingerprint(value.state_dict())
    if isinstance(value, torch.optim.Optimizer):
        return "an optimizer", fingerprint(value.state_dict())
    if isinstance(value, torch.optim.lr_scheduler.LRScheduler):
        return "an LR scheduler", fingerprint(value.state_dict())
    if isinstance(value, torch.Generator):
        return "a generator", fingerprint(value.get_state())
    if isinstance(value, DataLoader):
        return "a data loader", fingerprint(_loader_state(value))
    # a public int (a step, a position); a private one, or a float (a timer, the last loss), is not the state
    if type(value) is int and not name.rsplit(".", 1)[-1].startswith("_"):
        return "a counter", fingerprint(value)
    return None


def components(task) -> dict[str, tuple[str, str]]:
    """{name: (kind, fingerprint)} of the task's attributes that decide its future (and of those in its dicts,
    lists and tuples), and of the global RNGs."""
    found = {"the global RNGs": ("the global RNGs", fingerprint(
        [torch.get_rng_state(), np.random.get_state()[1], random.getstate()[1]]))}
    for attribute, value in vars(task).items():
        if isinstance(value, dict):
            items = value.items()
        else:
            items = enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]
        for key, item in items:
            name = f"task.{attribute}" if key is None else f"task.{attribute}[{key!r}]"
            part = _kind(name, item)
            if part is not None:
                found[name] = part
    return found


def first_difference(want: dict, got: dict) -> tuple[str, str] | None:
    """(name, kind) of the first part that differs, causes first; None if all are equal."""
    differing = [(KINDS.index(kind), name, kind) for name, (kind, value) in want.items()
                 if got.get(name, (kind, None))[1] != value]
    return min(differing)[1:] if differing else None
