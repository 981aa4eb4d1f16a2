#!/usr/bin/env python3
"""Evaluate a run's checkpoints: accuracy, loss, per-class accuracy and the confusion matrix.

    python scripts/evaluate.py --run-id demo                         # the final (or newest) checkpoint, test set
    python scripts/evaluate.py --run-id demo --checkpoint all --split val   # every kept checkpoint, in order
    python scripts/evaluate.py --run-id demo --checkpoint best --json

It only reads: no lock, nothing written into the run, so it may run while the run trains. The network
is rebuilt from the run's frozen config, on the device asked for, in fp32 (whatever the run trained on:
the checkpoints hold the plain module's weights). A checkpoint that fails its checksum is reported and
skipped.
"""
import argparse
import io
import json
import sys

import torch
from rich.console import Console
from rich.table import Table

from jobs.checkpoint.manifest import committed_entries, verified_bytes
from jobs.cli import run_main
from jobs.errors import UserError
from jobs.readable import readable
from jobs.run.run_dir import DEFAULT_RUNS_DIR, RunDir, check_runs_dir, unknown_run_message
from resnet.config import resolve_device
from resnet.data import CIFAR10_CLASSES
from resnet.task import WORKLOAD, ResNetTask

# what evaluation does not need from the training config: the fast path's settings
EVAL_SETTINGS = {"fast": False, "compile": False, "bf16": False, "channels_last": False, "deterministic": False}


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


def evaluate(task: ResNetTask, run: RunDir, entry: dict, split: str) -> dict:
    data = verified_bytes(run.path, entry)  # ValueError if it fails its checksum
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    task.model.load_state_dict(state["task"]["model"])
    confusion, loss = task.confusion(task.val_set if split == "val" else task.test_set)
    per_class = (confusion.diagonal().double() / confusion.sum(1).clamp(min=1).double()).tolist()
    return {"step": entry["step"], "epoch": entry["epoch"], "split": split,
            "accuracy": confusion.trace().item() / confusion.sum().item(), "loss": loss,
            "per_class_accuracy": per_class, "confusion_matrix": confusion.tolist(), "file": entry["file"]}


def show(console: Console, results: list[dict], single: bool, names: list[str]) -> None:
    table = Table(title=f"{len(results)} checkpoint(s)", header_style="bold")
    for column in ("step", "epoch", "split", "accuracy", "loss"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(str(r["step"]), f"{r['epoch']:g}", r["split"], readable("accuracy", r["accuracy"]),
                      readable("loss", r["loss"]))
    console.print(table)
    if not single:
        return
    (r,) = results
    per_class = Table(title="per-class accuracy", header_style="bold")
    for name in names:
        per_class.add_column(name[:5], justify="right")  # ten columns fit a terminal
    per_class.add_row(*(f"{100 * a:.1f}%" for a in r["per_class_accuracy"]))
    console.print(per_class)
    matrix = Table(title="confusion matrix (rows: true class, columns: predicted)", header_style="bold")
    matrix.add_column("")
    for name in names:
        matrix.add_column(name[:5], justify="right")
    for name, row in zip(names, r["confusion_matrix"], strict=True):
        matrix.add_row(name, *(str(v) for v in row))
    console.print(matrix)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help=f"root of all runs (default: {DEFAULT_RUNS_DIR}/)")
    parser.add_argument("--checkpoint", type=checkpoint_arg,
                        help="latest, best, final, all, or a step (default: final, else latest)")
    parser.add_argument("--split", choices=["val", "test"], default="test")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per checkpoint")
    args = parser.parse_args(argv)
    run = RunDir(check_runs_dir(args.runs_dir), args.run_id)
    if not run.exists():
        raise UserError(unknown_run_message(args.runs_dir, args.run_id))
    entries = committed_entries(run.path)
    which = args.checkpoint or ("final" if any(e.get("final") for e in entries) else "latest")
    chosen = select(entries, which)
    config = WORKLOAD.complete(run.read_config()["task"])
    task = WORKLOAD.build({**config, **EVAL_SETTINGS, "device": resolve_device(args.device)})
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
        classes = len(results[0]["per_class_accuracy"])
        names = CIFAR10_CLASSES if config["synthetic"] is None else [str(i) for i in range(classes)]
        show(Console(), results, single=len(chosen) == 1, names=list(names))
    return 0


if __name__ == "__main__":
    run_main(main)
