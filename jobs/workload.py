"""The contract between the toolkit and a workload (docs/design.md, "The workload contract").

`jobs/` never imports a workload. The frozen config names it as "module:ATTRIBUTE" (for example
"resnet.task:WORKLOAD"), so resume.py, requeued jobs and submitit can rebuild it from the run directory alone.
The toolkit speaks the workload's words: its loss, the count it calls its unit, its metric names.
"""
import importlib
import inspect
from typing import Any, Protocol

from jobs.errors import CONTRACT, UserError


class Task(Protocol):
    """A training run's state and its steps. Optional too: `unit` (what train_step counts, e.g. "images" or
    "tokens"; default "samples"), `startup_phases` (seconds by name: where the task's part of a start went,
    shown in the first-step event as `task_parts`), `batch_size` (named in an out-of-memory message), and
    `rank_state_dict()` / `load_rank_state_dict(state)` (what differs between the processes of a run trained
    by several: kept per rank in its checkpoints), with `reseed_rank(seed)` (that state derived from a seed, for
    a run resumed by another number of processes; without it such a task must resume with its own number)."""
    steps_per_epoch: int
    total_steps: int
    step: int  # optimizer steps done so far

    def train_step(self) -> dict[str, Any]:
        """One optimizer step. Returns "loss" (the batch's mean; a tensor may stay on the device). Optional:
        the batch's count under the task's `unit` (it weights the epoch's mean loss and gives a rate), "correct"
        (a count: with the unit's count, the training accuracy), "lr" (the rate this step used), and any other
        number (averaged over the epoch's steps and logged as train_<name>)."""

    def evaluate(self) -> dict[str, float]:
        """Metrics on the held-out set during training, as plain floats; the workload's `primary_metric` among them."""

    def final_metrics(self) -> dict[str, float]:
        """Metrics reported once at the end (e.g. test accuracy), as plain floats."""

    def state_dict(self) -> dict:
        """Everything that influences the future of the run; the model's weights under "model" (their digest
        identifies a run's weights, and a checkpoint with non-finite weights is refused)."""

    def load_state_dict(self, state: dict) -> None: ...

    def describe(self) -> str:
        """A short label for tables, e.g. "resnet-32 standard"."""


class Workload(Protocol):
    """Optional: `complete(config)`, the config with the fields a run frozen earlier did not have (its defaults)."""
    primary_metric: str  # the key of evaluate() that picks the best checkpoint, higher is better (none: no best)
    safe_to_change: frozenset[str]  # config fields a resumed run may change (e.g. "epochs")

    def validate(self, config: dict) -> None:
        """Raise UserError for impossible numbers, before anything is written."""

    def build(self, config: dict) -> Task: ...


def load_workload(reference: str) -> Workload:
    """The workload object `reference` ("module:ATTRIBUTE") names; UserError if it names none. An error raised
    by the module's own code while it is imported keeps its traceback."""
    module_name, colon, attribute = reference.partition(":")
    if not colon or not module_name or not attribute:
        raise UserError(f"workload {reference!r}: name the workload object as module:ATTRIBUTE "
                        "(e.g. examples.char_lm:WORKLOAD)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not (module_name == e.name or module_name.startswith(e.name + ".")):
            raise  # the workload's module imports something that is missing: its own traceback says what
        raise UserError(f"workload {reference!r}: no module {e.name!r} here; the workload's module must be "
                        "importable wherever the run starts, resumes or requeues (run from its project's "
                        "directory, or put that directory on PYTHONPATH)") from None
    if not hasattr(module, attribute):
        raise UserError(f"workload {reference!r}: module {module_name} has no {attribute!r}")
    workload = getattr(module, attribute)
    missing = [name for name in ("build", "validate", "safe_to_change") if not hasattr(workload, name)]
    if missing or inspect.isclass(workload):
        what = "a class" if inspect.isclass(workload) else f"a {type(workload).__name__} without {', '.join(missing)}"
        raise UserError(f"workload {reference!r} is {what}: name the workload object, which has "
                        f"validate(config), build(config) and safe_to_change ({CONTRACT})")
    return workload


def completed(workload: Workload, config: dict) -> dict:
    """The config with the workload's defaults filled in (its `complete()`, where it has one)."""
    complete = getattr(workload, "complete", None)
    return complete(config) if complete else config


def unit_of(task: Task) -> str | None:
    """What the task's train_step counts; None if it does not say (the loop then looks at its first step)."""
    return getattr(task, "unit", None)
