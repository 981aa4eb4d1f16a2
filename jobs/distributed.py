"""Several processes on one run: torch.distributed set up from the launcher's environment.

    srun -n 4 python scripts/train.py ...                 SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID
    submitit (tasks_per_node)                             the same: submitit starts its tasks with srun
    torchrun --nproc-per-node 4 scripts/train.py ...      RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / PORT

A single process (no launcher, a batch shell without srun, a one-task step) initializes nothing. Under
srun the rendezvous is the first node of the step, on a port derived from the job id (so that jobs that
share a node do not collide, and a requeued job finds the same one); MASTER_ADDR/MASTER_PORT override.
CUDA collectives go through NCCL (LOCAL_RANK picks the GPU), CPU ones through gloo: the stop flag is a
CPU tensor, agreed on without waiting for the GPU. Every collective has a timeout, so that a rank that
died never leaves the others waiting for ever.

`Ranks` is what the rest of jobs/ sees: rank, world size and the few collectives the loop needs. With
one process each of them is the identity, without touching torch.distributed.
"""
from __future__ import annotations

import datetime
import io
import os
import shutil
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist

from jobs.errors import UserError

DEFAULT_TIMEOUT_SECONDS = 300.0  # a checkpoint write or an evaluation on rank 0 must fit in it
TIMEOUT_ENV = "JOBS_COLLECTIVE_TIMEOUT_SECONDS"  # how long a rank waits for the others, at most
PORT_BASE, PORT_SPAN = 20000, 20000  # srun: the rendezvous port is PORT_BASE + job id % PORT_SPAN


@dataclass(frozen=True)
class Launch:
    """Where this process stands among the run's processes, as its launcher said."""
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str  # "srun", "torchrun", or "env" (RANK, WORLD_SIZE... set by someone else)


def _int(env, name: str) -> int:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        raise UserError(f"{name}={env.get(name)!r} in the environment is not an integer") from None


def from_environment(env=None) -> Launch | None:
    """The launch this process is part of; None for a single process (nothing to initialize)."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun, or anyone who sets its variables
        return Launch(_int(env, "RANK"), _int(env, "WORLD_SIZE"), _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env
                      else 0, env.get("MASTER_ADDR", "127.0.0.1"),
                      _int(env, "MASTER_PORT") if "MASTER_PORT" in env else 29500,
                      "torchrun" if "TORCHELASTIC_RUN_ID" in env else "env")
    # inside an srun step only: a batch shell has SLURM_NTASKS and SLURM_PROCID=0 too, but is one process
    if "SLURM_STEP_NUM_TASKS" in env and _int(env, "SLURM_STEP_NUM_TASKS") > 1:
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else \
            PORT_BASE + _int(env, "SLURM_JOB_ID") % PORT_SPAN
        return Launch(_int(env, "SLURM_PROCID"), _int(env, "SLURM_STEP_NUM_TASKS"), _int(env, "SLURM_LOCALID"),
                      env.get("MASTER_ADDR") or _first_node_address(env), port, "srun")
    return None


def _first_node_address(env) -> str:
    """The address of the step's first node (rank 0 runs there): 127.0.0.1 on one node, else SLURM's own
    NodeAddr for that node (a node's name need not resolve), else its name."""
    if env.get("SLURM_STEP_NUM_NODES", "1") == "1":
        return "127.0.0.1"
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "")
    first = nodes
    if shutil.which("scontrol"):
        done = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, timeout=30)
        first = (done.stdout.split() or [nodes])[0]
        node = subprocess.run(["scontrol", "show", "node", "-o", first], capture_output=True, text=True, timeout=30)
        for token in node.stdout.split():
            if token.startswith("NodeAddr="):
                return token.split("=", 1)[1]
    return first


class Ranks:
    """This process's rank and the run's world size, and the collectives the loop uses.

    Rank 0 is the writer: it holds the lock and writes every file of the run; the others compute."""

    def __init__(self, rank: int = 0, world_size: int = 1, launcher: str | None = None, owns_group: bool = False):
        self.rank, self.world_size, self.launcher = rank, world_size, launcher
        self.owns_group = owns_group  # set up here (and so torn down here), not by the caller

    @property
    def distributed(self) -> bool:
        return self.launcher is not None

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

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


def setup(timeout_seconds: float | None = None) -> Ranks:
    """Join the process group this process was launched into; a single process joins nothing."""
    launch = from_environment()
    if launch is None:
        return Ranks()
    if timeout_seconds is None:
        try:
            timeout_seconds = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_SECONDS))
        except ValueError:
            raise UserError(f"{TIMEOUT_ENV}={os.environ[TIMEOUT_ENV]!r} is not a number of seconds") from None
    if not 0 <= launch.rank < launch.world_size:
        raise UserError(f"rank {launch.rank} is outside the world of {launch.world_size} processes")
    if dist.is_initialized():  # a caller (e.g. a test, or a user's own script) set it up already
        return Ranks(dist.get_rank(), dist.get_world_size(), launch.launcher)
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(launch.local_rank % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    try:
        dist.init_process_group(backend, init_method=f"tcp://{launch.master_addr}:{launch.master_port}",
                                rank=launch.rank, world_size=launch.world_size,
                                timeout=datetime.timedelta(seconds=timeout_seconds))
    except (RuntimeError, ValueError, OSError) as e:  # a rank that never came, a port in use
        raise UserError(f"rank {launch.rank} of {launch.world_size} ({launch.launcher}) could not join the "
                        f"others at {launch.master_addr}:{launch.master_port}: {str(e).splitlines()[0]}") from None
    return Ranks(launch.rank, launch.world_size, launch.launcher, owns_group=True)


def teardown(ranks: Ranks) -> None:
    if ranks.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def is_peer_failure(error: BaseException) -> bool:
    """A collective that failed because another rank died or timed out (gloo, NCCL, the store)."""
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        marker in text for marker in ("Connection closed by peer", "Connection reset by peer", "Timed out",
                                      "timed out", "Broken pipe", "NCCL", "gloo"))

