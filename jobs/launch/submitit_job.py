"""The submitit path: a Checkpointable job that trains one run id and resubmits itself.

submitit installs its own USR2 handler, which calls `checkpoint()`, requeues the job and exits,
right in the middle of whatever the training thread was doing. We keep that handler but never let
the signal run it: our flag handler takes USR2, the loop saves at the next step boundary, and only
then do we call submitit's handler ourselves, so its requeue always follows a complete save.

A USR2 may also come while the job starts (SLURM may send its --signal up to a minute early, and a
preemption sends it at once). submitit installs its handler only once it has unpickled this job, which
imports torch (seconds, more on a loaded node), and USR2's default action kills: this module records
USR2 from its first line on (jobs.signals.catch_early), and __call__ again once submitit's handler is in,
so that the warning is handled at the run's first step boundary, like any other.
"""
import signal

from jobs.signals import catch_early

catch_early(signals=(signal.SIGUSR2,))  # before the slow imports (TERM keeps its default: see above)

import os  # noqa: E402
from pathlib import Path  # noqa: E402

import submitit  # noqa: E402

from jobs.environment import JobEnvironment  # noqa: E402
from jobs.errors import UserError  # noqa: E402
from jobs.exit_codes import EXIT_OK, EXIT_STOPPED  # noqa: E402
from jobs.launch.launcher import RESUME_IF_EXISTS, launch  # noqa: E402
from jobs.train.config import LoopConfig  # noqa: E402
from jobs.train.progress import Reporter  # noqa: E402

_submitit_usr2 = None  # submitit's USR2 handler in this job (a module global: the job itself is pickled again)


class TrainingJob(submitit.helpers.Checkpointable):
    """Pickled into submitit's queue: its module path and attributes are persisted (jobs.submitit_job names it
    for jobs queued before jobs/ was split into packages)."""

    def __init__(self, workload_ref: str, task_config: dict, runs_dir: str, run_id: str, loop: dict):
        self.workload_ref, self.task_config = workload_ref, task_config
        self.runs_dir, self.run_id, self.loop = str(Path(runs_dir).resolve()), run_id, loop

    def __call__(self) -> dict:
        global _submitit_usr2
        _submitit_usr2 = signal.getsignal(signal.SIGUSR2)
        catch_early(signals=(signal.SIGUSR2,))  # until the loop's own flag is in: recorded, not a bare requeue
        code = launch(self.workload_ref, self.task_config, Path(self.runs_dir), self.run_id,
                      mode=RESUME_IF_EXISTS, loop=LoopConfig(**self.loop), reporter=Reporter(interactive=False),
                      on_stop=self._after_saved_stop)
        if code == EXIT_STOPPED and JobEnvironment().task_id != "0":
            return {"run_id": self.run_id, "runs_dir": self.runs_dir, "stopped": True}  # rank 0 requeues the job
        if code != EXIT_OK:
            raise RuntimeError(f"run {self.run_id} stopped with exit code {code}; see {self.runs_dir}/{self.run_id}")
        return {"run_id": self.run_id, "runs_dir": self.runs_dir}

    def _after_saved_stop(self, run, outcome, stop) -> None:
        """USR2 (time limit or preemption warning): the checkpoint is saved; now let submitit requeue."""
        if outcome.signal == "SIGUSR2" and callable(_submitit_usr2):
            run.event("requeue", outcome.step, signal=outcome.signal, via="submitit")
            _submitit_usr2(signal.SIGUSR2, None)  # calls checkpoint(), scontrol requeue, sys.exit

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        # Nothing is saved here (the loop already did, at a step boundary): resubmit the same run id.
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def submit(job: TrainingJob, *, partition: str | None, time_minutes: int, gpus: int, cpus: int, mem_gb: float | None,
           signal_delay_s: int, max_requeues: int, extra: dict | None = None, nodes: int = 1,
           tasks_per_node: int = 1) -> submitit.Job:
    """Submit with settings that fit long runs split over many jobs (docs/slurm.md: submitit's traps)."""
    if signal_delay_s >= time_minutes * 60:
        raise UserError(f"--signal-delay {signal_delay_s} s must be shorter than --time {time_minutes} min")
    # SLURM's environment variables beat #SBATCH lines: an SBATCH_SIGNAL=B:USR2@N meant for the batch
    # scripts would send submitit's USR2 to its batch shell (which dies) instead of the srun step.
    os.environ.pop("SBATCH_SIGNAL", None)
    folder = Path(job.runs_dir) / job.run_id / "submitit"
    # submitit's default of 3 timeouts ends a 200-epoch run after 4 jobs; and with a limit of 10
    # minutes or less every USR2 counts as a timeout (it counts those past min(80%, limit - 10 min))
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm", slurm_max_num_timeout=max_requeues)
    # several tasks: submitit starts them with srun, and its --signal (USR2, without B:) reaches each one
    params = {"timeout_min": time_minutes, "cpus_per_task": cpus, "slurm_signal_delay_s": signal_delay_s,
              "nodes": nodes, "tasks_per_node": tasks_per_node,
              "name": job.run_id, "slurm_additional_parameters": {"requeue": True, **(extra or {})}}
    if gpus:
        params["gpus_per_node"] = gpus
    if partition:
        params["slurm_partition"] = partition
    if mem_gb:
        params["mem_gb"] = mem_gb
    executor.update_parameters(**params)
    return executor.submit(job)
