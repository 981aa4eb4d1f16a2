#!/usr/bin/env python3
"""Submit a resumable training run to SLURM through submitit (same training flags as train.py).

    python scripts/submit.py --data-dir data/cifar-10-batches-py --run-id resnet32 --time 120 --gpus 1
    python scripts/submit.py --data-dir data/cifar-10-batches-py --run-id ddp8 --nodes 2 --tasks-per-node 4 --gpus 4

The job requeues itself on SLURM's time-limit warning (USR2) after a step-boundary save, until the
run is finished; `python scripts/status.py` shows where it stands.
"""
import argparse
import os

from jobs.cli import add_loop_arguments, loop_config_from_args, positive_int, run_main
from jobs.errors import UserError
from jobs.launch.submitit_job import TrainingJob, submit
from jobs.run.run_dir import DEFAULT_RUNS_DIR, RunDir, check_runs_dir
from resnet.config import add_arguments, config_from_args, validate
from resnet.task import REFERENCE


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR)
    parser.add_argument("--resume-if-exists", action="store_true", help="submit an existing run id too")
    add_loop_arguments(parser)
    slurm = parser.add_argument_group("SLURM (submitit executor)")
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
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if args.gpus else "cpu"  # decided for the compute node, not this login node
    config = config_from_args(args, resolve=False)
    validate(config)
    if config["data_dir"] and not os.path.exists(config["data_dir"]):
        raise UserError(f"--data-dir {config['data_dir']} does not exist")
    check_runs_dir(args.runs_dir)
    run = RunDir(args.runs_dir, args.run_id)
    if run.exists() and not args.resume_if_exists:
        raise UserError(f"run {args.run_id!r} already exists; continue it with "
                        f"`python scripts/resume.py --run-id {args.run_id}` or pass --resume-if-exists")
    world_size = args.nodes * args.tasks_per_node
    if config["batch_size"] % world_size:
        raise UserError(f"batch size {config['batch_size']} does not divide among {world_size} processes "
                        f"(--nodes {args.nodes} x --tasks-per-node {args.tasks_per_node}); give a multiple of "
                        f"{world_size}")
    if args.gpus and args.gpus != args.tasks_per_node and args.tasks_per_node > 1:
        raise UserError(f"--tasks-per-node {args.tasks_per_node} with --gpus {args.gpus}: DDP runs one process "
                        "per GPU, give as many of each")
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
