"""CIFAR-10: the official python batches, a train/validation split, and a learnable synthetic stand-in.

Images stay uint8 (N, 3, 32, 32) so that the whole set fits on the device; augmentation and
normalization happen there, batch by batch (see resnet/augment.py).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from jobs.errors import UserError

CIFAR10_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"  # cifar-10-python.tar.gz, as published
TAR_NAME = "cifar-10-python.tar.gz"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
NUM_CLASSES = 10
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (3, 32, 32)


@dataclass
class Dataset:
    images: torch.Tensor  # uint8 (N, 3, 32, 32)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# ----------------------------------------------------------------------------- reading CIFAR-10


def load_cifar10(path: str | os.PathLike) -> tuple[Dataset, Dataset]:
    """Return (train, test) from `cifar-10-batches-py`, its parent directory, or the tarball.

    The tarball's md5 is checked first and its members are read in memory, never extracted.
    Sizes are not fixed (50,000 / 10,000 for the real set): only consistency is checked.
    """
    path = Path(path)
    if path.is_file():
        if not _looks_like_tarball(path):  # e.g. a batch file itself: say what to give, not "md5 differs"
            raise UserError(f"{path}: not a tarball; give the {BATCH_DIR} directory, its parent, or {TAR_NAME}")
        return _load_tarball(path)
    if path.is_dir():
        if (path / TEST_FILE).exists() or (path / TRAIN_FILES[0]).exists():
            return _load_dir(path)
        if (path / BATCH_DIR).is_dir():
            return _load_dir(path / BATCH_DIR)
        if (path / TAR_NAME).is_file():
            return _load_tarball(path / TAR_NAME)
        raise UserError(
            f"{path}: no CIFAR-10 data here; expected {BATCH_DIR}/ (data_batch_1..5, test_batch) or {TAR_NAME}"
        )
    raise UserError(f"{path}: CIFAR-10 data not found (no such file or directory)")


def _looks_like_tarball(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"  # a truncated .tar.gz still starts so: its md5 then says more
        return gzipped or tarfile.is_tarfile(path)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def _load_dir(root: Path) -> tuple[Dataset, Dataset]:
    def read(name: str) -> Dataset:
        file = root / name
        try:
            with open(file, "rb") as f:
                return _parse_batch(f, str(file))
        except FileNotFoundError:
            raise UserError(f"{file}: CIFAR-10 batch file is missing") from None
        except OSError as e:
            raise UserError(f"{file}: cannot read CIFAR-10 batch ({e.strerror or e})") from None

    return _concat([read(n) for n in TRAIN_FILES]), read(TEST_FILE)


def _load_tarball(tar_path: Path) -> tuple[Dataset, Dataset]:
    got = file_md5(tar_path)
    if got != CIFAR10_TAR_MD5:
        raise UserError(
            f"{tar_path}: md5 differs from the official {TAR_NAME} (expected {CIFAR10_TAR_MD5}, "
            f"got {got}); the download is incomplete or corrupt, delete it and download it again"
        )
    wanted = {*TRAIN_FILES, TEST_FILE}
    found: dict[str, Dataset] = {}
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            # One pass in archive order: seeking back in a gzip stream means decompressing it again.
            # Match base names: a tarball repacked by hand may lack the cifar-10-batches-py/ prefix.
            for member in tar:
                name = PurePosixPath(member.name).name
                if member.isfile() and name in wanted and name not in found:
                    found[name] = _parse_batch(tar.extractfile(member), f"{tar_path}:{name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise UserError(f"{tar_path}: cannot read the tarball ({e})") from None
    missing = sorted(wanted - found.keys())
    if missing:
        raise UserError(f"{tar_path}:{missing[0]}: CIFAR-10 batch file is missing from the tarball")
    return _concat([found[n] for n in TRAIN_FILES]), found[TEST_FILE]


def file_md5(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks (the tarball is 163 MB)."""
    md5 = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(chunk_size):
                md5.update(chunk)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    return md5.hexdigest()


class _Refused(pickle.UnpicklingError):
    pass


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds: a pickle may otherwise run arbitrary code."""

    _NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str) -> object:
        numpy_module = module == "numpy" or module.startswith(("numpy.core.", "numpy._core."))
        # Protocol-2 pickles written by python 3 encode bytes through _codecs.encode.
        if (numpy_module and name in self._NAMES) or (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")


def _parse_batch(f: BinaryIO, source: str) -> Dataset:
    """Validate one batch: {b'data': uint8 (N, 3072) as R,G,B planes of 32x32, b'labels': N ints}."""
    try:
        batch = _BatchUnpickler(f, encoding="bytes").load()
    except _Refused as e:
        raise UserError(f"{source}: not a CIFAR-10 batch, it asks to run {e}; refusing to load it") from None
    except Exception as e:  # a damaged pickle fails in many ways: EOFError, UnpicklingError, ValueError...
        raise UserError(f"{source}: truncated or corrupt CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise UserError(f"{source}: not a CIFAR-10 batch (a {type(batch).__name__}, expected a dict)")
    for key in (b"data", b"labels"):
        if key not in batch:
            raise UserError(f"{source}: not a CIFAR-10 batch (no {key!r} entry)")

    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{source}: b'data' must be a uint8 array, found a {kind}")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{source}: b'data' has shape {data.shape}, expected (N, 3072)")
    try:
        labels = np.asarray(batch[b"labels"])
    except (ValueError, TypeError) as e:
        raise UserError(f"{source}: b'labels' is not a list of integers ({e})") from None
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise UserError(f"{source}: b'labels' is not a list of integers")
    if len(labels) != len(data):
        raise UserError(f"{source}: {len(labels)} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserError(f"{source}: labels range over {labels.min()}..{labels.max()}, expected 0..{NUM_CLASSES - 1}")
    # Each row is the R plane, then G, then B, each 32 rows of 32 pixels: exactly (3, 32, 32).
    images = torch.from_numpy(np.array(data, copy=True).reshape(-1, *IMAGE_SHAPE))
    return Dataset(images, torch.from_numpy(labels.astype(np.int64)))


def _concat(parts: list[Dataset]) -> Dataset:
    return Dataset(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))


# ----------------------------------------------------------------------------- splits and statistics


def split_train_val(train: Dataset, val_size: int = 5000, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Hold out `val_size` images, chosen by a permutation fixed by `seed` (He et al.: 45k/5k).

    `val_size=0` keeps every image for training and returns an empty validation set.
    """
    if not 0 <= val_size < len(train):
        raise UserError(f"validation size {val_size} must be at least 0 and below the {len(train)} training images")
    # A dedicated generator: the split must not depend on, nor disturb, the global RNG.
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    return (
        Dataset(train.images[train_idx], train.labels[train_idx]),
        Dataset(train.images[val_idx], train.labels[val_idx]),
    )


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std of a uint8 (N, 3, H, W) set, on the 0..1 scale.

    Counting the 256 possible values per channel is exact and needs no float copy of the set.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.numel() == 0:
        raise ValueError(f"expected a non-empty uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
    values = torch.arange(256, dtype=torch.float64, device=images.device) / 255
    channels = range(images.shape[1])
    counts = torch.stack([torch.bincount(images[:, c].reshape(-1), minlength=256) for c in channels]).double()
    n = counts.sum(dim=1)
    mean = (counts * values).sum(dim=1) / n
    var = (counts * (values - mean[:, None]) ** 2).sum(dim=1) / n
    return mean.float().cpu(), var.sqrt().float().cpu()


# ----------------------------------------------------------------------------- synthetic data

_SHIFT = 4  # class patterns are drawn at 40x40 and shown through a random 32x32 window
_NOISE_BANK = 1024  # label-independent backgrounds, reused across images: far cheaper than fresh noise
_CHUNK = 2048  # images assembled per step: int16 buffers stay small, no multi-GB temporaries
_CONTRAST = 45  # pixel std of a class pattern
_MIX = 19  # a second, random class pattern is overlaid at weight 0..18/16 of the first


def _smooth_patterns(count: int, grid: int, size: int, g: torch.Generator) -> torch.Tensor:
    """`count` smooth random colour patterns (count, 3, size, size), each zero-mean, unit-std."""
    coarse = torch.randn(count, 3, grid, grid, generator=g)
    fine = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
    fine = fine - fine.mean(dim=(1, 2, 3), keepdim=True)
    return fine / fine.std(dim=(1, 2, 3), keepdim=True)


def make_synthetic(n: int, seed: int) -> tuple[Dataset, Dataset]:
    """CIFAR-shaped (train of `n`, test of max(n // 5, 10)) images, learnable but not trivially.

    Each class is a fixed smooth colour pattern seen through a random 4-pixel shift. Over it lie
    the pattern of a random class at 0 to 1.125 times its strength (the confusion that keeps the
    best accuracy near 90%, like CIFAR-10's), a colour cast, smooth clutter and pixel noise. Only a
    dedicated generator seeded with `seed` is used, so the global RNG is left untouched.
    """
    if n < 1:
        raise UserError(f"synthetic data needs at least 1 training image, got {n}")
    g = torch.Generator().manual_seed(seed)
    n_test = max(n // 5, 10)
    total = n + n_test

    patterns = _smooth_patterns(NUM_CLASSES, 6, 32 + 2 * _SHIFT, g)
    # Every (class, shift) window precomputed, 10 x 81 rows, so placing a pattern is one gather.
    windows = patterns.unfold(2, 32, 1).unfold(3, 32, 1).permute(0, 2, 3, 1, 4, 5)  # (10, 9, 9, 3, 32, 32)
    shifts = (2 * _SHIFT + 1) ** 2
    table = (_CONTRAST * windows).round().to(torch.int16).reshape(NUM_CLASSES * shifts, -1)
    # Label-independent rest of the picture: mid-grey, a colour cast, smooth clutter, pixel noise.
    cast = 20 * (2 * torch.rand(_NOISE_BANK, 3, 1, 1, generator=g) - 1)
    clutter = 30 * _smooth_patterns(_NOISE_BANK, 8, 32, g) + 20 * torch.randn(_NOISE_BANK, 3, 32, 32, generator=g)
    # int16 fixed point with 4 fractional bits: the sums below stay within about +-12,000 < 2**15.
    background = (16 * (128 + cast + clutter)).round().to(torch.int16).reshape(_NOISE_BANK, -1)
    table16 = table * 16

    # Balanced labels: class i % 10 for image i, shuffled within train and within test.
    labels = torch.cat(
        [
            (torch.arange(n) % NUM_CLASSES)[torch.randperm(n, generator=g)],
            (torch.arange(n_test) % NUM_CLASSES)[torch.randperm(n_test, generator=g)],
        ]
    )
    own = labels * shifts + torch.randint(0, shifts, (total,), generator=g)
    other = torch.randint(0, NUM_CLASSES * shifts, (total,), generator=g)
    weight = torch.randint(0, _MIX, (total, 1), generator=g, dtype=torch.int16)  # sixteenths
    rest = torch.randint(0, _NOISE_BANK, (total,), generator=g)

    images = torch.empty(total, 3 * 32 * 32, dtype=torch.uint8)
    x_buf = torch.empty(min(_CHUNK, total), 3 * 32 * 32, dtype=torch.int16)
    y_buf = torch.empty_like(x_buf)
    for start in range(0, total, _CHUNK):  # per chunk of images, not per image
        end = min(start + _CHUNK, total)
        x, y = x_buf[: end - start], y_buf[: end - start]
        torch.index_select(table16, 0, own[start:end], out=x)
        x.addcmul_(torch.index_select(table, 0, other[start:end], out=y), weight[start:end])
        x.add_(torch.index_select(background, 0, rest[start:end], out=y)).bitwise_right_shift_(4)
        images[start:end] = x.clamp_(0, 255)
    images = images.view(total, *IMAGE_SHAPE)
    return Dataset(images[:n], labels[:n]), Dataset(images[n:], labels[n:])
