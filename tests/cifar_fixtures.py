"""Tiny CIFAR-10 sets in the official python layout, for tests that must not need the real 163 MB."""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

BATCH_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"


class _Py2Pickler(pickle._Pickler):
    """Pickles str and bytes as python 2 strings (BINSTRING), as cPickle wrote the official files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    """Protocol 2 bytes as python 2 and numpy 1 made them (numpy.core, not numpy 2's numpy._core)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.", b"cnumpy.core.")


def write_batch(path: Path, data: np.ndarray, labels: list[int]) -> Path:
    """One batch as the official files hold it: {b"data": uint8 (N, 3072) R,G,B planes, b"labels": [...]}."""
    path = Path(path)
    batch = {
        b"batch_label": path.name.encode(),
        b"labels": list(labels),
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    path.write_bytes(py2_pickle(batch))
    return path


def write_fake_cifar(root: Path, images_per_batch: int = 20, test_images: int = 20, seed: int = 0) -> Path:
    """Write root/cifar-10-batches-py (data_batch_1..5, test_batch, batches.meta); return that dir.

    Pixels are random from `seed`; labels cycle 0..9 so every class appears.
    """
    rng = np.random.default_rng(seed)
    out = Path(root) / BATCH_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name, n in [*((f, images_per_batch) for f in TRAIN_FILES), (TEST_FILE, test_images)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        write_batch(out / name, data, [i % 10 for i in range(n)])
    names = b"airplane automobile bird cat deer dog frog horse ship truck".split()
    (out / "batches.meta").write_bytes(py2_pickle({b"label_names": names}))
    return out


def make_tarball(batch_dir: Path, dest: Path | None = None) -> Path:
    """Pack `batch_dir` as cifar-10-python.tar.gz (members under cifar-10-batches-py/); return its path.

    Written next to `batch_dir` unless `dest` is given. Its md5 is not the official one: tests
    patch `resnet.data.CIFAR10_TAR_MD5` with `file_md5(tarball)`.
    """
    batch_dir = Path(batch_dir)
    dest = Path(dest) if dest is not None else batch_dir.parent / "cifar-10-python.tar.gz"
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(batch_dir, arcname=BATCH_DIR)
    return dest


def file_md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes(), usedforsecurity=False).hexdigest()
