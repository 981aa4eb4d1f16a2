#!/usr/bin/env python3
"""Goodput under one seeded schedule of SIGKILLs, for four checkpoint policies side by side.

    python scripts/bench_goodput.py                      # ResNet-8, synthetic data, ~3 min of training each
    python scripts/bench_goodput.py --epochs 4 --kills 1 --min-seconds 8 --max-seconds 8   # a quick look

Each policy trains the same run from scratch under the supervisor, as outside SLURM (`python -m jobs.supervise
-- python scripts/train.py ...`); its trainer is SIGKILLed after each interval of the schedule (seconds from
the previous kill, drawn in [--min-seconds, --max-seconds]) and retried in place by the supervisor, in its
warm standby (jobs.supervise.standby), then left to finish. Where the supervisor does not retry (no checkpoint
since that trainer started), it is started again. --cold starts every trainer as a new process instead, as
`resume.py` would (the supervisor's standby is what it then lacks).

The policies: checkpoints every 5 epochs only (the seed's habit), at epoch ends only (a common framework
default), every 600 s with epoch ends (the fixed default before auto), and auto (jobs.goodput.cadence). A last
run of auto without kills gives what its saves cost.

Printed per policy: goodput and badput by cause (the run's own accounting, jobs.goodput.accounting), and
the limit: a perfect toolkit that keeps every step and pays per start only the interpreter's start and
`import torch`, measured here; "+optim" adds what torch's first optimizer step costs on top (it imports
torch._dynamo), which no training with a torch optimizer avoids.
"""
import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobs.checkpoint.manifest import committed_entries
from jobs.goodput.accounting import PARTS, account
from jobs.run.files import read_json_lines

ROOT = Path(__file__).resolve().parent.parent
POLICIES = {
    "every-5-epochs": ["--checkpoint-every-epochs", "5", "--checkpoint-every-seconds", "off"],
    "epoch-ends": ["--checkpoint-every-seconds", "off"],
    "fixed-600s": ["--checkpoint-every-seconds", "600"],
    "auto": ["--checkpoint-every-seconds", "auto"],
}
TORCH_OPTIMIZER_STEP = ("import torch; m = torch.nn.Linear(2, 2); o = torch.optim.SGD(m.parameters(), lr=0.1); "
                        "m(torch.ones(1, 2)).sum().backward(); o.step()")


def seconds_to_run(code: str, repeat: int = 3) -> float:
    """The median wall time of `python -c code` in a fresh interpreter."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def train_under_kills(name: str, flags: list[str], schedule: list[float], args, runs_dir: Path) -> dict:
    """Train run `name` with `flags`, its trainer SIGKILLed after each interval of `schedule`; its accounting."""
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "--synthetic", str(args.synthetic),
               "--size", str(args.size), "--epochs", str(args.epochs), "--run-id", name,
               "--runs-dir", str(runs_dir), "--resume-if-exists", "--max-crash-retries", "1000", *flags]
    if not args.cold:
        command = [sys.executable, "-m", "jobs.supervise", "--", *command]
    log = open(runs_dir / f"{name}.log", "ab")
    process, kills = None, list(schedule)
    while True:
        if process is None or process.poll() is not None:
            if process is not None and process.returncode == 0:
                print(f"{name}: finished after {len(schedule) - len(kills)} kills", flush=True)
                return account(runs_dir / name)
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=_outside_slurm())
        if not kills:
            process.wait()
            continue
        deadline = time.monotonic() + kills[0]
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        if process.poll() is None:  # not finished, nor given up: kill its trainer
            _kill_trainer(process.pid if args.cold else _trainer_of(runs_dir / name))
            print(f"{name}: trainer SIGKILLed after {kills.pop(0):.1f} s", flush=True)


def _outside_slurm() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


def _trainer_of(run_path: Path) -> int:
    """The supervisor's trainer: the pid its status file names (written as each trainer starts)."""
    return json.loads((run_path / "status.json").read_text())["pid"]


def _kill_trainer(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--synthetic", type=int, default=2560, help="synthetic images (default 2560)")
    parser.add_argument("--size", type=int, default=1, help="blocks per stack (default 1: ResNet-8)")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--min-seconds", type=float, default=25.0)
    parser.add_argument("--max-seconds", type=float, default=45.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated, of " + ", ".join(POLICIES))
    parser.add_argument("--runs-dir", type=Path, help="default: a temporary directory")
    parser.add_argument("--cold", action="store_true", help="every start a new process, without the supervisor")
    args = parser.parse_args(argv)
    policies = args.policies.split(",")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        parser.error(f"unknown policy {', '.join(unknown)}; choose from {', '.join(POLICIES)}")
    rng = random.Random(args.seed)
    schedule = [rng.uniform(args.min_seconds, args.max_seconds) for _ in range(args.kills)]
    print("kill schedule (s): " + ", ".join(f"{s:.1f}" for s in schedule), flush=True)
    startup = seconds_to_run("import torch")
    optimizer = seconds_to_run(TORCH_OPTIMIZER_STEP) - startup
    print(f"per start: interpreter + import torch {startup:.2f} s; torch's first optimizer step {optimizer:.2f} s",
          flush=True)
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="bench-goodput-"))
    runs_dir.mkdir(parents=True, exist_ok=True)
    results = {p: train_under_kills(p, POLICIES[p], schedule, args, runs_dir) for p in policies}
    quiet = train_under_kills("auto-no-kill", POLICIES["auto"], [], args, runs_dir)

    header = ["policy", "goodput", "limit", "of limit", "+optim limit", "of it", *PARTS, "deaths", "recomputed steps"]
    rows = []
    for policy, result in results.items():
        parts, starts = result["parts"], result["starts"]
        useful = parts["kept"] + parts["evaluation"]  # a perfect toolkit evaluates what the run evaluates
        limit = parts["kept"] / (useful + starts * startup)
        limit_optim = parts["kept"] / (useful + starts * (startup + optimizer))
        rows.append([policy, f"{result['goodput']:.1%}", f"{limit:.1%}", f"{result['goodput'] / limit:.1%}",
                     f"{limit_optim:.1%}", f"{result['goodput'] / limit_optim:.1%}",
                     *(f"{parts[p]:.1f} s" for p in PARTS), str(result["deaths"]), str(result["recomputed_steps"])])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    parts = quiet["parts"]
    train = parts["kept"] + parts["recomputed"]
    writes = sum(e.get("seconds", 0) for e in _events(runs_dir / "auto-no-kill", "checkpoint"))
    print(f"auto without kills: {_events_count(runs_dir / 'auto-no-kill')} saves; training waited "
          f"{parts['checkpoint']:.2f} s ({parts['checkpoint'] / train:.2%} of {train:.1f} s of steps); their writes "
          f"took {writes:.2f} s in the background ({writes / train:.2%}); goodput {quiet['goodput']:.1%}")
    digests = {committed_entries(runs_dir / name)[-1]["model_digest"] for name in [*results, "auto-no-kill"]}
    print("final weights: " + (f"the same in every run (model_digest {digests.pop()[:12]}…)" if len(digests) == 1
                               else f"{len(digests)} different model_digests: a resume was not exact"))
    print(f"runs in {runs_dir}")
    return 0


def _events(run_path: Path, kind: str) -> list[dict]:
    return [e for e in read_json_lines(run_path / "events.jsonl") if e.get("event") == kind]


def _events_count(run_path: Path) -> int:
    return len(_events(run_path, "checkpoint"))


if __name__ == "__main__":
    sys.exit(main())
