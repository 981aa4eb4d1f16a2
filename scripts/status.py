#!/usr/bin/env python3
"""Where every run stands.

    python scripts/status.py                 # a table of all runs under checkpoints/
    python scripts/status.py --run-id ID     # one run: fields, recent events, per-epoch metrics
    python scripts/status.py --watch         # refresh live
    python scripts/status.py --json          # machine-readable
    python scripts/status.py --sweep NAME    # a sweep's runs (scripts/submit.py --sweep), the swept values as columns
"""
import argparse
import json
import sys
import time
from pathlib import Path

from jobs.cli import positive_float, run_main
from jobs.errors import UserError
from jobs.run.run_dir import DEFAULT_RUNS_DIR, RunDir, check_runs_dir, unknown_run_message, validate_run_id
from jobs.status.detail import plain_run_detail
from jobs.status.summary import collect
from jobs.status.sweep import sweep_runs, sweep_table
from jobs.status.table import plain_runs_table  # no rich: the piped table stays fast
from jobs.sweep.sweep_file import read as read_sweep


def render(args):
    from jobs.status.view import run_detail, runs_table  # rich: only for the terminal's tables

    if args.sweep:
        from rich.text import Text

        sweep = read_sweep(args.runs_dir, args.sweep)
        return Text(sweep_table(sweep, sweep_runs(args.runs_dir, sweep)), no_wrap=True, overflow="crop")
    runs = collect(args.runs_dir, [args.run_id] if args.run_id else None)
    if args.run_id:
        run = RunDir(args.runs_dir, args.run_id)
        return run_detail(runs[0], run.events(), run.metrics())
    return runs_table(runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, default=Path(DEFAULT_RUNS_DIR))
    parser.add_argument("--run-id")
    parser.add_argument("--sweep", metavar="NAME", help="the runs of one sweep (scripts/submit.py --sweep)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    parser.add_argument("--interval", type=positive_float, default=2.0, help="seconds between refreshes")
    args = parser.parse_args(argv)
    check_runs_dir(args.runs_dir)
    if not args.runs_dir.is_dir():
        raise UserError(f"runs dir {args.runs_dir} does not exist")
    if args.sweep is not None and args.run_id is not None:
        raise UserError("--sweep and --run-id exclude each other")
    if args.run_id is not None:  # an explicit --run-id "" is a bad id, not "every run"
        validate_run_id(args.run_id)
        if not RunDir(args.runs_dir, args.run_id).exists():
            raise UserError(unknown_run_message(args.runs_dir, args.run_id))
    if args.sweep is not None:
        sweep = read_sweep(args.runs_dir, validate_run_id(args.sweep))
        if args.json:
            runs = sweep_runs(args.runs_dir, sweep)
            print(json.dumps({key: sweep.get(key) for key in ("name", "axes", "array_job_id")} | {"runs": runs}))
            return 0
    if args.json:
        runs = collect(args.runs_dir, [args.run_id] if args.run_id else None)
        if args.run_id:
            run = RunDir(args.runs_dir, args.run_id)
            runs[0].update(events=run.events(), metrics=run.metrics())
        # one run: indented for reading; many: compact (json's C encoder; indenting is pure Python, 3x slower)
        print(json.dumps(runs[0], indent=1) if args.run_id else json.dumps(runs))
        return 0
    # piped or under sbatch, and a sweep's table anywhere: plain aligned text
    if not args.watch and (not sys.stdout.isatty() or args.sweep):
        if args.sweep:
            print(sweep_table(sweep, sweep_runs(args.runs_dir, sweep)))
        elif args.run_id:
            run = RunDir(args.runs_dir, args.run_id)
            print(plain_run_detail(collect(args.runs_dir, [args.run_id])[0], run.events(), run.metrics()))
        else:
            print(plain_runs_table(collect(args.runs_dir)))
        return 0
    from rich.console import Console
    from rich.live import Live

    # --watch piped: there is no terminal width, and rich would squeeze the table into 80 columns
    console = Console(width=None if sys.stdout.isatty() else 200)
    if not args.watch:
        console.print(render(args))
        return 0
    try:
        with Live(render(args), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(args.interval)
                live.update(render(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    run_main(main)
