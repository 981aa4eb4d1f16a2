"""Resuming a run with another number of processes (docs/several-processes.md, "Another number of processes").

The global batches stay the same and come in the same order (each rank takes its share of one global
permutation, wherever it runs), the model, optimizer and scheduler are the saved ones. What was each rank's own
cannot be handed over: every rank's generators (the global RNGs, and the task's own through `reseed_rank`)
are re-derived from the checkpoint, its step and the rank, and the epoch's running sums are merged. The
gradients are then summed in another order: the run goes on exactly in what it trains on, but not bit for bit.
"""
import hashlib
import random

import numpy as np
import torch

from jobs.checkpoint.rng import capture_rng
from jobs.data.seeding import mixed_seed
from jobs.errors import UserError


def check_resizable(task, run_id: str, trained_by: int, world_size: int) -> None:
    """UserError if `task` keeps per-rank state that it cannot derive anew for another number of processes."""
    if hasattr(task, "rank_state_dict") and not callable(getattr(task, "reseed_rank", None)):
        raise UserError(f"run {run_id!r} was trained by {trained_by} process(es) and this launch has {world_size}; "
                        f"its task keeps per-rank state (rank_state_dict) but has no reseed_rank(seed) to derive "
                        f"it for another number of processes: resume it with {trained_by}, or give the task a "
                        "reseed_rank (docs/your-own-training.md)")


def saved_world_size(state: dict) -> int:
    return state.get("world_size", 1)


def rank_seed(state: dict, rank: int) -> int:
    """A seed for `rank` that only the checkpoint (its run's rank-0 RNG state, its step) and the rank decide."""
    rng = state["ranks"][0]["rng"] if "ranks" in state else state["rng"]
    base = int.from_bytes(hashlib.sha256(rng["torch"].numpy().tobytes()).digest()[:8], "little")
    return mixed_seed(base, state["step"], rank)


def rederived_rank_state(state: dict, task, rank: int, world_size: int) -> dict:
    """This rank's own states for a run saved by another number of processes: {"rng": ..., "window": ...}.

    The global RNGs are seeded from `rank_seed` and the task's own generators through `task.reseed_rank`."""
    seed = rank_seed(state, rank)
    torch.manual_seed(seed)  # every CUDA device too
    np.random.seed([seed & 0xFFFFFFFF, seed >> 32])  # both halves: numpy takes 32-bit words
    random.seed(seed)
    rng = capture_rng()
    if callable(getattr(task, "reseed_rank", None)):
        task.reseed_rank(seed)
    mine = {"rng": rng}
    windows = [r["window"] for r in state["ranks"] if r.get("window")] if "ranks" in state else \
        [state["loop"]["window"]] if state["loop"].get("window") else []
    if windows:
        mine["window"] = merged_window(windows, rank, world_size)
    return mine


def merged_window(windows: list[dict], rank: int, world_size: int) -> dict:
    """The epoch's running sums of `windows` (one per saved rank) for `rank` of `world_size`: rank 0 carries all
    of them, the others none, so that their sum over the new ranks is the old one. A sum that is averaged over
    steps × ranks (a loss without a count, the task's other numbers) is scaled to the new number of ranks."""
    first = windows[0]
    merged = {**first, "loss": 0.0, "count": 0, "correct": None if first["correct"] is None else 0.0,
              "extra": {}}
    if rank != 0:
        merged["extra"] = {key: 0.0 for key in sorted({k for w in windows for k in w["extra"]})}
        return merged
    scale = world_size / len(windows)
    counted = any(w["count"] for w in windows)
    merged["loss"] = sum(w["loss"] for w in windows) * (1.0 if counted else scale)
    merged["count"] = sum(w["count"] for w in windows)
    if first["correct"] is not None:
        merged["correct"] = sum(w["correct"] or 0 for w in windows)
    for key in sorted({k for w in windows for k in w["extra"]}):
        merged["extra"][key] = sum(w["extra"].get(key, 0.0) for w in windows) * scale
    return merged

