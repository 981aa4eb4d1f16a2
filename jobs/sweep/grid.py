"""A sweep's grid: `--sweep KEY=V1,V2,...` axes, their cartesian product, and each point's run id.

The values stay the strings the user typed: they become the training flags of each task (parsed there by the
same parser as any run) and the run id, which must stay a valid one (jobs.run.run_dir.validate_run_id) and the
same across requeues, so it depends on the sweep's name and the point only.
"""
import itertools
import re

from jobs.errors import UserError
from jobs.run.run_dir import RUN_ID_PATTERN, validate_run_id

VALUE_PATTERN = re.compile(r"[A-Za-z0-9._-]+")  # what a run id may hold (no "=", "/" or spaces)


def canonical_key(key: str) -> str:
    """"--batch-size", "batch-size" and "batch_size" all name the flag's field, batch_size."""
    return key.strip().removeprefix("--").replace("-", "_")


def parse_axes(specs: list[str], allowed: list[str]) -> dict[str, list[str]]:
    """{key: values} in the order given, from "KEY=V1,V2,..." specs; every mistake is one UserError."""
    axes: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, listed = spec.partition("=")
        key = canonical_key(key)
        if not sep or not key:
            raise UserError(f"--sweep {spec!r}: give KEY=V1,V2,... (e.g. --sweep size=3,5,7,9)")
        if key not in allowed:
            raise UserError(f"--sweep {spec!r}: unknown key {key!r}; sweep one of {', '.join(allowed)}")
        if key in axes:
            raise UserError(f"--sweep {key} is given twice; list all its values in one --sweep {key}=V1,V2,...")
        values = [v.strip() for v in listed.split(",")]
        if not listed.strip() or "" in values:
            raise UserError(f"--sweep {spec!r}: an empty value; give KEY=V1,V2,... without empty entries")
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise UserError(f"--sweep {key}: the value {duplicates[0]!r} is listed twice")
        bad = [v for v in values if not VALUE_PATTERN.fullmatch(v)]
        if bad:
            raise UserError(f"--sweep {key}: the value {bad[0]!r} cannot be part of a run id (use A-Z a-z 0-9 . _ -)")
        axes[key] = values
    if not axes:
        raise UserError("--sweep: give at least one KEY=V1,V2,...")
    return axes


def points(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the values, the last axis varying fastest (task 0 takes each axis's first value)."""
    return [dict(zip(axes, combination, strict=True)) for combination in itertools.product(*axes.values())]


def validate_sweep_name(name: str | None) -> str:
    if not name:
        raise UserError("--sweep needs --sweep-name NAME: it names the sweep and prefixes its run ids")
    if not RUN_ID_PATTERN.fullmatch(name) or ".." in name:
        raise UserError(f"bad sweep name {name!r}: use 1-64 characters from A-Z a-z 0-9 . _ -, "
                        "starting with a letter or digit, without '..'")
    return name


def run_id_of(name: str, point: dict[str, str]) -> str:
    """"hw-block_standard-size_3": the sweep's name, then each swept key and value (stable across requeues)."""
    run_id = "-".join([name, *(f"{key}_{value}" for key, value in point.items())])
    try:
        return validate_run_id(run_id)
    except UserError:
        raise UserError(f"the run id {run_id!r} of a task is not a valid run id ({len(run_id)} characters, at most "
                        "64); choose a shorter --sweep-name") from None
