"""The process group of a run launched as several processes (srun, submitit, torchrun: jobs.environment).

CUDA collectives go through NCCL (LOCAL_RANK picks the GPU), CPU ones through gloo: the stop agreement is a
CPU tensor, agreed on without waiting for the GPU. Every collective has a timeout, so that a rank that died
never leaves the others waiting for ever. A single process initializes nothing.
"""
import atexit
import datetime
import os
import sys

import torch
import torch.distributed as dist

from jobs.distributed.ranks import Ranks
from jobs.environment import JobEnvironment
from jobs.errors import UserError
from jobs.exit_codes import EXIT_FAILED

DEFAULT_TIMEOUT_SECONDS = 300.0  # a checkpoint write or an evaluation on rank 0 must fit in it
TIMEOUT_ENV = "JOBS_COLLECTIVE_TIMEOUT_SECONDS"  # how long a rank waits for the others, at most


def setup(timeout_seconds: float | None = None) -> Ranks:
    """Join the process group this process was launched into; a single process joins nothing."""
    launch = JobEnvironment().launch()
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
    if not (ranks.owns_group and dist.is_initialized()):
        return
    if ranks.peer_lost:
        # gloo's threads of a group whose peer died can abort the process as they are destroyed (std::terminate:
        # exit -6 instead of 1, seen under load): such a process leaves without running C++ destructors
        atexit.register(_leave_now, EXIT_FAILED)
        return
    dist.destroy_process_group()


def _leave_now(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def is_peer_failure(error: BaseException) -> bool:
    """A collective that failed because another rank died or timed out (gloo, NCCL, the store)."""
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        marker in text for marker in ("Connection closed by peer", "Connection reset by peer", "Timed out",
                                      "timed out", "Broken pipe", "NCCL", "gloo"))
