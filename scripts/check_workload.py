#!/usr/bin/env python3
"""Check, in seconds on the CPU, that a workload resumes exactly, before a week-long run finds out it does not.

    python scripts/check_workload.py --workload examples.spirals:WORKLOAD --config '{"workers": 0}'
    python scripts/check_workload.py --workload mypackage.task:WORKLOAD --config small.json

It trains a few steps as the loop does, checkpoints at an epoch's end and inside the next epoch, continues each
checkpoint in a fresh process and compares it with the uninterrupted run, part by part (the model, the optimizer,
the LR scheduler, the generators, the data loaders, the counters, the global RNGs). Exit 0 if every resume is
exact; 1 with one line a resume point naming what first differs and where to look; 2 for bad input; 8 if the
workload breaks the contract. Give it a small config: two epochs of a few steps are enough.
"""
import argparse
import sys

from jobs.check.resume_check import check
from jobs.cli import read_config, run_main
from jobs.errors import ContractError
from jobs.exit_codes import EXIT_CONTRACT, EXIT_FAILED, EXIT_OK


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", required=True, help='"module:ATTRIBUTE", e.g. examples.spirals:WORKLOAD')
    parser.add_argument("--config", default="{}", help="a JSON file, or a JSON object (default: {})")
    args = parser.parse_args(argv)
    try:
        points, problems = check(args.workload, read_config(args.config))
    except ContractError as e:
        print(f"error: the workload broke the contract: {e}", file=sys.stderr)
        return EXIT_CONTRACT
    for problem in problems:
        print(f"not exact: {problem}", file=sys.stderr)
    if problems:
        return EXIT_FAILED
    print(f"exact: {args.workload} resumes bit-identically at {points}")
    return EXIT_OK


if __name__ == "__main__":
    run_main(main)
