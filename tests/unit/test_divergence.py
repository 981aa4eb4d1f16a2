"""The loss watch (jobs.train.divergence): the first non-finite loss, found with one sync, on demand."""
import pytest
import torch

from jobs.distributed.ranks import Ranks
from jobs.train.divergence import Diverged, LossWatch


def test_the_first_nonfinite_loss_since_the_last_check_is_named():
    watch = LossWatch(Ranks())
    for step, loss in [(1, torch.tensor(0.5)), (2, 0.25), (3, torch.tensor(float("nan"))), (4, float("inf"))]:
        watch.add(step, loss)
    with pytest.raises(Diverged) as raised:
        watch.check()
    assert (raised.value.step, raised.value.what, str(raised.value)) == (3, "loss", "non-finite loss at step 3")
    watch.check()  # checked losses are not checked again
    watch.add(5, torch.tensor(0.1))
    watch.check()


def test_allow_nonfinite_keeps_and_checks_nothing():
    watch = LossWatch(Ranks(), enabled=False)
    watch.add(1, torch.tensor(float("nan")))
    watch.check()
    assert watch.unchecked == []
