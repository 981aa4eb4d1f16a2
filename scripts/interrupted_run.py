#!/usr/bin/env python3
"""Train a run to its end through two interruptions, as a cluster would, and print its figures.

    python scripts/interrupted_run.py --term-at 40 --kill-at 100 -- --data-dir data --preset better --fast --run-id r32

Starts `scripts/train.py ARGS`. Once the run has finished epoch `--term-at` it sends SIGTERM (the run saves
at its step boundary and exits 75) and continues it with `scripts/resume.py --local`; once it has finished
epoch `--kill-at` it sends SIGKILL (no save: the steps since the last checkpoint are lost) and continues it
again. Then it prints the held-out accuracy every `--every` epochs, the final test accuracy, the wall and
training time, the time per epoch, and each start's time to its first step (from the run's event log).
Run again on a run that `--deadline` stopped, it continues it with resume.py, sending whichever of the two
signals is still to come; the figures are the whole run's, the wall time this invocation's.
"""
import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from jobs.cli import positive_int, run_main
from jobs.errors import UserError
from jobs.exit_codes import EXIT_STOPPED
from jobs.run.files import read_json_lines
from jobs.supervise.crash import run_of

SCRIPTS = Path(__file__).resolve().parent


def epochs_done(run) -> int:
    return len(read_json_lines(run.metrics_file))


def train_until(command: list[str], run, epoch: int | None, sig, log, deadline: float) -> tuple[int, float, bool]:
    """Run `command` until the run has finished `epoch` epochs, then send `sig`; past `deadline` (monotonic)
    send SIGTERM instead. (exit code, seconds, whether the deadline stopped it)."""
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    late = False
    while proc.poll() is None:
        if epoch is not None and epochs_done(run) >= epoch:
            proc.send_signal(sig)
            break
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGTERM)  # a clean stop: the run continues later with resume.py
            late = True
            break
        time.sleep(0.05)
    return proc.wait(), time.monotonic() - started, late


def summary(run, every: int) -> dict:
    metrics = read_json_lines(run.metrics_file)
    events = read_json_lines(run.events_file)
    status = json.loads(run.status_file.read_text())
    # the held-out accuracy's key (val_accuracy), from the epochs that were evaluated (--eval-every-epochs)
    held_out = sorted({k for m in metrics for k in m if k.endswith("accuracy") and k != "train_accuracy"})[:1]
    # the per-epoch figures of a resumed run: the last record of each epoch (a lost epoch is trained twice)
    metrics = list({m["epoch"]: m for m in metrics}.values())
    return {
        "run_id": run.run_id, "model": status.get("model"), "epochs": len(metrics), "state": status.get("state"),
        "held_out_every": {m["epoch"]: m.get(held_out[0]) if held_out else None
                           for m in metrics if m["epoch"] % every == 0 or m is metrics[-1]
                           if held_out and m.get(held_out[0]) is not None},
        "test_accuracy": (status.get("final_metrics") or {}).get("test_accuracy"),
        "training_seconds": sum(m["epoch_seconds"] for m in metrics),
        "epoch_seconds_median": statistics.median(m["epoch_seconds"] for m in metrics),
        "images_per_sec_median": statistics.median(m["images_per_sec"] for m in metrics),
        "first_steps": [{k: e[k] for k in e if k not in ("event", "host", "pid", "slurm_job_id", "time")}
                        for e in events if e["event"] == "first-step"],
        "stops": [(e["event"], e["step"], e.get("signal")) for e in events if e["event"] in ("stop", "resume")],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--term-at", type=positive_int, required=True, help="epoch after which to send SIGTERM")
    parser.add_argument("--kill-at", type=positive_int, required=True, help="epoch after which to send SIGKILL")
    parser.add_argument("--every", type=positive_int, default=20, help="report the held-out accuracy every N epochs")
    parser.add_argument("--log", type=Path, help="the trainers' output (default: stdout)")
    parser.add_argument("--deadline", type=positive_int,
                        help="seconds: stop the run cleanly (SIGTERM) if it has not finished by then")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then scripts/train.py's flags")
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    run = run_of(["train.py", *train_args])
    if run is None:
        raise UserError("give the run's --run-id among train.py's flags (after --)")
    if not args.term_at < args.kill_at:
        raise UserError(f"--term-at ({args.term_at}) must come before --kill-at ({args.kill_at})")
    resume = [sys.executable, str(SCRIPTS / "resume.py"), "--run-id", run.run_id, "--runs-dir",
              str(run.path.parent), "--local"]
    log = open(args.log, "a") if args.log else None
    started = time.monotonic()
    deadline = started + args.deadline if args.deadline else float("inf")
    legs = [([sys.executable, str(SCRIPTS / "train.py"), *train_args], args.term_at, signal.SIGTERM, 75),
            (resume, args.kill_at, signal.SIGKILL, -signal.SIGKILL),
            (resume, None, None, 0)]
    done = epochs_done(run) if run.metrics_file.exists() else 0
    if done:  # a run an earlier deadline stopped: continue it, with the interruptions still to come
        legs = [(resume, epoch, sig, expected) for _, epoch, sig, expected in legs if epoch is None or epoch > done]
    for command, epoch, sig, expected in legs:
        if time.monotonic() > deadline:
            break  # stopped between two legs: resume continues it
        code, seconds, late = train_until(command, run, epoch, sig, log, deadline)
        print(f"{Path(command[1]).name}: exit {code} after {seconds:.1f} s"
              + (" (deadline: SIGTERM)" if late else f" ({sig.name} after epoch {epoch})" if sig else ""),
              file=sys.stderr, flush=True)
        if late and code in (EXIT_STOPPED, -signal.SIGTERM):  # saved at its step, or stopped before it began
            break
        if code != expected:
            raise UserError(f"{Path(command[1]).name} ended with {code}, expected {expected}; see the log")
    figures = {**summary(run, args.every), "wall_seconds": time.monotonic() - started}
    code = 0 if figures["state"] == "completed" else EXIT_STOPPED  # stopped by the deadline: resume continues it
    if args.json:
        print(json.dumps(figures))
        return code
    print(f"run {figures['run_id']} ({figures['model']}), {figures['epochs']} epochs, {figures['state']}")
    for epoch, accuracy in figures["held_out_every"].items():
        print(f"  epoch {epoch:>4}: held-out accuracy {100 * accuracy:.2f}%")
    test = "-" if figures["test_accuracy"] is None else f"{100 * figures['test_accuracy']:.2f}%"
    print(f"test accuracy {test}; wall {figures['wall_seconds']:.0f} s, training "
          f"{figures['training_seconds']:.0f} s, {figures['epoch_seconds_median']:.2f} s per epoch "
          f"({figures['images_per_sec_median']:,.0f} img/s)")
    for start in figures["first_steps"]:
        phases = ", ".join(f"{k} {start[k]:.1f} s" for k in ("imports", "build", "restore", "first_step"))
        parts = ", ".join(f"{k} {v:.1f}" for k, v in start.get("task_parts", {}).items())
        print(f"  start from step {start['step']}: first step done {start['seconds']:.1f} s after the process "
              f"started ({phases}; the task's parts: {parts or '-'})")
    return code


if __name__ == "__main__":
    run_main(main)
