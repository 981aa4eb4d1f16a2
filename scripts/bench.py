#!/usr/bin/env python3
"""Throughput and checkpoint cost of a ResNet on this machine (a script that prints figures, not a test).

    python scripts/bench.py                                  # ResNet-32, batch 128, the GPU if there is one
    python scripts/bench.py --device cpu --steps 10 --json   # one JSON object instead of the table

With the same model and batch size, it measures img/s of
  seed-style  the seed's pipeline: per-image numpy pad, crop, flip and normalize on the CPU, then the step;
  eager       this project's default: batched augmentation on the device, fp32 (`train.py`);
  fast        `train.py --fast`: bf16, channels_last, the whole step as one CUDA graph (a GPU only; null
              on a CPU), and `--fast --compile`: the same graph of inductor's fused kernels;
warm-up, capture and compilation excluded (and reported apart: compile_s is the cold compilation in a
fresh cache); then the checkpoint stall per save, a synchronous save against the background writer's
(and what the stall is made of), and the default cadence's checkpoint cost as a percentage of training
time, measured end to end.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from jobs.checkpoint import layout
from jobs.checkpoint.host_copy import snapshot
from jobs.checkpoint.rng import capture_rng
from jobs.checkpoint.store import CheckpointStore
from jobs.checkpoint.writer import BackgroundWriter
from jobs.cli import positive_int, run_main
from jobs.goodput import cadence
from jobs.train.metrics import LoopState
from resnet.config import DEFAULTS, resolve_device
from resnet.task import ResNetTask

WARMUP = 5  # steps before timing: cuDNN's autotuning, the allocator, the CUDA graphs' recording
PAPER_EPOCH_IMAGES = 45_000


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_task(args, device: str, fast: bool, compile: bool = False) -> ResNetTask:
    images = args.batch_size * (2 * args.steps + 2 * WARMUP)  # one epoch holds every timed step
    return ResNetTask({**DEFAULTS, "block": args.block, "size": args.size, "batch_size": args.batch_size,
                       "epochs": 1, "synthetic": int(images / 0.9) + 1, "device": device, "fast": fast,
                       "compile": compile, "bf16": fast, "channels_last": fast})


def measure_fast(args, device: str, compile: bool) -> tuple[ResNetTask, float, float]:
    """(task, img/s, seconds of warm-up beyond the steady rate: capture, autotuning, compilation)."""
    task = make_task(args, device, fast=True, compile=compile)
    warmup_s = WARMUP / steps_per_second(task.train_step, WARMUP, device)
    rate = steps_per_second(task.train_step, args.steps, device)
    return task, args.batch_size * rate, warmup_s - WARMUP / rate


def steps_per_second(step, steps: int, device: str) -> float:
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps / (time.perf_counter() - started)


def seed_style_step(task: ResNetTask, rng: np.random.Generator):
    """The seed's pipeline: each image augmented on its own in numpy, on the CPU, then sent over."""
    images, labels = task.train_images.cpu().numpy(), task.train_labels.cpu()
    mean = task.mean.cpu().numpy()[:, None, None]
    std = task.std.cpu().numpy()[:, None, None]
    batch = task.batch_size

    def step():
        index = rng.integers(0, len(images), batch)
        out = np.empty((batch, 3, 32, 32), np.float32)
        for j, i in enumerate(index):
            padded = np.pad(images[i], ((0, 0), (4, 4), (4, 4)))
            y, x = rng.integers(0, 9, 2)
            crop = padded[:, y:y + 32, x:x + 32]
            if rng.random() < 0.5:
                crop = crop[:, :, ::-1]
            out[j] = (crop / 255.0 - mean) / std
        task.train_on(torch.from_numpy(out).to(task.device), labels[index].to(task.device))
    return step


def checkpoint_state(task: ResNetTask) -> dict:
    """What a run's save takes (jobs.train.checkpointer), for one process."""
    return layout.checkpoint_state(task.step, task.steps_per_epoch, task.state_dict(), capture_rng(),
                                   LoopState().to_dict())


def checkpoint_costs(task: ResNetTask, device: str, saves: int) -> dict:
    """Per save: the synchronous save (copy, serialize, write, fsync, manifest, all on the training thread)
    and the stall of the background writer (state dicts, RNGs, queuing the copies: what training waits for)."""
    sync_ms, stall_ms, parts = [], [], {"state_ms": [], "host_copy_ms": []}
    with tempfile.TemporaryDirectory() as directory:
        store = CheckpointStore(directory, weights_of=layout.weights)
        for _ in range(saves):
            task.train_step()
            sync(device)
            started = time.perf_counter()
            entry = store.save(snapshot(checkpoint_state(task)), step=task.step, epoch=0.0)
            sync_ms.append(1000 * (time.perf_counter() - started))
    with tempfile.TemporaryDirectory() as directory:
        writer = BackgroundWriter(CheckpointStore(directory, weights_of=layout.weights))
        for i in range(saves + 1):
            task.train_step()
            started = time.perf_counter()
            state = checkpoint_state(task)
            gathered = time.perf_counter()
            writer.submit(state, step=task.step, epoch=0.0)
            if i:  # the first save allocates the pinned buffers once
                done = time.perf_counter()
                stall_ms.append(1000 * (done - started))
                parts["state_ms"].append(1000 * (gathered - started))
                parts["host_copy_ms"].append(1000 * (done - gathered))
            writer.wait()
            assert writer.collect()[1] is None
    return {"sync_save_ms": statistics.median(sync_ms), "async_stall_ms": statistics.median(stall_ms),
            # the stall's parts: the state dicts and RNG states, then the host copy queued and the writer started
            **{f"stall_{k}": statistics.median(v) for k, v in parts.items()}, "checkpoint_mb": entry["size"] / 1e6}


def checkpoint_overhead(task: ResNetTask, device: str, steps: int, save_every: int) -> dict:
    """The cost of the default cadence (each epoch end + every 600 s) in % of training time, measured end
    to end: the same steps with a background save every `save_every` steps, between two plain timings.
    One writer throughout, as in a run: its pinned buffers are allocated by the first save, not timed."""
    with tempfile.TemporaryDirectory() as directory:
        writer = BackgroundWriter(CheckpointStore(directory, weights_of=layout.weights))

        def timed(every: int) -> float:
            sync(device)
            started = time.perf_counter()
            for i in range(steps):
                task.train_step()
                if every and (i + 1) % every == 0:
                    writer.wait()
                    writer.collect()
                    writer.submit(checkpoint_state(task), step=task.step, epoch=0.0)
            writer.wait()
            writer.collect()
            sync(device)
            return time.perf_counter() - started

        timed(save_every)  # warm: the pinned buffers, the page cache of the directory
        before, with_saves, after = timed(0), timed(save_every), timed(0)
    plain = (before + after) / 2
    per_save = max(with_saves - plain, 0.0) / (steps // save_every)
    epoch_s = PAPER_EPOCH_IMAGES / (steps * task.batch_size / plain)
    # the default cadence: each epoch end, and auto's interval for this save cost without deaths seen
    saves_per_epoch = 1 + epoch_s / cadence.bounded_interval(per_save, cadence.PRIOR_SECONDS)
    return {"checkpoint_overhead_pct": 100 * saves_per_epoch * per_save / epoch_s, "per_save_ms": 1000 * per_save,
            "epoch_s": epoch_s}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--block", choices=["standard", "bottleneck"], default="standard")
    parser.add_argument("--size", type=positive_int, default=5)
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--steps", type=positive_int, help="timed steps per figure (default 200 on a GPU, 10 on a CPU)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--saves", type=positive_int, default=5, help="saves timed for the stall figures")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    args.steps = args.steps or (200 if device == "cuda" else 10)
    # a fresh compile cache: compile_s is what a first (cold) start pays
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-compile-cache-")

    eager = make_task(args, device, fast=False)
    result = {"device": device, "device_name": torch.cuda.get_device_name() if device == "cuda" else "CPU",
              "torch": torch.__version__, "model": eager.describe(), "size": args.size,
              "batch_size": args.batch_size, "steps": args.steps}
    rng = np.random.default_rng(0)
    seed_step = seed_style_step(eager, rng)
    steps_per_second(seed_step, 2, device)
    result["seed_style_img_s"] = args.batch_size * steps_per_second(seed_step, max(args.steps // 4, 2), device)
    steps_per_second(eager.train_step, WARMUP, device)
    result["eager_img_s"] = args.batch_size * steps_per_second(eager.train_step, args.steps, device)
    fastest, checkpoint_path = eager, "eager"
    for key in ("fast_img_s", "capture_s", "fast_compile_img_s", "compile_s"):
        result[key] = None
    if device == "cuda":
        fast, result["fast_img_s"], result["capture_s"] = measure_fast(args, device, compile=False)
        fastest, checkpoint_path = fast, "fast"
        compiled, result["fast_compile_img_s"], result["compile_s"] = measure_fast(args, device, compile=True)
        if result["fast_compile_img_s"] > result["fast_img_s"]:
            fastest, checkpoint_path = compiled, "fast --compile"
    result["checkpoint_path"] = checkpoint_path
    result.update(checkpoint_costs(fastest, device, args.saves))
    result.update(checkpoint_overhead(fastest, device, args.steps, max(args.steps // 10, 1)))

    if args.json:
        print(json.dumps(result))
        return 0
    table = Table(title=f"{result['model']}, batch {args.batch_size}, on {result['device_name']} "
                        f"(torch {torch.__version__}, {args.steps} timed steps)")
    table.add_column("what")
    table.add_column("figure", justify="right")

    def rate(value):
        return "-" if value is None else f"{value:,.0f} img/s"

    table.add_row("seed-style pipeline (per-image numpy on the CPU)", rate(result["seed_style_img_s"]))
    table.add_row("eager (fp32, batched augmentation on the device)", rate(result["eager_img_s"]))
    seconds = lambda value: "-" if value is None else f"{value:.1f} s"  # noqa: E731
    table.add_row("fast (bf16, channels_last, the step as one CUDA graph)", rate(result["fast_img_s"]))
    table.add_row("  its warm-up and capture", seconds(result["capture_s"]))
    table.add_row("fast --compile (the same with inductor's kernels)", rate(result["fast_compile_img_s"]))
    table.add_row("  its compilation (cold cache) and capture", seconds(result["compile_s"]))
    table.add_row(f"checkpoint ({result['checkpoint_mb']:.2f} MB), synchronous save",
                  f"{result['sync_save_ms']:.1f} ms")
    table.add_row(f"  background writer: training waits ({result['stall_state_ms']:.2f} ms state dicts, "
                  f"{result['stall_host_copy_ms']:.2f} ms host copy)", f"{result['async_stall_ms']:.2f} ms")
    table.add_row(f"  default cadence, measured end to end ({result['per_save_ms']:.1f} ms per save, "
                  f"{result['epoch_s']:.1f}-s epochs)", f"{result['checkpoint_overhead_pct']:.3f}% of training")
    Console().print(table)
    return 0


if __name__ == "__main__":
    run_main(main)
