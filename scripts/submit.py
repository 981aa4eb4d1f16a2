#!/usr/bin/env python3
"""Submit a resumable training run to SLURM through submitit (same training flags as train.py).

    python scripts/submit.py --data-dir data/cifar-10-batches-py --run-id resnet32 --time 120 --gpus 1
    python scripts/submit.py --data-dir data/cifar-10-batches-py --run-id ddp8 --nodes 2 --tasks-per-node 4 --gpus 4
    python scripts/submit.py --data-dir data/cifar-10-batches-py --sweep block=standard,bottleneck \
        --sweep size=3,5,7,9 --sweep-name hw --time 120 --gpus 1   # one job array, 8 runs: hw-block_standard-size_3...

The job requeues itself on SLURM's time-limit warning (USR2) after a step-boundary save, until the
run is finished; `python scripts/status.py` shows where it stands (`--sweep NAME`: a sweep's runs).
A sweep is one SLURM job array of slurm/train_sweep.sh (sbatch, not submitit): each task trains one point of
the grid as its own run, requeued alone and retried after a crash like any batch job (docs/slurm.md, "Sweeps").
"""
import argparse
import os
import sys

from jobs.cli import add_loop_arguments, loop_config_from_args, positive_int, run_main
from jobs.errors import UserError
from jobs.run.run_dir import DEFAULT_RUNS_DIR, RunDir, check_runs_dir
from jobs.sweep.flags import StrictParser
from jobs.sweep.submission import submit_sweep
from resnet.config import TRAINING_FIELDS, add_arguments, config_from_args, validate


def check_config(args) -> dict:
    """The run config of parsed training flags, refused before anything is written if it cannot train."""
    config = config_from_args(args, resolve=False)
    validate(config)
    if config["data_dir"] and not os.path.exists(config["data_dir"]):
        raise UserError(f"--data-dir {config['data_dir']} does not exist")
    world_size = args.nodes * args.tasks_per_node
    if config["batch_size"] % world_size:
        raise UserError(f"batch size {config['batch_size']} does not divide among {world_size} processes "
                        f"(--nodes {args.nodes} x --tasks-per-node {args.tasks_per_node}); give a multiple of "
                        f"{world_size}")
    return config


def training_parser() -> argparse.ArgumentParser:
    """The training flags alone (train.py's), whose errors are one line: a sweep's tasks are parsed by it."""
    parser = StrictParser()
    add_arguments(parser)
    add_loop_arguments(parser)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # no abbreviations: a sweep copies the training flags as typed, recognised by their whole names
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    add_arguments(parser)
    parser.add_argument("--run-id", help="the run (not with --sweep)")
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR)
    parser.add_argument("--resume-if-exists", action="store_true", help="submit an existing run id too")
    add_loop_arguments(parser)
    slurm = parser.add_argument_group("SLURM (the submitit executor; with --sweep, sbatch --array)")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", type=positive_int, default=120, help="minutes per job (default 120)")
    slurm.add_argument("--gpus", type=int, default=1, help="GPUs per node (default 1; 0 for none)")
    slurm.add_argument("--nodes", type=positive_int, default=1, help="nodes (default 1)")
    slurm.add_argument("--tasks-per-node", type=positive_int, default=1,
                       help="training processes per node, one per GPU (default 1); more than one process in all "
                            "trains with DDP, the global batch shared among them")
    slurm.add_argument("--cpus", type=positive_int, default=4)
    slurm.add_argument("--mem", type=float, help="memory per node in GB")
    slurm.add_argument("--signal-delay", type=positive_int, default=120,
                       help="seconds between the USR2 warning and the time limit (default 120)")
    slurm.add_argument("--account", help="SLURM account to charge")
    sweep = parser.add_argument_group("sweep (one SLURM job array, one run per point of the grid)")
    sweep.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="a training flag and its values (repeat for more axes: their cartesian product)")
    sweep.add_argument("--sweep-name", help="names the sweep (<runs-dir>/sweeps/NAME.json) and prefixes its run ids")
    sweep.add_argument("--max-parallel", type=positive_int, help="tasks of the array running at once (default: all)")
    sweep.add_argument("--dry-run", action="store_true", help="print the sweep's tasks, submit and write nothing")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if args.gpus else "cpu"  # decided for the compute node, not this login node
    if args.signal_delay >= args.time * 60:
        raise UserError(f"--signal-delay {args.signal_delay} s must be shorter than --time {args.time} min")
    if args.gpus and args.gpus != args.tasks_per_node and args.tasks_per_node > 1:
        raise UserError(f"--tasks-per-node {args.tasks_per_node} with --gpus {args.gpus}: DDP runs one process "
                        "per GPU, give as many of each")
    check_runs_dir(args.runs_dir)
    if args.sweep or args.sweep_name or args.dry_run or args.max_parallel:
        return submit_sweep(args, argv, training_parser(), check_config, ["preset", *TRAINING_FIELDS])
    if not args.run_id:
        raise UserError("--run-id is required (or --sweep KEY=V1,V2,... --sweep-name NAME for a sweep)")
    config = check_config(args)
    run = RunDir(args.runs_dir, args.run_id)
    if run.exists() and not args.resume_if_exists:
        raise UserError(f"run {args.run_id!r} already exists; continue it with "
                        f"`python scripts/resume.py --run-id {args.run_id}` or pass --resume-if-exists")
    from jobs.launch.submitit_job import TrainingJob, submit  # submitit and torch: not for a sweep
    from resnet.task import REFERENCE

    job = TrainingJob(REFERENCE, config, args.runs_dir, args.run_id, loop_config_from_args(args).to_dict())
    submitted = submit(job, partition=args.partition, time_minutes=args.time, gpus=args.gpus, cpus=args.cpus,
                       nodes=args.nodes, tasks_per_node=args.tasks_per_node,
                       mem_gb=args.mem, signal_delay_s=args.signal_delay, max_requeues=args.max_requeues,
                       extra={"account": args.account} if args.account else None)
    print(f"submitted run {args.run_id} as SLURM job {submitted.job_id}; "
          f"watch it with: python scripts/status.py --run-id {args.run_id} --runs-dir {args.runs_dir}")
    return 0


if __name__ == "__main__":
    run_main(main)
