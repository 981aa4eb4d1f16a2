"""The figures of a training in the workload's words: each epoch's running sums of what train_step returns, the
record an epoch logs, the evaluation cadence and the best primary metric."""
import time
from dataclasses import dataclass, field, replace

import torch

from jobs.distributed.ranks import Ranks
from jobs.errors import CONTRACT, ContractError
from jobs.readable import per_second, readable
from jobs.train.contract import plain_metrics
from jobs.workload import Task

DISPLAY_SECONDS = 0.5  # the progress display's refresh; also where a single process checks its losses
NAMED = ("loss", "correct", "lr")  # what train_step may return besides its unit's count and other numbers


@dataclass
class LoopState:
    """The loop's part of a checkpoint (its "loop" entry): the per-epoch records, the best primary metric so
    far, the seconds spent in training steps, the running sums of the epoch under way (so that a resumed epoch
    logs what an uninterrupted one does), and the final metrics once the run has them."""
    history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    train_seconds: float = 0.0
    window: dict | None = None
    final_metrics: dict | None = None
    other: dict = field(default_factory=dict)  # entries this version does not know: kept as they were

    @classmethod
    def from_dict(cls, state: dict | None) -> "LoopState":
        state = dict(state or {})
        known = {name: state.pop(name) for name in ("history", "best_metric", "train_seconds", "window",
                                                    "final_metrics") if name in state}
        return cls(**known, other=state)

    def to_dict(self) -> dict:
        state = {**self.other, "history": self.history, "best_metric": self.best_metric,
                 "train_seconds": self.train_seconds}
        for name in ("window", "final_metrics"):
            if getattr(self, name) is not None:
                state[name] = getattr(self, name)
        return state


class EpochWindow:
    """The running sums of one epoch's steps. Tensors are summed lazily: no device sync per step."""

    def __init__(self, unit: str):
        self.unit = unit  # the count train_step returns, e.g. "images"; without one, steps are counted
        self.loss = 0.0  # the sum of loss x count (of the losses, without a count)
        self.count = 0
        self.correct = None
        self.extra: dict = {}  # other numbers train_step returns: their sums
        self.steps = 0
        self.lr = None  # the rate of the epoch's last step (the scheduler has moved on since)
        self.started = time.perf_counter()
        self.shown = 0.0

    def add(self, out: dict) -> None:
        count = out.get(self.unit)
        if isinstance(count, torch.Tensor):
            count = int(count)  # a count as a tensor: a sync (an int is what a batch's length is anyway)
        loss = out["loss"].detach() if isinstance(out["loss"], torch.Tensor) else out["loss"]
        self.loss = self.loss + (loss if count is None else loss * count)
        if count is not None:
            self.count += count
        if "correct" in out:  # summed into a new tensor, never the task's own (which it may reuse)
            self.correct = (0 if self.correct is None else self.correct) + out["correct"]
        for key, value in out.items():
            if key not in NAMED and key != self.unit:
                value = value.detach() if isinstance(value, torch.Tensor) else value
                self.extra[key] = self.extra.get(key, 0.0) + value
        self.steps += 1
        self.lr = out.get("lr")  # kept as given: a tensor is read (synced) only where it is shown

    @property
    def rate_unit(self) -> str:
        return self.unit if self.count else "steps"

    def state(self) -> dict:
        """The sums as plain numbers, exactly (one sync: taken with a checkpoint, which syncs anyway)."""
        return {"unit": self.unit, "loss": _exact(self.loss), "count": _exact(self.count),
                "correct": None if self.correct is None else _exact(self.correct),
                "extra": {key: _exact(value) for key, value in self.extra.items()}, "steps": self.steps,
                "lr": None if self.lr is None else _exact(self.lr),
                "seconds": time.perf_counter() - self.started}  # its rate and time go on from there

    @classmethod
    def from_state(cls, state: dict) -> "EpochWindow":
        window = cls(state["unit"])
        window.loss, window.count, window.correct = state["loss"], state["count"], state["correct"]
        window.extra, window.steps, window.lr = dict(state["extra"]), state["steps"], state["lr"]
        window.started -= state.get("seconds", 0.0)
        return window

    def figures(self, ranks: Ranks, seconds: float) -> dict:
        """train_loss, train_accuracy (with counts of correct answers), train_<other>, lr and the rate: summed
        over every rank (each trained on its shard of every batch)."""
        correct = 0.0 if self.correct is None else float(self.correct)
        loss, count, steps = float(self.loss), self.count, self.steps * ranks.world_size
        names = list(self.extra)
        if ranks.distributed:  # every rank sums the same names in the same order, those it lacks as 0
            names = sorted(set().union(*ranks.all_gather(names)))
            loss, correct, count, *extra = ranks.sum([loss, correct, count,
                                                      *(float(self.extra.get(n, 0.0)) for n in names)])
            count = int(count)
        else:
            extra = [float(v) for v in self.extra.values()]
        out = {"train_loss": loss / max(count if count else steps, 1)}
        if self.correct is not None and count:
            out["train_accuracy"] = correct / count
        out.update({f"train_{name}": total / max(steps, 1) for name, total in zip(names, extra, strict=True)})
        if self.lr is not None:
            out["lr"] = float(self.lr)
        out[f"{self.rate_unit}_per_sec"] = (count or self.steps) / max(seconds, 1e-9)
        return out

    def progress(self, world_size: int) -> tuple[str, float]:
        """(the display's text, the rate so far in units per second over all ranks), from this rank's sums."""
        n = max(self.count or self.steps, 1)
        parts = [f"loss {float(self.loss) / n:.4f}"]
        if self.correct is not None and self.count:
            parts.append(f"acc {100 * float(self.correct) / n:.2f}%")
        parts += [f"{key} {readable(key, float(total) / max(self.steps, 1))}" for key, total in self.extra.items()]
        if self.lr is not None:
            parts.append(f"lr {float(self.lr):.4g}")
        done = self.count * world_size if self.count else self.steps  # every rank counts its shard; steps are shared
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        parts.append(f"{rate:.0f} {per_second(self.rate_unit)}")
        return " ".join(parts), rate


def _exact(value):
    """A tensor's value as the Python number that adds to the next tensor as the tensor itself would (an
    integer stays an integer, a float32 sum is exact as a float)."""
    if isinstance(value, torch.Tensor):
        return value.item()
    return value


class Metrics:
    def __init__(self, state: LoopState, primary_metric: str | None, eval_every_epochs: int, ranks: Ranks,
                 unit: str | None):
        self.state, self.primary_metric, self.eval_every_epochs = state, primary_metric, eval_every_epochs
        self.ranks, self.unit = ranks, unit  # None: the task names no unit; its first step says which
        # the epoch under way, as the checkpoint left it (mid-epoch), or a new one; each save takes it anew
        window, self.state = state.window, replace(state, window=None)
        self.window = EpochWindow.from_state(window) if window else EpochWindow(unit or "samples")
        if window and unit is None and window["unit"] != "samples":
            self.unit = window["unit"]
        self.last_count = None  # the count of the last step that had one
        self.rate: float | None = None  # rate_unit per second over all ranks, as last measured
        self.rate_unit = unit or "samples"
        self.steps_per_sec: float | None = None

    def start_epoch(self) -> None:
        self.window = EpochWindow(self.unit or "samples")

    def state_dict(self, with_window: bool = True) -> dict:
        """The loop's entry of a checkpoint: the state, with the epoch under way (with several processes, each
        rank's window goes into its own entry instead)."""
        return {**self.state.to_dict(), **({"window": self.window.state()} if with_window else {})}

    def add(self, out: dict) -> bool:
        """Add a step's figures; True when it is time to show them again."""
        if self.unit is None:  # "samples", or "images" as the contract had it before tasks named their unit
            self.unit = self.window.unit = "images" if "images" in out and "samples" not in out else "samples"
        self.window.add(out)
        self.last_count = out.get(self.unit, self.last_count)
        now = time.perf_counter()
        if now - self.window.shown < DISPLAY_SECONDS:
            return False
        self.window.shown = now
        return True

    def progress(self) -> str:
        """The display's text; the rate and speed that status shows are measured here too."""
        text, self.rate = self.window.progress(self.ranks.world_size)
        self.rate_unit = self.window.rate_unit
        self.steps_per_sec = self.window.steps / max(time.perf_counter() - self.window.started, 1e-9)
        return text

    @property
    def last_metric(self) -> float | None:
        history = self.state.history
        return history[-1].get(self.primary_metric) if history and self.primary_metric else None

    def end_epoch(self, task: Task) -> dict:
        """The epoch's record (summed over every rank, evaluated when due), appended to the history."""
        seconds = time.perf_counter() - self.window.started
        self.state.train_seconds += seconds
        epoch = task.step // task.steps_per_epoch
        record = {"epoch": epoch, "step": task.step, **self.window.figures(self.ranks, seconds),
                  "epoch_seconds": seconds, "time": time.time()}
        self.rate_unit = self.window.rate_unit
        self.rate = record[f"{self.rate_unit}_per_sec"]
        self.steps_per_sec = self.window.steps / max(seconds, 1e-9)
        if epoch % self.eval_every_epochs == 0 or task.step >= task.total_steps:
            started = time.perf_counter()
            evaluated = plain_metrics(task.evaluate(), "evaluate()")
            if self.primary_metric and self.primary_metric not in evaluated:
                raise ContractError(f"evaluate() returned no {self.primary_metric!r}, the workload's primary_metric "
                                    f"(it returned {', '.join(evaluated) or 'nothing'}) ({CONTRACT})")
            record.update(evaluated)
            record["eval_seconds"] = time.perf_counter() - started
            metric = record.get(self.primary_metric)
            if metric is not None and (self.state.best_metric is None or metric > self.state.best_metric):
                self.state.best_metric = metric
        self.state.history.append(record)
        self.start_epoch()  # this epoch's sums are in its record: a save from here on holds the next one's
        return record
