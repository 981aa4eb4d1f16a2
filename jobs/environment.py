"""Where this process runs, read from its environment: the SLURM job and task it belongs to, and the launcher
that started it as one of several processes. The rest of jobs/ reads SLURM's and the launchers' variables
through this object only (like submitit's JobEnvironment).

    srun -n 4 python scripts/train.py ...               SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID
    submitit (tasks_per_node)                           the same: submitit starts its tasks with srun
    torchrun --nproc-per-node 4 scripts/train.py ...    RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / PORT

A single process (no launcher, a batch shell without srun, a one-task step) has no launch. Under srun the
rendezvous is the first node of the step, on a port derived from the job id (so that jobs that share a node
do not collide, and a requeued job finds the same one); MASTER_ADDR/MASTER_PORT override.
"""
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from jobs.errors import UserError

PORT_BASE, PORT_SPAN = 20000, 20000  # srun: the rendezvous port is PORT_BASE + job id % PORT_SPAN
SUPERVISED_RETRY_ENV = "JOBS_SUPERVISED_RETRY"  # "1": a trainer that jobs.supervise runs again after a crash


@dataclass(frozen=True)
class Launch:
    """Where this process stands among the run's processes, as its launcher said."""
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str  # "srun", "torchrun", or "env" (RANK, WORLD_SIZE... set by someone else)


class JobEnvironment:
    def __init__(self, env: Mapping | None = None):
        self.env = os.environ if env is None else env

    @property
    def job_id(self) -> str | None:
        """The SLURM job id as the user sees it (array jobs: <array>_<task>); None outside SLURM."""
        array_id, task = self.env.get("SLURM_ARRAY_JOB_ID"), self.env.get("SLURM_ARRAY_TASK_ID")
        if array_id and task:
            return f"{array_id}_{task}"
        return self.env.get("SLURM_JOB_ID")

    @property
    def batch_job_id(self) -> str | None:
        """The job id inside a SLURM batch job: its batch script, and the srun steps that script starts (sbatch
        sets ENVIRONMENT=BATCH there, and srun passes it on); None outside SLURM, and inside salloc or an srun
        of its own (an interactive allocation, which `scontrol requeue` cannot requeue)."""
        return self.job_id if self.env.get("ENVIRONMENT") == "BATCH" else None

    @property
    def tasks(self) -> int:
        """How many processes the launch this process is part of has (torchrun's or srun's); 1 for one alone."""
        for name in ("WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
            value = self.env.get(name, "")
            if value.isdigit():
                return int(value)
        return 1

    @property
    def supervised_retry(self) -> bool:
        """Whether this trainer is a crashed one's retry, run in place by its supervisor (jobs.supervise): its
        run exists because the crashed trainer made it, so a command that starts a new run continues it."""
        return self.env.get(SUPERVISED_RETRY_ENV) == "1"

    @property
    def task_id(self) -> str:
        """This task's number in its job step ("0" outside a step, or for the only task): with several tasks
        (srun, submitit), task 0 decides about requeues and the others follow."""
        return self.env.get("SLURM_PROCID", "0")

    @property
    def restart_count(self) -> int | None:
        """How often SLURM has requeued this job (None before the first requeue, or outside SLURM)."""
        value = self.env.get("SLURM_RESTART_COUNT")
        return int(value) if value and value.isdigit() else None

    def launch(self) -> Launch | None:
        """The launch this process is part of; None for a single process (nothing to initialize)."""
        env = self.env
        if "RANK" in env and "WORLD_SIZE" in env:  # torchrun, or anyone who sets its variables
            return Launch(_int(env, "RANK"), _int(env, "WORLD_SIZE"),
                          _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
                          env.get("MASTER_ADDR", "127.0.0.1"),
                          _int(env, "MASTER_PORT") if "MASTER_PORT" in env else 29500,
                          "torchrun" if "TORCHELASTIC_RUN_ID" in env else "env")
        # inside an srun step only: a batch shell has SLURM_NTASKS and SLURM_PROCID=0 too, but is one process
        if "SLURM_STEP_NUM_TASKS" in env and _int(env, "SLURM_STEP_NUM_TASKS") > 1:
            port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else \
                PORT_BASE + _int(env, "SLURM_JOB_ID") % PORT_SPAN
            return Launch(_int(env, "SLURM_PROCID"), _int(env, "SLURM_STEP_NUM_TASKS"), _int(env, "SLURM_LOCALID"),
                          env.get("MASTER_ADDR") or _first_node_address(env), port, "srun")
        return None


def _int(env: Mapping, name: str) -> int:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        raise UserError(f"{name}={env.get(name)!r} in the environment is not an integer") from None


def _first_node_address(env: Mapping) -> str:
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
