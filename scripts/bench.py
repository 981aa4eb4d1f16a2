#!/usr/bin/env python3
"""Throughput and checkpoint cost of a ResNet on this machine (a script that prints figures, not a test).

    python scripts/bench.py --block standard --size 5 --batch-size 128 --steps 30
"""
import argparse
import tempfile
import time

import torch

from jobs.checkpoint import BackgroundWriter, CheckpointStore, snapshot
from jobs.cli import positive_int, run_main
from jobs.loop import LoopConfig
from jobs.rng import capture_rng
from resnet.config import DEFAULTS, resolve_device
from resnet.task import ResNetTask


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--block", choices=["standard", "bottleneck"], default="standard")
    parser.add_argument("--size", type=positive_int, default=5)
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--steps", type=positive_int, default=30, help="timed steps (after 5 warm-up steps)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--save-every", type=positive_int, default=10, help="steps between saves in the A/B run")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    warmup = 5
    images = args.batch_size * (args.steps + warmup)
    config = {**DEFAULTS, "block": args.block, "size": args.size, "batch_size": args.batch_size, "epochs": 1,
              "synthetic": int(images / 0.9) + 1, "device": device, "bf16": args.bf16,
              "channels_last": args.channels_last}
    task = ResNetTask(config)
    for _ in range(warmup):
        task.train_step()
    sync(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        task.train_step()
    sync(device)
    seconds = time.perf_counter() - started
    rate = args.steps * args.batch_size / seconds
    print(f"{task.describe()} on {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}, "
          f"{torch.get_num_threads()} threads), batch {args.batch_size}: {rate:.0f} img/s "
          f"({1000 * seconds / args.steps:.1f} ms/step)")

    state = {"format": 1, "task": task.state_dict(), "rng": capture_rng(), "loop": {"history": []}}
    sync(device)
    started = time.perf_counter()
    host_state = snapshot(state)  # the only part the training thread waits for
    snapshot_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as directory:
        entry = CheckpointStore(directory).save(host_state, step=task.step, epoch=0.0)
    epoch_s = 45_000 / rate  # the paper's 45k training images
    every = LoopConfig().checkpoint_every_seconds
    saves_per_epoch = 1 + epoch_s / every
    print(f"checkpoint: {entry['size'] / 1e6:.2f} MB; host snapshot {1000 * snapshot_s:.1f} ms (training waits); "
          f"serialize+fsync+manifest {1000 * entry['seconds']:.1f} ms (background thread)")
    print(f"default cadence (epoch end + every {every:g} s): {saves_per_epoch:.2f} saves per {epoch_s:.0f}-s epoch "
          f"-> training waits {100 * saves_per_epoch * snapshot_s / epoch_s:.3f}% of its time")

    # Measured end to end: the same steps with saves through the background writer every `--save-every`
    # steps (far more often than the default cadence), between two plain timings (CPU timings drift).
    def timed(save_every: int) -> float:
        with tempfile.TemporaryDirectory() as directory:
            writer = BackgroundWriter(CheckpointStore(directory))
            sync(device)
            started = time.perf_counter()
            for i in range(args.steps):
                task.train_step()
                if save_every and (i + 1) % save_every == 0:
                    writer.wait()
                    writer.collect()
                    state = {"format": 1, "task": task.state_dict(), "rng": capture_rng(), "loop": {"history": []}}
                    writer.submit(state, step=task.step, epoch=0.0)
            writer.wait()
            sync(device)
            return time.perf_counter() - started

    before = timed(0)
    with_saves = timed(args.save_every)
    after = timed(0)
    plain = (before + after) / 2
    saves = args.steps // args.save_every
    per_save = (with_saves - plain) / saves
    print(f"measured: {args.steps} steps with {saves} saves took {with_saves:.2f} s vs {plain:.2f} s without "
          f"({before:.2f}/{after:.2f}); {1000 * per_save:.0f} ms per save "
          f"-> default cadence costs {100 * saves_per_epoch * max(per_save, 0) / epoch_s:.3f}% of training time")
    return 0


if __name__ == "__main__":
    run_main(main)
