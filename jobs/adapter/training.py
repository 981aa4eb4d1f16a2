"""The common case as a workload: a model, an optimizer, an optional LR scheduler, a jobs.data.ResumableLoader of
training batches (inputs, targets), a loss function and optional held-out loaders become a task whose state holds
everything, and `plain_workload(build, defaults)` makes the workload. A plain PyTorch script becomes a resumable
run in about 30 lines (examples/spirals.py).

The task puts the model and every batch on its `device`; under DDP (torch.distributed initialized, as jobs/ does
for srun, submitit and torchrun) the model trains as jobs.distributed.ddp replicates it, and each rank loads its
share of every batch. The data's position is a function of the step: nothing else to save for it.
"""
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from jobs.data.loader import ResumableLoader
from jobs.distributed.ddp import replicate
from jobs.errors import UserError

# what an LR scheduler's state holds of its progress; the rest is its configuration
SCHEDULE_PROGRESS = frozenset({"last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "_is_initial"})


class Training:
    """A Task (jobs.workload) that trains `model` with `loss_fn(outputs, targets)` for `epochs` epochs of
    `loader`; `held_out` loaders are scored at each evaluation (`<name>_loss`, `<name>_accuracy`), `test` ones
    once at the end. `accuracy`: outputs are class scores, targets class indices."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: ResumableLoader,
                 loss_fn: Callable, epochs: int, *, scheduler=None, held_out: dict[str, DataLoader] | None = None,
                 test: dict[str, DataLoader] | None = None, device: str = "cpu", label: str | None = None,
                 unit: str = "samples", accuracy: bool = True):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.forward = replicate(self.model, self.device) if dist.is_initialized() else self.model
        self.optimizer, self.scheduler, self.loader, self.loss_fn = optimizer, scheduler, loader, loss_fn
        self.held_out, self.test = held_out or {}, test or {}
        self.label, self.unit, self.accuracy = label or type(model).__name__, unit, accuracy
        self.batch_size = loader.sampler.batch_size
        self.steps_per_epoch = len(loader)
        self.total_steps = epochs * self.steps_per_epoch
        self.step = 0
        self._batches = None  # the epoch's batches from where the task stands

    def train_step(self) -> dict:
        epoch, position = divmod(self.step, self.steps_per_epoch)
        if self._batches is None or position == 0:
            self._batches = self.loader.batches(epoch, position)
        inputs, targets = (t.to(self.device, non_blocking=True) for t in next(self._batches))
        self.optimizer.zero_grad(set_to_none=True)
        outputs = self.forward(inputs)
        loss = self.loss_fn(outputs, targets)
        loss.backward()
        self.optimizer.step()
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        out = {"loss": loss.detach(), self.unit: len(targets), "lr": lr}
        if self.accuracy:
            out["correct"] = (outputs.argmax(1) == targets).sum()
        return out

    @torch.no_grad()
    def _score(self, loaders: dict[str, DataLoader]) -> dict:
        """Each loader's mean loss (and accuracy), from the plain module: every rank scores the whole set."""
        self.model.eval()
        scores = {}
        for name, loader in loaders.items():
            count, loss, correct = 0, 0.0, 0
            for inputs, targets in loader:
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                outputs = self.model(inputs)
                loss += float(self.loss_fn(outputs, targets)) * len(targets)
                correct += int((outputs.argmax(1) == targets).sum()) if self.accuracy else 0
                count += len(targets)
            scores[f"{name}_loss"] = loss / max(count, 1)
            if self.accuracy:
                scores[f"{name}_accuracy"] = correct / max(count, 1)
        self.model.train()
        return scores

    def evaluate(self) -> dict:
        return self._score(self.held_out)

    def final_metrics(self) -> dict:
        return self._score(self.test)

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                 "total_steps": self.total_steps}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            schedule = state["scheduler"]
            if state["total_steps"] != self.total_steps:  # resume.py --epochs: the new length's schedule, from here
                fresh = self.scheduler.state_dict()
                schedule = {**schedule, **{k: v for k, v in fresh.items() if k not in SCHEDULE_PROGRESS}}
            self.scheduler.load_state_dict(schedule)
        self.step = state["step"]
        self._batches = None

    def describe(self) -> str:
        return self.label


class PlainWorkload:
    """A workload (jobs.workload) of `build(config) -> Training`, with its config's `defaults` (every field it
    has: others are refused), the metric that picks the best checkpoint, and what a resume may change."""

    def __init__(self, build: Callable[[dict], Training], defaults: dict, primary_metric: str | None,
                 safe_to_change: frozenset):
        self.build_task, self.defaults = build, dict(defaults)
        self.primary_metric, self.safe_to_change = primary_metric, frozenset(safe_to_change)

    def complete(self, config: dict) -> dict:
        return {**self.defaults, **config}

    def validate(self, config: dict) -> None:
        config = self.complete(config)
        unknown = sorted(set(config) - set(self.defaults))
        if unknown:
            raise UserError(f"unknown config fields: {', '.join(unknown)} (this workload has "
                            f"{', '.join(sorted(self.defaults))})")
        epochs = config.get("epochs")
        if epochs is not None and (not isinstance(epochs, int) or epochs <= 0):
            raise UserError(f"epochs must be a positive integer, got {epochs!r}")

    def build(self, config: dict) -> Training:
        return self.build_task(self.complete(config))


def plain_workload(build: Callable[[dict], Training], *, defaults: dict, primary_metric: str | None = "val_accuracy",
                   safe_to_change=frozenset({"epochs"})) -> PlainWorkload:
    return PlainWorkload(build, defaults, primary_metric, frozenset(safe_to_change))
