#!/usr/bin/env python3
"""What it costs to resume a data loader in the middle of an epoch (a script that prints figures, not a test).

    python scripts/bench_loader.py                            # 10,000 batches of 32, resumed at batch 5,000
    python scripts/bench_loader.py --batches 2000 --workers 2

A map-style dataset whose items take some work (a random crop and flip of a 3x32x32 image, drawn from torch's
global RNG, as torchvision's transforms draw), loaded in batches. From the process's start to the first batch
after the resume point:
  seek           jobs.data.ResumableLoader: the epoch's order from (seed, epoch), started at the batch;
  replay         a plain DataLoader(shuffle=True) with a seeded generator, its first half loaded and dropped;
  torchdata      torchdata's StatefulDataLoader, from a state_dict taken at the resume point (if installed).
Then whether each one's next batches equal an uninterrupted run's: the batch order, and the augmentation too
(the per-batch seeding of jobs.data keeps both with workers; torchdata's workers start their RNGs afresh).
"""
import argparse
import time

import torch
from torch.utils.data import DataLoader, Dataset

from jobs.cli import non_negative_int, positive_int, run_main
from jobs.data.loader import ResumableLoader

COMPARED = 3  # batches after the resume point compared with the uninterrupted run's


class Images(Dataset):
    def __init__(self, size: int):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (64, 3, 40, 40), dtype=torch.uint8, generator=generator)
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        x, y = torch.randint(0, 9, (2,)).tolist()
        image = self.images[index % 64, :, y:y + 32, x:x + 32].float()
        if torch.rand(()) < 0.5:
            image = image.flip(2)
        return image / 255, index


def timed(first_batch, rng: torch.Tensor) -> tuple[float, list]:
    """(seconds to the first batch, that batch and the next COMPARED - 1), from the global RNG state `rng` that
    the uninterrupted run had at the resume point (the toolkit's checkpoint restores it)."""
    torch.set_rng_state(rng)
    started = time.perf_counter()
    batches = first_batch()
    got = [next(batches)]
    seconds = time.perf_counter() - started
    got += [next(batches) for _ in range(COMPARED - 1)]
    return seconds, got


def same(a: list, b: list) -> bool:
    return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))


def plain_loader(dataset, batch: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                      generator=torch.Generator().manual_seed(0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=positive_int, default=10_000, help="batches per epoch")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--workers", type=non_negative_int, default=0)
    args = parser.parse_args(argv)
    dataset, half = Images(args.batches * args.batch_size), args.batches // 2
    kwargs = {"num_workers": args.workers}

    def resumable():
        return ResumableLoader(dataset, args.batch_size, seed=0, **kwargs)

    reference = resumable().batches(0)
    for _ in range(half):
        next(reference)
    rng = torch.get_rng_state()
    expected = [next(reference) for _ in range(COMPARED)]
    rows = [("seek (jobs.data.ResumableLoader)", *timed(lambda: resumable().batches(0, half), rng), expected)]

    def replay():
        batches = iter(plain_loader(dataset, args.batch_size, args.workers))
        for _ in range(half):
            next(batches)
        return batches

    plain = iter(plain_loader(dataset, args.batch_size, args.workers))
    for _ in range(half):
        next(plain)
    rng = torch.get_rng_state()
    plain_expected = [next(plain) for _ in range(COMPARED)]
    rows.append(("replay (DataLoader, the first half loaded)", *timed(replay, rng), plain_expected))
    try:
        from torchdata.stateful_dataloader import StatefulDataLoader
    except ImportError:
        rows.append(("torchdata StatefulDataLoader", None, None, None))
    else:
        def stateful():
            return StatefulDataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                      num_workers=args.workers, generator=torch.Generator().manual_seed(0))
        source = stateful()
        batches = iter(source)
        for _ in range(half):
            next(batches)
        state, rng = source.state_dict(), torch.get_rng_state()
        stateful_expected = [next(batches) for _ in range(COMPARED)]

        def restored():
            loader = stateful()
            loader.load_state_dict(state)
            return iter(loader)
        rows.append(("torchdata StatefulDataLoader (from its state_dict)", *timed(restored, rng), stateful_expected))

    def per_batch_ms(batches, count: int = 200) -> float:
        next(batches)  # the workers' start
        started = time.perf_counter()
        for _ in range(count):
            next(batches)
        return 1000 * (time.perf_counter() - started) / count

    plain_ms = per_batch_ms(iter(plain_loader(dataset, args.batch_size, args.workers)))
    ours_ms = per_batch_ms(resumable().batches(0))
    print(f"loading, per batch: {plain_ms:.2f} ms with a plain DataLoader, {ours_ms:.2f} ms with "
          f"jobs.data.ResumableLoader (its per-batch seeding: {1000 * (ours_ms - plain_ms):.0f} us a batch)")
    print(f"resume at batch {half:,} of {args.batches:,} (batch {args.batch_size}, {args.workers} workers), "
          f"torch {torch.__version__}:")
    for name, seconds, got, want in rows:
        if seconds is None:
            print(f"  {name:<52} not installed")
        else:
            print(f"  {name:<52} {1000 * seconds:10.1f} ms to its first batch; next {COMPARED} batches "
                  f"{'equal' if same(got, want) else 'DIFFER from'} an uninterrupted run's")
    return 0


if __name__ == "__main__":
    run_main(main)
