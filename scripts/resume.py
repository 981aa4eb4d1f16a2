#!/usr/bin/env python3
"""Continue a stopped run from its newest good checkpoint, with its frozen config.

    python scripts/resume.py --run-id ID              # on a SLURM login node: resubmits the job
    python scripts/resume.py --run-id ID --local      # trains here, in the foreground
    python scripts/resume.py --run-id ID --epochs 200 # extend a (finished) run
"""
import argparse

from jobs.cli import add_run_arguments, positive_int, run_main
from jobs.launch import RESUME, launch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, run_id_required=True)
    parser.add_argument("--epochs", type=positive_int, help="change the total number of epochs (extends a run)")
    parser.add_argument("--local", action="store_true", help="train here even where SLURM is available")
    args = parser.parse_args(argv)
    overrides = {"epochs": args.epochs} if args.epochs else {}
    return launch(None, None, args.runs_dir, args.run_id, mode=RESUME, overrides=overrides, force=args.force)


if __name__ == "__main__":
    run_main(main)
