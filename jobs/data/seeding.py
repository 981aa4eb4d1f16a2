"""Random augmentation that resumes exactly: each batch is drawn with the global RNGs (torch's CPU generator,
numpy's, Python's) seeded from (seed, epoch, batch), whichever process or worker loads it, and in the main process
the caller's RNG states are put back afterwards. So a dataset's own torch.rand, np.random and random calls
(torchvision's transforms, for instance) give the same samples after a resume as in an uninterrupted run: a batch
always holds the same samples (jobs.data.sampler), fetched in the same order."""
import random

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

MASK = 2**64 - 1


def mixed_seed(seed: int, epoch: int, key: int) -> int:
    """A 63-bit seed from the three numbers (splitmix64 of their mix: neighbours get unrelated seeds)."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + key * 0x94D049BB133111EB) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return (z ^ (z >> 31)) >> 1


class SeededSamples(Dataset):
    """`dataset`, fetched a batch at a time from the (epoch, batch key, index) triples of a seeded
    ResumableBatchSampler (the DataLoader hands a batch's keys to __getitems__)."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list) -> list:
        epoch, batch, _ = keys[0]
        indices = [index for _, _, index in keys]
        seed = mixed_seed(self.seed, epoch, batch)
        if get_worker_info() is not None:  # a worker's RNGs are its own: no one to give them back to
            _seed_all(seed)
            return self._fetch(indices)
        states = torch.get_rng_state(), np.random.get_state(), random.getstate()
        _seed_all(seed)
        try:
            return self._fetch(indices)
        finally:
            torch.set_rng_state(states[0])
            np.random.set_state(states[1])
            random.setstate(states[2])

    def _fetch(self, indices: list):
        getitems = getattr(self.dataset, "__getitems__", None)  # whatever it returns: a list, or a whole batch
        return getitems(indices) if getitems else [self.dataset[index] for index in indices]


def _seed_all(seed: int) -> None:
    torch.default_generator.manual_seed(seed)  # the CPU's alone: seeding CUDA here would initialise it
    np.random.seed([seed & 0xFFFFFFFF, seed >> 32])  # both halves: numpy takes 32-bit words
    random.seed(seed)
