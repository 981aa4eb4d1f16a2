"""The sweep file, `<runs-dir>/sweeps/<name>.json`: what every task of a sweep's job array trains.

Written by scripts/submit.py before the array is submitted (and again with the array's job id once it is);
read by each task (`python -m jobs.sweep FILE INDEX`, from slurm/train_sweep.sh), by status.py and report.py.
Run ids cannot start with "." but can be "sweeps"; the file's name can never be a run's: it ends in ".json".
"""
import json
import time
from pathlib import Path

from jobs.errors import UserError
from jobs.run.files import read_json, write_atomic
from jobs.sweep.grid import points, run_id_of

FORMAT = 1
SWEEPS = "sweeps"  # the folder of sweep files under the runs dir


def sweep_path(runs_dir: Path, name: str) -> Path:
    return Path(runs_dir) / SWEEPS / f"{name}.json"


def build(name: str, axes: dict[str, list[str]], common: list[str], task_flags, runs_dir: Path) -> dict:
    """The sweep's record: its axes, the flags all tasks share and, per task index, its run id, its swept
    values and its own flags (`task_flags(point)`: the swept values as training flags)."""
    tasks = [{"index": i, "run_id": run_id_of(name, point), "values": point, "flags": task_flags(point)}
             for i, point in enumerate(points(axes))]
    return {"format": FORMAT, "name": name, "axes": axes, "common": common, "runs_dir": str(Path(runs_dir).resolve()),
            "tasks": tasks, "created": time.time(), "array_job_id": None}


def write(runs_dir: Path, sweep: dict) -> Path:
    path = sweep_path(runs_dir, sweep["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(sweep, indent=1) + "\n").encode())  # unsorted: the axes keep their order
    return path


def read(runs_dir: Path, name: str) -> dict:
    """The sweep named `name`; an unknown or unreadable one is a UserError naming the known sweeps."""
    path = sweep_path(runs_dir, name)
    try:
        sweep = read_json(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read ({e})") from None
    if sweep is None:
        raise UserError(f"no sweep {name!r} in {Path(runs_dir) / SWEEPS}; known sweeps: "
                        f"{', '.join(known_sweeps(runs_dir)) or 'none'}")
    if sweep.get("format") != FORMAT:
        raise UserError(f"{path}: unknown format {sweep.get('format')!r}")
    return sweep


def known_sweeps(runs_dir: Path) -> list[str]:
    folder = Path(runs_dir) / SWEEPS
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def task_command(sweep: dict, index: int) -> list[str]:
    """[run id, train.py flags...] of task `index`: the common flags, the swept ones, the runs dir."""
    tasks = sweep["tasks"]
    if not 0 <= index < len(tasks):
        raise UserError(f"sweep {sweep['name']!r} has tasks 0-{len(tasks) - 1}, not {index}")
    task = tasks[index]
    return [task["run_id"], *sweep["common"], *task["flags"], "--runs-dir", sweep["runs_dir"]]
