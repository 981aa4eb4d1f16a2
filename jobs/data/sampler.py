"""The batches of an epoch as a pure function of (seed, epoch): resuming is a seek to a batch, not a replay."""
import torch
from torch.utils.data import Sampler

from jobs.errors import UserError


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % 2**63


class ResumableBatchSampler(Sampler[list]):
    """Each rank's share of every global batch of one global order per epoch (`batch_size` is the global batch),
    from the batch `seek()` names on. With `seeded`, it yields (epoch, batch key, index) triples for
    jobs.data.seeding: the batch key is the same for a rank's share of a batch wherever and whenever it loads."""

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, *, shuffle: bool = True,
                 drop_last: bool = True, rank: int = 0, world_size: int = 1, seeded: bool = False):
        if batch_size % world_size:
            raise UserError(f"batch size {batch_size} does not divide among {world_size} processes; give a multiple "
                            f"of {world_size}")
        if world_size > 1 and not drop_last:
            raise UserError("several processes need full batches: every rank takes its share of each (drop_last)")
        if num_samples < batch_size and drop_last:
            raise UserError(f"batch size {batch_size} is larger than the {num_samples} samples")
        self.num_samples, self.batch_size, self.seed, self.shuffle = num_samples, batch_size, seed, shuffle
        self.drop_last, self.rank, self.share, self.seeded = drop_last, rank, batch_size // world_size, seeded
        self.world_size = world_size
        self.epoch, self.start = 0, 0
        self._order: tuple[int, torch.Tensor] | None = None  # (epoch, its order): one permutation per epoch

    def __len__(self) -> int:
        return self.num_samples // self.batch_size if self.drop_last else -(-self.num_samples // self.batch_size)

    def seek(self, epoch: int, batch: int = 0) -> None:
        """The next iteration yields epoch `epoch` from its batch `batch` on."""
        self.epoch, self.start = epoch, batch

    def order(self, epoch: int) -> torch.Tensor:
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            order = torch.randperm(self.num_samples, generator=generator) if self.shuffle else \
                torch.arange(self.num_samples)
            self._order = (epoch, order)
        return self._order[1]

    def __iter__(self):
        epoch, order = self.epoch, self.order(self.epoch)
        for batch in range(self.start, len(self)):
            first = batch * self.batch_size + self.rank * self.share
            indices = order[first:min(first + self.share, self.num_samples)].tolist()
            key = batch * self.world_size + self.rank
            yield [(epoch, key, index) for index in indices] if self.seeded else indices
