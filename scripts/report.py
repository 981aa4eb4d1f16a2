#!/usr/bin/env python3
"""Curves and a results table for runs: what goes into a report.

    python scripts/report.py r32-paper r32-better --output report.png
    python scripts/report.py --all --runs-dir checkpoints
    python scripts/report.py --sweep hw --output hw.png   # a sweep's runs, the swept values as columns and legend

Prints a Markdown table (run, model, epochs, the best of the workload's primary metric, its final metrics,
wall time, training time, restarts, goodput, speed) and writes one PNG with the training loss, the primary metric and
the learning rate against the epoch, one line per run, each restart marked on its curves. Plotting
needs matplotlib (`pip install -e '.[plot]'`); without it the table is printed and the plot skipped.
Reads the runs' JSON files only (no torch, no lock).
"""
import argparse
import statistics
import sys
from pathlib import Path

from jobs.cli import run_main
from jobs.errors import UserError
from jobs.goodput.accounting import account
from jobs.readable import label, readable
from jobs.run.run_dir import DEFAULT_RUNS_DIR, RunDir, check_runs_dir, known_run_ids, unknown_run_message
from jobs.status.summary import in_workload_words
from jobs.status.table import rate, share
from jobs.sweep.sweep_file import read as read_sweep


def _hours(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{seconds / 60:.1f} min"


def run_figures(run: RunDir) -> dict:
    """What the table and the plot show of one run, from its metrics, events and status."""
    metrics = list({m["epoch"]: m for m in run.metrics()}.values())  # a redone epoch: its last record
    events = run.events()
    status = in_workload_words(run.read_status())
    config = run.read_config()
    primary = status.get("primary_metric")
    steps_per_epoch = metrics[-1]["step"] / metrics[-1]["epoch"] if metrics else None
    restarts = [e["step"] / steps_per_epoch for e in events if e["event"] == "resume" and steps_per_epoch]
    starts = [e["time"] for e in events if e["event"] == "start"]
    ends = [e["time"] for e in events if e["event"] in ("finish", "stop", "error", "diverged")]
    scores = [m[primary] for m in metrics if primary and m.get(primary) is not None]
    unit = status.get("unit") or "samples"
    rates = [m[f"{unit}_per_sec"] for m in metrics if m.get(f"{unit}_per_sec") is not None]
    return {
        "run": run.run_id, "model": status.get("model") or "-", "epochs": len(metrics),
        "epochs_planned": status.get("epochs", config.get("task", {}).get("epochs")),
        "primary_metric": primary, "best": max(scores, default=None), "final": status.get("final_metrics") or {},
        "wall_seconds": (max(ends) - min(starts)) if starts and ends else None,
        "train_seconds": sum(m.get("epoch_seconds", 0) for m in metrics) or None,
        "restarts": len(restarts), "restart_epochs": restarts,
        "goodput": (account(run.path) or {}).get("goodput"),  # kept steps' share of all its processes' time
        "unit": unit, "rate": statistics.median(rates) if rates else None,
        "metrics": metrics,
    }


def markdown_table(runs: list[dict], swept: list[str] = ()) -> str:
    """One row per run; the swept keys of a sweep; the metric columns in the workloads' words (the best of each
    primary metric, every final metric)."""
    primaries = list(dict.fromkeys(r["primary_metric"] for r in runs if r["primary_metric"]))
    finals = list(dict.fromkeys(key for r in runs for key in r["final"]))
    columns = ("run", *swept, "model", "epochs", *(f"best {label(m)}" for m in primaries), *map(label, finals),
               "wall time", "training time", "restarts", "goodput", "speed")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in runs:
        best = [readable(m, r["best"]) if m == r["primary_metric"] else "-" for m in primaries]
        final = [readable(key, r["final"].get(key)) for key in finals]
        cells = [r["run"], *(r["values"][key] for key in swept), r["model"], f"{r['epochs']}/{r['epochs_planned']}",
                 *best, *final,
                 _hours(r["wall_seconds"]), _hours(r["train_seconds"]), str(r["restarts"]), share(r["goodput"]),
                 rate(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], output: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on a compute node
    import matplotlib.pyplot as plt

    primaries = list(dict.fromkeys(r["primary_metric"] for r in runs if r["primary_metric"]))
    panels = ["train_loss", *primaries, "lr"]
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4.2), dpi=100)
    for r in runs:
        for ax, key in zip(axes, panels, strict=True):
            points = [(m["epoch"], m[key]) for m in r["metrics"] if m.get(key) is not None]
            if not points:
                continue
            epochs, values = zip(*points, strict=True)
            values = [100 * v for v in values] if key.endswith("accuracy") else list(values)
            (line,) = ax.plot(epochs, values, label=r.get("label") or r["run"])
            for restart in r["restart_epochs"]:  # where the run was resumed: a marker on its own curve
                nearest = min(range(len(epochs)), key=lambda i: abs(epochs[i] - restart))
                ax.plot(epochs[nearest], values[nearest], marker="v", color=line.get_color(), markersize=7)
    for ax, key in zip(axes, panels, strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(label(key).replace("train ", "training ") + (" (%)" if key.endswith("accuracy") else ""))
        ax.grid(alpha=0.3)
        if key == "lr":
            ax.set_yscale("log")
    axes[0].legend(title=f"{'run' if not runs[0].get('label') else 'sweep ' + runs[0]['sweep']} (▼ restart)",
                   fontsize=8)
    figure.tight_layout()
    figure.savefig(output)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    parser.add_argument("--all", action="store_true", help="every run under --runs-dir")
    parser.add_argument("--sweep", metavar="NAME", help="the runs of a sweep (scripts/submit.py --sweep)")
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help=f"root of all runs (default: {DEFAULT_RUNS_DIR}/)")
    parser.add_argument("--output", type=Path, default=Path("report.png"), help="the PNG (default: report.png)")
    args = parser.parse_args(argv)
    runs_dir = check_runs_dir(args.runs_dir)
    if [args.all, bool(args.run_ids), args.sweep is not None].count(True) != 1:
        raise UserError("name the runs to report (RUN_ID ...), or pass --all for every run, or --sweep NAME "
                        "for a sweep's, one of them")
    if args.output.suffix.lower() != ".png" or args.output.is_dir():
        raise UserError(f"--output: name a .png file, got {args.output}")
    if not args.output.parent.is_dir():
        raise UserError(f"--output: no directory {args.output.parent}")
    sweep, values = read_sweep(runs_dir, args.sweep) if args.sweep is not None else None, {}
    if sweep:
        values = {t["run_id"]: t["values"] for t in sweep["tasks"] if RunDir(runs_dir, t["run_id"]).exists()}
        if len(values) < len(sweep["tasks"]):
            print(f"not started yet, left out: {len(sweep['tasks']) - len(values)} of the sweep's "
                  f"{len(sweep['tasks'])} runs", file=sys.stderr)
    run_ids = list(values) if sweep else known_run_ids(runs_dir) if args.all else args.run_ids
    if not run_ids:
        raise UserError(f"no runs of sweep {args.sweep!r} have started yet" if sweep else f"no runs in {runs_dir}")
    runs = []
    for run_id in run_ids:
        run = RunDir(runs_dir, run_id)
        if not run.exists():
            raise UserError(unknown_run_message(runs_dir, run_id))
        runs.append(run_figures(run))
        if sweep:  # the swept values: columns of the table, the curves' legend
            runs[-1].update(values=values[run_id], sweep=sweep["name"],
                            label=" ".join(f"{k}={v}" for k, v in values[run_id].items()))
    print(markdown_table(runs, list(sweep["axes"]) if sweep else ()))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("no plot: matplotlib is not installed (pip install -e '.[plot]')", file=sys.stderr)
        return 0
    plot(runs, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
