"""`Ranks`: what the rest of jobs/ sees of the run's processes: this process's rank, the world size, and the
few collectives the loop needs. With one process each of them is the identity, without touching
torch.distributed. Rank 0 decides and writes (docs/design.md, "Decisions"); its decisions and errors reach
the other ranks."""
from __future__ import annotations

import io

import torch
import torch.distributed as dist

from jobs.errors import UserError


class Ranks:
    """This process's rank and the run's world size, and the collectives the loop uses.

    Rank 0 is the writer: it holds the lock and writes every file of the run; the others compute."""

    def __init__(self, rank: int = 0, world_size: int = 1, launcher: str | None = None, owns_group: bool = False):
        self.rank, self.world_size, self.launcher = rank, world_size, launcher
        self.owns_group = owns_group  # set up here (and so torn down here), not by the caller
        self.peer_lost = False  # a collective failed because another rank died or stopped answering

    @property
    def distributed(self) -> bool:
        return self.launcher is not None

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    # -- decisions -------------------------------------------------------------------------------------
    def on_rank0(self, decide):
        """`decide()` on rank 0; its result, or its UserError, on every rank."""
        result, error = None, None
        if self.is_writer:
            try:
                result = decide()
            except UserError as e:
                error = str(e)
        result, error = self.broadcast((result, error))
        if error is not None:
            raise UserError(error, quiet=not self.is_writer)
        return result

    def on_every_rank(self, work):
        """`work()` on every rank; a UserError on any rank stops them all (rank 0 says which)."""
        result, error = None, None
        try:
            result = work()
        except UserError as e:
            if not self.distributed:
                raise
            error = str(e)
        self.all_ok(error)
        return result

    # -- collectives (the identity with one process) -------------------------------------------------
    # Objects travel as torch.save bytes: torch's object collectives pickle tensors in a form that its own
    # unpickler cannot read back (torch 2.13: "UntypedStorage has no attribute 'dtype'").
    def broadcast(self, value):
        """Rank 0's `value`, on every rank."""
        if not self.distributed:
            return value
        box = [_pack(value) if self.is_writer else None]
        dist.broadcast_object_list(box, src=0)
        return _unpack(box[0])

    def gather(self, value) -> list | None:
        """Every rank's `value`, in rank order, on rank 0 (None on the others)."""
        if not self.distributed:
            return [value]
        out = [None] * self.world_size if self.is_writer else None
        dist.gather_object(_pack(value), out, dst=0)
        return [_unpack(packed) for packed in out] if self.is_writer else None

    def all_gather(self, value) -> list:
        if not self.distributed:
            return [value]
        out = [None] * self.world_size
        dist.all_gather_object(out, _pack(value))
        return [_unpack(packed) for packed in out]

    def per_rank(self, code: int) -> list[int]:
        """Every rank's small integer, on every rank: one all-reduce of world-size integers (CPU, gloo)."""
        if not self.distributed:
            return [code]
        codes = torch.zeros(self.world_size, dtype=torch.int64)
        codes[self.rank] = code
        dist.all_reduce(codes)
        return codes.tolist()

    def sum(self, values: list[float]) -> list[float]:
        """The sums over the ranks of a few numbers (CPU, gloo)."""
        if not self.distributed:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(total)
        return total.tolist()

    def all_ok(self, error: str | None) -> None:
        """Raise UserError on every rank if any rank had one (rank 0 says which; the others stay quiet)."""
        errors = self.all_gather(error)
        if any(errors):
            first_of_each = {e: r for r, e in reversed(list(enumerate(errors))) if e}  # the same error once
            details = "; ".join(e if r == 0 else f"rank {r}: {e}" for e, r in sorted(first_of_each.items(),
                                                                                    key=lambda item: item[1]))
            raise UserError(details, quiet=not self.is_writer)


def _pack(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _unpack(packed: bytes):
    return torch.load(io.BytesIO(packed), map_location="cpu", weights_only=False)  # from our own ranks
