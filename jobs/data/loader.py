"""A torch DataLoader that resumes: its epoch starts at any batch (a seek), in the epoch's own order, with each
rank's share of every global batch under DDP, and with random augmentation drawn per batch from its own seed
(jobs.data.seeding), so that it stays exact with any number of workers."""
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from jobs.data.sampler import ResumableBatchSampler
from jobs.data.seeding import SeededSamples


class ResumableLoader:
    """`batches(epoch, start)` iterates epoch `epoch` from its batch `start`; len() is the batches per epoch.

    `batch_size` is the global batch: with several processes (torch.distributed initialized) each rank loads
    its share. Other keyword arguments go to DataLoader (num_workers, pin_memory, collate_fn, ...)."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, *, shuffle: bool = True,
                 drop_last: bool = True, seed_samples: bool = True, **dataloader_args):
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.sampler = ResumableBatchSampler(len(dataset), batch_size, seed, shuffle=shuffle, drop_last=drop_last,
                                             rank=rank, world_size=world, seeded=seed_samples)
        # its own generator: a DataLoader draws its workers' base seed when an epoch starts, and a draw from the
        # global RNG would come at another moment in a resumed run (a mid-epoch start) than in an uninterrupted one.
        # (Without seed_samples, augmentation in workers does not resume exactly: which worker loads which batch,
        # and the state of its RNGs, differ after a resume.)
        generator = torch.Generator().manual_seed(seed)
        self.loader = DataLoader(SeededSamples(dataset, seed) if seed_samples else dataset,
                                 batch_sampler=self.sampler, generator=generator, **dataloader_args)

    def __len__(self) -> int:
        return len(self.sampler)

    def batches(self, epoch: int, start: int = 0) -> Iterator:
        self.sampler.seek(epoch, start)
        return iter(self.loader)
