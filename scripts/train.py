#!/usr/bin/env python3
"""Train a CIFAR-10 ResNet as a resumable run: checkpoints/<run-id>/.

    python scripts/train.py --synthetic 2000 --size 1 --epochs 5 --run-id demo
    python scripts/train.py --data-dir data/cifar-10-batches-py --run-id resnet32
"""
import argparse
import time

from jobs.signals import catch_early

catch_early()  # before the slow imports: a SLURM USR2 during start-up must not kill the job

from jobs.cli import (  # noqa: E402
    add_loop_arguments,
    add_resume_arguments,
    add_run_arguments,
    launch_mode,
    loop_config_from_args,
    run_main,
)
from jobs.environment import JobEnvironment  # noqa: E402
from jobs.launch.launcher import launch  # noqa: E402
from resnet.config import SAFE_TO_CHANGE, add_arguments, config_from_args  # noqa: E402
from resnet.task import REFERENCE  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    add_run_arguments(parser, run_id_required=False)
    add_resume_arguments(parser, SAFE_TO_CHANGE)
    add_loop_arguments(parser)
    return parser.parse_args(argv)


def default_run_id() -> str:
    """Stable across requeues inside a SLURM job; a timestamp elsewhere."""
    job = JobEnvironment().job_id
    return f"job-{job}" if job else time.strftime("run-%Y%m%d-%H%M%S")


def main(argv=None) -> int:
    args = parse_args(argv)
    config = config_from_args(args)
    mode = launch_mode(args)
    fields = set(args.override) | ({"bf16", "channels_last"} if "fast" in args.override else set())
    overrides = {field: config[field] for field in fields}  # --override fast: the fast path's settings too
    # `is None`, not `or`: an explicit empty --run-id "" is a bad run id, not a request for a default one
    run_id = default_run_id() if args.run_id is None else args.run_id
    return launch(REFERENCE, config, args.runs_dir, run_id, mode=mode, loop=loop_config_from_args(args),
                  overrides=overrides, force=args.force)


if __name__ == "__main__":
    run_main(main)
