"""Pieces shared by the command-line entry points: run, resume and loop flags, and the bad-input guard.
(The one shared module that imports packages: it sits on top, for scripts/.)"""
import argparse
import json
import sys
from pathlib import Path

from jobs.errors import UserError
from jobs.exit_codes import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from jobs.goodput.cadence import AUTO
from jobs.launch.plan import NEW, RESUME_IF_EXISTS
from jobs.run.run_dir import DEFAULT_RUNS_DIR
from jobs.train.config import LoopConfig


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def seconds_or_auto(text: str) -> float | str | None:
    """--checkpoint-every-seconds: "auto" (jobs.goodput.cadence), "off", or a positive number of seconds."""
    if text in (AUTO, "off"):
        return AUTO if text == AUTO else None
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be auto, off or a positive number of seconds, got {text}") from None


def non_negative_float(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser, run_id_required: bool) -> None:
    parser.add_argument("--run-id", required=run_id_required,
                        help="name of the run directory (letters, digits, . _ -)")
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help=f"root of all runs (default: {DEFAULT_RUNS_DIR}/)")
    parser.add_argument("--force", action="store_true", help="break the run's lock even if its holder may live")


def add_resume_arguments(parser: argparse.ArgumentParser, safe_to_change: frozenset | None = None) -> None:
    """--resume-if-exists and --override FIELD (choices: the workload's safe_to_change, where known here)."""
    parser.add_argument("--resume-if-exists", action="store_true",
                        help="continue the run if it exists, start it otherwise (what a requeued job needs)")
    parser.add_argument("--override", action="append", default=[],
                        choices=sorted(safe_to_change) if safe_to_change is not None else None,
                        help="allow this config field to differ from the run being resumed (if the workload allows)")


def launch_mode(args: argparse.Namespace) -> str:
    """NEW or RESUME_IF_EXISTS, from the resume flags; --override needs --resume-if-exists."""
    if args.override and not args.resume_if_exists:
        raise UserError("--override only applies with --resume-if-exists (or use scripts/resume.py)")
    return RESUME_IF_EXISTS if args.resume_if_exists else NEW


def add_loop_arguments(parser: argparse.ArgumentParser, defaults: LoopConfig | None = None) -> None:
    d = defaults or LoopConfig()
    g = parser.add_argument_group("checkpoints and evaluation")
    g.add_argument("--checkpoint-every-steps", type=positive_int, default=d.checkpoint_every_steps,
                   help="also save every N optimizer steps (default: off)")
    g.add_argument("--checkpoint-every-seconds", type=seconds_or_auto, default=d.checkpoint_every_seconds,
                   help=f"also save every N seconds, or auto: an interval chosen from the measured cost of a save "
                        f"and the run's rate of deaths without warning (docs/runs-and-faults.md), or off "
                        f"(default {d.checkpoint_every_seconds})")
    g.add_argument("--checkpoint-every-epochs", type=positive_int, default=d.checkpoint_every_epochs,
                   help=f"save at every N-th epoch end (default {d.checkpoint_every_epochs}: every one)")
    g.add_argument("--eval-every-epochs", type=positive_int, default=d.eval_every_epochs)
    g.add_argument("--keep-last", type=positive_int, default=d.keep_last, help="checkpoints kept (plus best and final)")
    g.add_argument("--keep-every-epochs", type=positive_int, default=d.keep_every_epochs,
                   help="also keep every N-th epoch's checkpoint")
    g.add_argument("--max-requeues", type=positive_int, default=d.max_requeues,
                   help="SLURM self-requeues before the job gives up")
    g.add_argument("--max-crash-retries", type=non_negative_int, default=d.max_crash_retries,
                   help=f"under the batch scripts: requeues after the trainer died abnormally (default "
                        f"{d.max_crash_retries})")
    g.add_argument("--allow-nonfinite", action="store_true", default=not d.stop_on_nonfinite,
                   help="train on when the loss is NaN or infinite (default: stop the run as diverged, exit 4)")
    g.add_argument("--tensorboard", action="store_true", default=d.tensorboard,
                   help="write the run's scalars for TensorBoard under <run>/tensorboard (pip install -e "
                        "'.[tensorboard]'); `tensorboard --logdir checkpoints` shows every run")
    g.add_argument("--hang-timeout-seconds", type=non_negative_float, default=d.hang_timeout_seconds,
                   help=f"no training step for this long (first step and evaluations included): the trainer is "
                        f"hung, dumps its stacks and exits 7, which the batch job retries (default "
                        f"{d.hang_timeout_seconds:g}; 0: off, e.g. to sit in a debugger)")


def loop_config_from_args(args: argparse.Namespace) -> LoopConfig:
    return LoopConfig(checkpoint_every_steps=args.checkpoint_every_steps,
                      checkpoint_every_seconds=args.checkpoint_every_seconds,
                      checkpoint_every_epochs=args.checkpoint_every_epochs,
                      eval_every_epochs=args.eval_every_epochs, keep_last=args.keep_last,
                      keep_every_epochs=args.keep_every_epochs, max_requeues=args.max_requeues,
                      max_crash_retries=args.max_crash_retries, stop_on_nonfinite=not args.allow_nonfinite,
                      tensorboard=args.tensorboard, hang_timeout_seconds=args.hang_timeout_seconds)


def read_config(text: str) -> dict:
    """A JSON object given inline, or the path of a file holding one."""
    source = text if text.lstrip().startswith("{") else None
    if source is None:
        try:
            source = Path(text).read_text()
        except OSError as e:
            raise UserError(f"--config: cannot read {text} ({e.strerror})") from None
    try:
        config = json.loads(source)
    except json.JSONDecodeError as e:
        raise UserError(f"--config: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise UserError("--config: a JSON object is needed")
    return config


def run_main(main) -> None:
    """Run `main()` and exit with its code; bad input is one line on stderr, never a traceback."""
    try:
        code = main()
    except UserError as e:
        if not e.quiet:
            print(f"error: {e}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: stopped at once, without a final checkpoint", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)
