#!/usr/bin/env python3
"""Continue a stopped run from its newest good checkpoint, with its frozen config.

    python scripts/resume.py --run-id ID              # where sbatch exists: resubmit the run's SLURM job
    python scripts/resume.py --run-id ID --local      # train here, in the foreground
    python scripts/resume.py --run-id ID --epochs 200 # extend a (finished) run
"""
import argparse
import shlex
import sys
from pathlib import Path

from jobs.signals import catch_early

catch_early()  # before the slow imports: a SLURM USR2 during start-up must not kill the job

from jobs.checkpoint.manifest import committed_entries, verified_bytes  # noqa: E402
from jobs.cli import add_run_arguments, positive_int, run_main  # noqa: E402
from jobs.errors import UserError  # noqa: E402
from jobs.run.run_dir import RunDir, check_runs_dir, unknown_run_message  # noqa: E402
from jobs.slurm import queries, requeue  # noqa: E402


def resubmit(args, run: RunDir) -> int:
    job = run.read_config()["job"]
    state = queries.job_state(job["slurm_job_id"])
    if state and not queries.ended(state):
        raise UserError(f"run {run.run_id} is still in SLURM job {job['slurm_job_id']} ({state}); "
                        "wait for it or scancel it first")
    command = [sys.executable, str(Path(__file__).resolve()), "--local", "--run-id", run.run_id,
               "--runs-dir", str(Path(args.runs_dir).resolve())]
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    if args.force:
        command.append("--force")
    # exec: the supervisor becomes the batch shell, so it receives the B:USR2 warning and forwards it to
    # the trainer, and it requeues the job if the trainer dies abnormally (slurm/exec_train.sh does the same)
    supervisor = [sys.executable, "-m", "jobs.supervise", "--"]
    job_id = requeue.resubmit(job, "exec " + shlex.join(supervisor + command))
    print(f"resubmitted run {run.run_id} as SLURM job {job_id} (was {job['slurm_job_id']}); "
          f"watch it with: python scripts/status.py --run-id {run.run_id} --runs-dir {args.runs_dir}")
    return 0


def _verifies(run: RunDir, entry: dict) -> bool:
    try:
        verified_bytes(run.path, entry)
    except ValueError:
        return False
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, run_id_required=True)
    parser.add_argument("--epochs", type=positive_int, help="change the total number of epochs (extends a run)")
    parser.add_argument("--local", action="store_true", help="train here even where SLURM is available")
    args = parser.parse_args(argv)
    run = RunDir(check_runs_dir(args.runs_dir), args.run_id)
    if not run.exists():
        raise UserError(unknown_run_message(args.runs_dir, args.run_id))
    newest = (committed_entries(run.path) or [{}])[-1]
    # "finished" only if the final checkpoint verifies: a corrupt one must go through launch, which falls
    # back to the previous good checkpoint and redoes the last steps (docs/design.md, invariant 3)
    if newest.get("final") and not args.epochs and _verifies(run, newest):
        print(f"run {run.run_id} is already finished (step {newest['step']}); pass --epochs N to extend it")
        return 0
    if not args.local and queries.available() and (run.read_config().get("job") or {}).get("slurm_job_id"):
        return resubmit(args, run)
    from jobs.launch.launcher import RESUME, launch  # torch, and the workload: only when there is training to do

    overrides = {"epochs": args.epochs} if args.epochs else {}
    return launch(None, None, args.runs_dir, args.run_id, mode=RESUME, overrides=overrides, force=args.force)


if __name__ == "__main__":
    run_main(main)
