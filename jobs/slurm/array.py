"""Job arrays: one sbatch for a sweep's tasks, and the state of each task (no torch).

Inside a task SLURM_JOB_ID is the task's own job id, and jobs.environment names it `<array>_<index>`, the id
that `scontrol requeue` (a time-limit warning, jobs.slurm.requeue; a crash, jobs.supervise.crash) requeues
alone: the array's own id would requeue every task of it (Lightning #15022)."""
import shutil
import subprocess

from jobs.slurm.queries import COMMAND_TIMEOUT, run_command


def sbatch_array(script: list[str], tasks: int, options: dict, env: dict, cwd: str,
                 max_parallel: int | None = None) -> str:
    """sbatch `script` as the array 0..tasks-1 (at most `max_parallel` at once); returns the array's job id.
    `options`: sbatch's long options without their "--" (None: left out)."""
    spec = f"0-{tasks - 1}" + (f"%{max_parallel}" if max_parallel else "")
    args = ["sbatch", "--parsable", f"--array={spec}", "--requeue", "--open-mode=append"]
    args += [f"--{key}={value}" for key, value in options.items() if value is not None]
    try:  # cwd: sbatch's submit directory, where the job starts too
        done = subprocess.run(args + script, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"sbatch failed: {e}") from None
    if done.returncode != 0:
        raise RuntimeError(f"sbatch failed: {done.stderr.strip()}")
    return done.stdout.strip().split(";")[0]


def array_tasks(array_job_id: str) -> dict[int, dict] | None:
    """{index: {"job_id", "state"}} of the array's tasks squeue still lists (`-r`: one line per task, pending
    ones too); None where squeue cannot answer."""
    if not shutil.which("squeue"):
        return None
    done = run_command(["squeue", "-h", "-r", "-j", str(array_job_id), "-o", "%i|%K|%T"])
    if done is None:
        return None
    if done.returncode != 0:  # an array that left the queue: "Invalid job id"
        return {} if "Invalid job id" in done.stderr else None
    tasks = {}
    for line in done.stdout.splitlines():
        job_id, index, state = (line.split("|") + ["", ""])[:3]
        if index.strip().isdigit():
            tasks[int(index)] = {"job_id": job_id.strip(), "state": state.strip()}
    return tasks
