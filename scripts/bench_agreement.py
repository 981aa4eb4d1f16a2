#!/usr/bin/env python3
"""The cost of the per-step stop agreement of a run trained by several processes (jobs/train/stop_agreement.py):
one all-reduce of one integer per rank, on the CPU (gloo), timed alone.

    torchrun --nproc-per-node 2 scripts/bench_agreement.py [--calls 2000]
"""
import argparse
import statistics
import time

from jobs.distributed import process_group


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    ranks = process_group.setup()
    if not ranks.distributed:
        raise SystemExit("start it with torchrun or srun: a single process agrees with nobody")
    for _ in range(100):  # warm-up: connections, allocations
        ranks.per_rank(0)
    times = []
    for _ in range(args.calls):
        started = time.perf_counter()
        ranks.per_rank(0)
        times.append(time.perf_counter() - started)
    if ranks.is_writer:
        times.sort()
        print(f"stop agreement, {ranks.world_size} ranks ({ranks.launcher}), {args.calls} calls: median "
              f"{statistics.median(times) * 1e6:.0f} us, 90th percentile {times[int(0.9 * len(times))] * 1e6:.0f} us")
    process_group.teardown(ranks)


if __name__ == "__main__":
    main()
