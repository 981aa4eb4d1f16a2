"""What a launch trains: the workload and config given, checked against the run being resumed (rank 0 plans)."""
import importlib.util
from dataclasses import dataclass

from jobs.checkpoint.manifest import committed_entries
from jobs.environment import JobEnvironment
from jobs.errors import UserError
from jobs.run.run_dir import RunDir, check_runs_dir, unknown_run_message
from jobs.train.config import LoopConfig
from jobs.workload import completed, load_workload

NEW, RESUME, RESUME_IF_EXISTS = "new", "resume", "resume-if-exists"


@dataclass
class Plan:
    workload_ref: str  # "module:ATTRIBUTE"
    task_config: dict  # completed with the workload's defaults: frozen whole
    loop: dict  # LoopConfig's fields
    changes: dict  # the workload's config fields a resume changes, with their new values
    exists: bool  # a run being resumed
    frozen: dict | None  # the run's config.json, when it exists
    loop_changes: dict | None = None  # the loop's settings a resume changes (they may change: recorded)
    resized_from: int | None = None  # the processes that trained the run, when this launch has another number


def config_changes(frozen: dict, given: dict, safe: frozenset, overrides: set) -> dict:
    """The fields `given` may change; UserError for any other difference."""
    changed = {k for k in frozen.keys() | given.keys() if frozen.get(k) != given.get(k)}
    unsafe = sorted(changed - safe)
    if unsafe:
        details = "; ".join(f"{k}: run has {frozen.get(k)!r}, given {given.get(k)!r}" for k in unsafe)
        raise UserError(f"this config contradicts the run being resumed ({details}). Resume it with its own "
                        "config (scripts/resume.py --run-id ID) or start a new run id")
    unasked = sorted(changed - set(overrides))
    if unasked:
        details = "; ".join(f"{k}: run has {frozen.get(k)!r}, given {given.get(k)!r}" for k in unasked)
        flags = " ".join(f"--override {k}" for k in unasked)
        raise UserError(f"this config changes the run being resumed ({details}); pass {flags} to allow it")
    return {k: given.get(k) for k in sorted(changed)}


def check_not_shorter(run: RunDir, task, changes: dict) -> None:
    """A change (e.g. fewer epochs) must not end the run before the steps it has already trained."""
    trained = max((e["step"] for e in committed_entries(run.path)), default=0)
    if trained > task.total_steps:
        details = "; ".join(f"{k} {v!r}" for k, v in changes.items())
        raise UserError(f"run {run.run_id!r} has already trained {trained} steps, more than the {task.total_steps} "
                        f"that {details} gives; ask for at least as much as it has done")


def make_plan(run: RunDir, workload_ref: str | None, task_config: dict | None, mode: str, loop: LoopConfig | None,
              overrides: dict | None, world_size: int) -> Plan:
    """The config to train with, checked against the run being resumed (if any); UserError if it may not."""
    check_runs_dir(run.path.parent)
    exists = run.exists()
    if mode == NEW and exists and JobEnvironment().supervised_retry:
        mode = RESUME_IF_EXISTS  # the supervisor runs a crashed trainer again: the run is the one that trainer made
    if mode == NEW and exists:
        raise UserError(f"run {run.run_id!r} already exists in {run.path.parent}; continue it with "
                        f"`python scripts/resume.py --run-id {run.run_id}` or pass --resume-if-exists")
    if mode == RESUME and not exists:
        raise UserError(unknown_run_message(run.path.parent, run.run_id))
    overrides = dict(overrides or {})
    changes = {}
    frozen = run.read_config() if exists else None
    if exists and workload_ref and workload_ref != frozen.get("workload"):
        raise UserError(f"this config contradicts the run being resumed (workload: run has {frozen.get('workload')!r}, "
                        f"given {workload_ref!r}). Resume it with its own workload, or start a new run id")
    workload_ref = workload_ref or frozen["workload"]
    workload = load_workload(workload_ref)
    # a workload may fill in the fields a config leaves out (its defaults), and those added since a run was
    # frozen (as that run had them): both sides are completed before they are compared, and frozen whole
    task_config = None if task_config is None else completed(workload, task_config)
    if exists:
        frozen["task"] = completed(workload, frozen["task"])
        given = dict(frozen["task"]) if task_config is None else dict(task_config)
        given.update(overrides)
        changes = config_changes(frozen["task"], given, workload.safe_to_change, set(overrides))
        task_config = given
        loop = loop or LoopConfig(**frozen.get("loop", {}))
    loop = loop or LoopConfig()
    if loop.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UserError("--tensorboard needs the tensorboard package: pip install -e '.[tensorboard]'")
    workload.validate(task_config)
    before = LoopConfig(**(frozen or {}).get("loop", {})).to_dict()  # a setting added since: its default then
    loop_changes = {k: v for k, v in loop.to_dict().items() if before[k] != v} if exists else None
    trained_by = (frozen or {}).get("world_size", 1)
    return Plan(workload_ref, task_config, loop.to_dict(), changes, exists, frozen, loop_changes or None,
                trained_by if exists and trained_by != world_size else None)
