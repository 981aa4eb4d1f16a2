"""The contract between the toolkit and a workload (DESIGN.md: "a stateful task").

`jobs/` never imports a workload. The frozen config names it as "module:ATTRIBUTE" (for example
"resnet.task:WORKLOAD"), so resume.py and submitit can rebuild it from the run directory alone.
"""
import importlib
from typing import Any, Protocol


class Task(Protocol):
    """Optional too: `startup_phases` (seconds by name: where the task's part of a start went, shown in the
    first-step event as `task_parts`), and `rank_state_dict()` / `load_rank_state_dict(state)` (what
    differs between the processes of a run trained by several: kept per rank in its checkpoints)."""
    steps_per_epoch: int
    total_steps: int
    step: int  # optimizer steps done so far

    def train_step(self) -> dict[str, Any]:
        """One optimizer step. Returns "loss" (mean, tensor or float), "correct" and "images" (counts)."""

    def evaluate(self) -> dict[str, float]:
        """Metrics on the held-out set during training; must include the workload's `primary_metric`."""

    def final_metrics(self) -> dict[str, float]:
        """Metrics reported once at the end (e.g. test accuracy)."""

    def state_dict(self) -> dict:
        """Everything that influences the future of the run, with the model's state under "model"."""

    def load_state_dict(self, state: dict) -> None: ...

    def describe(self) -> str:
        """A short label for tables, e.g. "resnet-32 standard"."""


class Workload(Protocol):
    primary_metric: str  # the key of evaluate() that picks the best checkpoint, higher is better
    safe_to_change: frozenset[str]  # config fields a resumed run may change (e.g. "epochs")

    def validate(self, config: dict) -> None:
        """Raise UserError for impossible numbers, before anything is written."""

    def build(self, config: dict) -> Task: ...


def load_workload(reference: str) -> Workload:
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
