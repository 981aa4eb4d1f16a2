#!/usr/bin/env python3
"""Train any workload as a resumable run: the generic entry point (scripts/train.py is the ResNet's own).

    python scripts/run.py --workload examples.char_lm:WORKLOAD --config examples/char_lm.json --run-id lm
    python scripts/run.py --workload mypackage.task:WORKLOAD --config '{"epochs": 3}' --run-id mine

--workload names the workload object as "module:ATTRIBUTE" (jobs.workload.Workload: it validates a config
and builds the task); --config is a JSON file or a JSON object. Everything else — checkpoints,
signals, requeues, status.py, resume.py, sbatch and submitit — is the same as for the ResNet
(docs/your-own-training.md).
"""
import argparse

from jobs.signals import catch_early

catch_early()  # before the slow imports: a SLURM USR2 during start-up must not kill the job

from jobs.cli import (  # noqa: E402
    add_loop_arguments,
    add_resume_arguments,
    add_run_arguments,
    launch_mode,
    loop_config_from_args,
    read_config,
    run_main,
)
from jobs.errors import UserError  # noqa: E402
from jobs.launch.launcher import launch  # noqa: E402
from jobs.workload import completed, load_workload  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", required=True, help='"module:ATTRIBUTE", e.g. examples.char_lm:WORKLOAD')
    parser.add_argument("--config", default="{}", help="a JSON file, or a JSON object (default: {})")
    add_run_arguments(parser, run_id_required=True)
    add_resume_arguments(parser)
    add_loop_arguments(parser)
    args = parser.parse_args(argv)
    workload = load_workload(args.workload)
    config = read_config(args.config)
    unsafe = sorted(set(args.override) - set(workload.safe_to_change))
    if unsafe:
        allowed = ", ".join(sorted(workload.safe_to_change))
        raise UserError(f"--override {', '.join(unsafe)}: " + (f"this workload lets a resumed run change only {allowed}"
                                                              if allowed else "this workload lets a resumed run change "
                                                                              "no field"))
    mode = launch_mode(args)
    overrides = {field: completed(workload, config).get(field) for field in args.override}
    return launch(args.workload, config, args.runs_dir, args.run_id, mode=mode, loop=loop_config_from_args(args),
                  overrides=overrides, force=args.force)


if __name__ == "__main__":
    run_main(main)
