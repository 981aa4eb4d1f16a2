#!/usr/bin/env python3
"""Train a CIFAR-10 ResNet as a resumable run: checkpoints/<run-id>/.

    python scripts/train.py --synthetic 2000 --size 1 --epochs 5 --run-id demo
    python scripts/train.py --data-dir data/cifar-10-batches-py --run-id resnet32
"""
import argparse
import time

from jobs.signals import catch_early

catch_early()  # before the slow imports: a SLURM USR2 during start-up must not kill the job

from jobs.cli import add_loop_arguments, add_run_arguments, loop_config_from_args, run_main  # noqa: E402
from jobs.errors import UserError  # noqa: E402
from jobs.launch import NEW, RESUME_IF_EXISTS, launch  # noqa: E402
from jobs.run_dir import slurm_job_id  # noqa: E402
from resnet.config import SAFE_TO_CHANGE, add_arguments, config_from_args  # noqa: E402
from resnet.task import REFERENCE  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    add_run_arguments(parser, run_id_required=False)
    parser.add_argument("--resume-if-exists", action="store_true",
                        help="continue the run if it exists, start it otherwise (what a requeued job needs)")
    parser.add_argument("--override", action="append", default=[], choices=sorted(SAFE_TO_CHANGE),
                        help="allow this field to differ from the run being resumed")
    add_loop_arguments(parser)
    return parser.parse_args(argv)


def default_run_id() -> str:
    """Stable across requeues inside a SLURM job; a timestamp elsewhere."""
    job = slurm_job_id()
    return f"job-{job}" if job else time.strftime("run-%Y%m%d-%H%M%S")


def main(argv=None) -> int:
    args = parse_args(argv)
    config = config_from_args(args)
    fields = set(args.override) | ({"bf16", "channels_last"} if "fast" in args.override else set())
    overrides = {field: config[field] for field in fields}  # --override fast: the fast path's settings too
    if overrides and not args.resume_if_exists:
        raise UserError("--override only applies with --resume-if-exists (or use scripts/resume.py)")
    # `is None`, not `or`: an explicit empty --run-id "" is a bad run id, not a request for a default one
    run_id = default_run_id() if args.run_id is None else args.run_id
    return launch(REFERENCE, config, args.runs_dir, run_id,
                  mode=RESUME_IF_EXISTS if args.resume_if_exists else NEW, loop=loop_config_from_args(args),
                  overrides=overrides, force=args.force)


if __name__ == "__main__":
    run_main(main)
