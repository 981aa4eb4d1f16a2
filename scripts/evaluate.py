#!/usr/bin/env python3
"""Evaluate a run's checkpoints with the run's own workload: its metrics on the held-out or the test split.

    python scripts/evaluate.py --run-id demo                         # the final (or newest) checkpoint, test set
    python scripts/evaluate.py --run-id demo --checkpoint all --split val   # every kept checkpoint, in order
    python scripts/evaluate.py --run-id demo --checkpoint best --json

It only reads: no lock, nothing written into the run, so it may run while the run trains. The task is rebuilt
from the run's frozen config (the workload's `for_evaluation(config, device)` may adjust it: the ResNet evaluates
on the device asked for, in fp32) and each checkpoint's state loaded into it. It reports the task's
`score(split)` where it has one (the ResNet: accuracy, loss, per class, the confusion matrix), else its
`evaluate()` (--split val) or `final_metrics()` (--split test). A checkpoint that fails its checksum is reported
and skipped.
"""
import argparse
import io
import json
import sys

import torch

from jobs.checkpoint.manifest import committed_entries, verified_bytes
from jobs.cli import run_main
from jobs.errors import UserError
from jobs.readable import readable
from jobs.run.run_dir import DEFAULT_RUNS_DIR, RunDir, check_runs_dir, unknown_run_message
from jobs.status.table import plain_table
from jobs.train.contract import plain_metrics
from jobs.workload import completed, load_workload


def select(entries: list[dict], which: str) -> list[dict]:
    if not entries:
        raise UserError("the run has no committed checkpoint yet")
    if which == "all":
        return entries
    if which == "latest":
        return entries[-1:]
    if which == "final":
        final = [e for e in entries if e.get("final")]
        if not final:
            raise UserError(f"the run has no final checkpoint yet (newest: step {entries[-1]['step']}); "
                            "use --checkpoint latest")
        return final[-1:]
    if which == "best":
        scored = [e for e in entries if e.get("metric") is not None]
        if not scored:
            raise UserError("no kept checkpoint has a validation metric")
        return [max(scored, key=lambda e: e["metric"])]
    step = int(which)
    chosen = [e for e in entries if e["step"] == step]
    if not chosen:
        raise UserError(f"no kept checkpoint at step {step}; kept: {', '.join(str(e['step']) for e in entries)}")
    return chosen


def checkpoint_arg(text: str) -> str:
    if text in ("latest", "best", "final", "all") or text.isdigit():
        return text
    raise argparse.ArgumentTypeError(f"must be latest, best, final, all or a step number, got {text!r}")


def score(task, split: str) -> dict:
    """The task's figures on `split`: its score() where it has one, else what the loop would log."""
    if hasattr(task, "score"):
        return task.score(split)
    return plain_metrics(task.evaluate(), "evaluate()") if split == "val" else \
        plain_metrics(task.final_metrics(), "final_metrics()")


def evaluate(task, run: RunDir, entry: dict, split: str) -> dict:
    data = verified_bytes(run.path, entry)  # ValueError if it fails its checksum
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    task.load_state_dict(state["task"])
    return {"step": entry["step"], "epoch": entry["epoch"], "split": split, **score(task, split), "file": entry["file"]}


def tables(results: list[dict], class_names: list[str] | None) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table to show: one row per checkpoint; for one checkpoint with per-class
    figures, the per-class accuracy and the confusion matrix too."""
    keys = [k for k, v in results[0].items() if k not in ("step", "epoch", "split", "file") and not isinstance(v, list)]
    out = [(f"{len(results)} checkpoint(s)", ["step", "epoch", "split", *keys],
            [[str(r["step"]), f"{r['epoch']:g}", r["split"], *(readable(k, r.get(k)) for k in keys)] for r in results])]
    (first, *others) = results
    if others or "per_class_accuracy" not in first:
        return out
    names = class_names or [str(i) for i in range(len(first["per_class_accuracy"]))]
    short = [name[:5] for name in names]  # ten columns fit a terminal
    out.append(("per-class accuracy", short, [[f"{100 * a:.1f}%" for a in first["per_class_accuracy"]]]))
    if "confusion_matrix" in first:
        out.append(("confusion matrix (rows: true class, columns: predicted)", ["", *short],
                    [[name, *(str(v) for v in row)] for name, row in zip(names, first["confusion_matrix"],
                                                                         strict=True)]))
    return out


def show(results: list[dict], class_names: list[str] | None) -> None:
    """Rich tables on a terminal; piped, plain aligned text that nothing cuts off."""
    if not sys.stdout.isatty():
        for title, header, rows in tables(results, class_names):
            print(f"{title}\n{plain_table(header, rows, right=set(header) - {'split', ''})}\n")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for title, header, rows in tables(results, class_names):
        table = Table(title=title, header_style="bold")
        for column in header:
            table.add_column(column, justify="left" if column in ("split", "") else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help=f"root of all runs (default: {DEFAULT_RUNS_DIR}/)")
    parser.add_argument("--checkpoint", type=checkpoint_arg,
                        help="latest, best, final, all, or a step (default: final, else latest)")
    parser.add_argument("--split", choices=["val", "test"], default="test")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where to evaluate, for workloads that let evaluation choose (the ResNet does)")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per checkpoint")
    args = parser.parse_args(argv)
    run = RunDir(check_runs_dir(args.runs_dir), args.run_id)
    if not run.exists():
        raise UserError(unknown_run_message(args.runs_dir, args.run_id))
    entries = committed_entries(run.path)
    which = args.checkpoint or ("final" if any(e.get("final") for e in entries) else "latest")
    chosen = select(entries, which)
    frozen = run.read_config()
    workload = load_workload(frozen["workload"])
    config = completed(workload, frozen["task"])
    for_evaluation = getattr(workload, "for_evaluation", None)
    task = workload.build(for_evaluation(config, args.device) if for_evaluation else config)
    results = []
    for entry in chosen:
        try:
            results.append(evaluate(task, run, entry, args.split))
        except ValueError as e:
            print(f"warning: skipped the checkpoint of step {entry['step']}: {e}", file=sys.stderr)
    if not results:
        raise UserError("no checkpoint could be evaluated")
    if args.json:
        print(json.dumps(results))
    else:
        show(results, getattr(task, "class_names", None))
    return 0


if __name__ == "__main__":
    run_main(main)
