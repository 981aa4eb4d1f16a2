"""Divergence: a NaN or infinite loss stops the run before a checkpoint of its state can be committed."""
import torch

from jobs.distributed.ranks import Ranks


class Diverged(Exception):
    """A non-finite loss (or non-finite weights about to be saved) at `step`."""

    def __init__(self, step: int, what: str):
        super().__init__(f"non-finite {what} at step {step}")
        self.step, self.what = step, what


class LossWatch:
    """The losses of the steps since the last check, left on the device: checked with one sync where the loop
    syncs anyway (the progress display, an epoch end, before a save), never every step. Off (`enabled=False`,
    --allow-nonfinite): nothing is kept or checked."""

    def __init__(self, ranks: Ranks, enabled: bool = True):
        self.ranks, self.enabled = ranks, enabled
        self.unchecked: list[tuple[int, torch.Tensor]] = []

    def add(self, step: int, loss) -> None:
        if self.enabled:
            loss = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
            self.unchecked.append((step, loss))

    def check(self) -> None:
        """Raise Diverged if a loss since the last check was NaN or infinite; with several processes, on every
        rank if on any (at the earliest such step)."""
        if not self.enabled:
            return
        bad = self._first_nonfinite()
        if self.ranks.distributed:
            bad_steps = [step - 1 for step in self.ranks.per_rank(0 if bad is None else bad + 1) if step]
            bad = min(bad_steps, default=None)
        if bad is not None:
            raise Diverged(bad, "loss")

    def _first_nonfinite(self) -> int | None:
        if not self.unchecked:
            return None
        device = self.unchecked[0][1].device
        losses = torch.stack([loss.float().reshape(()).to(device) for _, loss in self.unchecked])
        finite = torch.isfinite(losses).tolist()
        steps = [step for step, _ in self.unchecked]
        self.unchecked.clear()
        return next((step for step, ok in zip(steps, finite, strict=True) if not ok), None)
