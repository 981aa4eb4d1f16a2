"""jobs.data: a loader whose epochs start at any batch in their own order, with each rank's share of every
global batch, and augmentation that does not depend on where or when a batch is loaded (no workers here; with
workers: tests/integration/test_data_loader.py)."""
import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from jobs.data.loader import ResumableLoader
from jobs.data.sampler import ResumableBatchSampler
from jobs.errors import UserError


class Augmented(Dataset):
    """Each item drawn with all three global RNGs, as datasets with random transforms do."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int):
        noise = torch.rand(2) + float(np.random.rand()) + random.random()
        return torch.tensor([float(index)]), noise


def test_each_rank_takes_its_share_of_every_global_batch_of_one_order():
    shares = [list(ResumableBatchSampler(40, 8, seed=3, rank=rank, world_size=4)) for rank in range(4)]
    whole = list(ResumableBatchSampler(40, 8, seed=3))
    assert len(whole) == 5 and all(len(batches) == 5 for batches in shares)
    for b, batch in enumerate(whole):
        assert sum((ranks[b] for ranks in shares), []) == batch  # rank r: the r-th quarter of global batch b
    assert sorted(sum(whole, [])) == list(range(40))  # an epoch sees every sample once
    again = ResumableBatchSampler(40, 8, seed=3)
    again.seek(1)
    assert list(again) != whole  # another epoch, another order
    again.seek(0, 3)
    assert list(again) == whole[3:]  # a seek, not a replay


def test_impossible_shapes_are_one_clear_error():
    with pytest.raises(UserError, match="batch size 10 does not divide among 4 processes"):
        ResumableBatchSampler(40, 10, world_size=4)
    with pytest.raises(UserError, match="several processes need full batches"):
        ResumableBatchSampler(40, 8, world_size=2, drop_last=False)
    with pytest.raises(UserError, match="batch size 64 is larger than the 40 samples"):
        ResumableBatchSampler(40, 64)
    assert len(ResumableBatchSampler(40, 16, drop_last=False)) == 3


def test_a_resumed_epoch_loads_the_same_samples_with_the_same_augmentation_and_leaves_the_rngs_alone():
    loader = ResumableLoader(Augmented(), batch_size=4, seed=11)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    whole = list(loader.batches(epoch=2))
    assert torch.equal(torch.get_rng_state(), before)  # loading drew nothing from the caller's RNG
    np.random.seed(9)
    random.seed(9)
    resumed = list(ResumableLoader(Augmented(), batch_size=4, seed=11).batches(epoch=2, start=6))
    assert len(whole) == 10 and len(resumed) == 4
    for (x, noise), (y, again) in zip(whole[6:], resumed, strict=True):
        assert torch.equal(x, y) and torch.equal(noise, again)
    other_seed = list(ResumableLoader(Augmented(), batch_size=4, seed=12).batches(epoch=2))
    assert not torch.equal(other_seed[0][1], whole[0][1])
