#!/usr/bin/env python3
"""How long `status.py` takes over many runs (a script that prints figures, not a test).

    python scripts/bench_status.py               # 1,000 runs
    python scripts/bench_status.py --runs 200

Trains one small real run (CPU, seconds), copies its files (all but the checkpoints themselves, which
status.py never opens) into N run directories, then times whole `status.py` processes: the table and
`--json`, the median and the fastest of --repeat calls each, against the bare interpreter's start and
`import torch`. (Piped, as here, the table is plain text; on a terminal rich draws it, at about 1 ms a row.)
"""
import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobs.cli import positive_int, run_main

SCRIPTS = Path(__file__).resolve().parent


def seconds(command: list[str], repeat: int) -> tuple[float, float]:
    """(median, fastest) wall seconds of the whole process."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=positive_int, default=1000)
    parser.add_argument("--repeat", type=positive_int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        runs = Path(directory) / "runs"
        subprocess.run([sys.executable, str(SCRIPTS / "train.py"), "--synthetic", "256", "--size", "1", "--epochs",
                        "2", "--batch-size", "32", "--device", "cpu", "--run-id", "template", "--runs-dir",
                        str(runs)], check=True, stdout=subprocess.DEVNULL)
        template = runs / "template"
        for i in range(args.runs):
            shutil.copytree(template, runs / f"run-{i:05d}", ignore=shutil.ignore_patterns("*.pt"))
        shutil.rmtree(template)
        status = [sys.executable, str(SCRIPTS / "status.py"), "--runs-dir", str(runs)]
        figures = {"python -c pass": seconds([sys.executable, "-c", "pass"], args.repeat),
                   "python -c 'import torch'": seconds([sys.executable, "-c", "import torch"], args.repeat),
                   f"status.py, {args.runs:,} runs (table)": seconds(status, args.repeat),
                   f"status.py --json, {args.runs:,} runs": seconds(status + ["--json"], args.repeat)}
    print(f"{'':<40} {'median':>7} {'fastest':>8}")
    for what, (median, fastest) in figures.items():
        print(f"{what:<40} {median:6.2f} s {fastest:6.2f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
