"""A run's goodput from its starts' ledgers (jobs.goodput.ledger): the seconds of kept steps over the seconds of
all its processes, across every start, each start's seconds counted once per process it ran.

A start's steps are kept up to the step every later start resumed from; the steps above it were recomputed,
and their seconds are badput. The newest start's steps count as kept (nothing has undone them yet).
Torch-free: status.py reads it."""
from pathlib import Path

from jobs.goodput.ledger import ledger_files, read_ledger

PARTS = ("kept", "startup", "recomputed", "checkpoint", "evaluation", "final")  # badput: all but "kept"


def read_starts(run_path: Path) -> list[dict]:
    """The run's starts whose ledger reads, oldest first."""
    return sorted((s for s in map(read_ledger, ledger_files(run_path)) if s is not None), key=lambda s: s["started"])


def died(start: dict) -> bool:
    """Ended without a save of its own: killed outright (its ledger never says how it ended), or crashed."""
    return start["end"] in (None, "crashed")


def train_seconds_at(start: dict, step: int) -> float:
    """The train seconds of `start` up to `step`: exact at its checkpoints' steps, interpolated in between."""
    first, last = start["first_step"], start["last_step"]
    points = [(first, 0.0), *((s, t) for s, t in start["snapshots"] if first < s < last),
              (last, start["seconds"]["train"])]
    if step <= first:
        return 0.0
    for (s0, t0), (s1, t1) in zip(points, points[1:], strict=False):
        if step <= s1:
            return t0 + (t1 - t0) * (step - s0) / max(s1 - s0, 1)
    return points[-1][1]


def start_parts(start: dict, kept_to: float) -> dict:
    """One start's seconds by part, and its steps kept and recomputed; `kept_to`: the lowest step a later
    start resumed from (infinity for the newest)."""
    seconds = start["seconds"]
    parts = {"startup": seconds["startup"], "checkpoint": seconds["checkpoint"],
             "evaluation": seconds["evaluation"], "final": seconds["final"]}
    begin, last = start["resume_step"], start["last_step"]
    if start["first_step"] is None:  # died or stopped before its first step was done
        return {**parts, "kept": 0.0, "recomputed": 0.0, "kept_steps": 0, "recomputed_steps": 0}
    keep = int(min(kept_to, last))
    kept = train_seconds_at(start, keep)
    return {**parts, "kept": kept, "recomputed": seconds["train"] - kept,
            "kept_steps": max(keep - begin, 0), "recomputed_steps": last - max(keep, begin)}


def account(run_path: Path) -> dict | None:
    """{"goodput", "total_seconds", "parts": {part: seconds}, "starts", "deaths", "recomputed_steps", ...} over
    every start of the run (process-seconds: a start of N processes counts N times); None without ledgers."""
    starts = read_starts(run_path)
    if not starts:
        return None
    totals = dict.fromkeys(PARTS, 0.0)
    steps = {"kept_steps": 0, "recomputed_steps": 0}
    kept_to, total = float("inf"), 0.0
    for start in reversed(starts):  # newest first: what a later start resumed from decides what was kept
        parts, weight = start_parts(start, kept_to), start["world_size"]
        for part in PARTS:
            totals[part] += parts[part] * weight
        for key in steps:
            steps[key] += parts[key]
        total += start["total_seconds"] * weight
        kept_to = min(kept_to, start["resume_step"])
    newest = starts[-1]
    deaths = sum(1 for s in starts[:-1] if died(s))
    return {"goodput": totals["kept"] / total if total > 0 else None, "total_seconds": total,
            "parts": totals, **steps, "starts": len(starts), "deaths": deaths,
            "interval_seconds": newest.get("interval_seconds"), "cadence": newest.get("cadence"),
            "save_cost_seconds": newest.get("save_cost_seconds")}


def death_history(run_path: Path) -> tuple[float, int, float | None]:
    """(seconds of the earlier starts' processes, how many died outright, the last measured save cost): what
    the auto cadence (jobs.goodput.cadence) learns from before this start."""
    starts = read_starts(run_path)
    cost = next((s["save_cost_seconds"] for s in reversed(starts) if s.get("save_cost_seconds")), None)
    return sum(s["total_seconds"] for s in starts), sum(1 for s in starts if died(s)), cost
