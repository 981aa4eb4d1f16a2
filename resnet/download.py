"""Fetch the CIFAR-10 tarball: md5-checked, written under a temporary name and renamed only when whole."""
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from jobs.errors import UserError
from resnet.data import CIFAR10_TAR_MD5, TAR_NAME, file_md5

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CHUNK = 1 << 20


class _PlainProgress:
    """Under sbatch (no terminal): a greppable line every 10%, not a redrawn bar."""

    def __init__(self, total: int | None):
        self.total, self.done, self.shown = total, 0, -1

    def advance(self, n: int) -> None:
        self.done += n
        if self.total:
            tenth = 10 * self.done // self.total
            if tenth > self.shown:
                self.shown = tenth
                print(f"downloaded {self.done / 1e6:.1f} of {self.total / 1e6:.1f} MB", flush=True)


def download_cifar10(directory: Path, url: str = CIFAR10_URL, md5: str = CIFAR10_TAR_MD5) -> Path:
    """`directory`/cifar-10-python.tar.gz, fetched unless a whole one is there already."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {directory}: {e.strerror}") from None
    final = directory / TAR_NAME
    if final.exists() and file_md5(final) == md5:
        print(f"{final} is already there (md5 checked)")
        return final
    partial = directory / (TAR_NAME + ".partial")  # never mistaken for the tarball: another name
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            interactive = sys.stdout.isatty()
            columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
            with Progress(*columns, disable=not interactive) as bar:
                task = bar.add_task(TAR_NAME, total=total)
                plain = _PlainProgress(None if interactive else total)
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.advance(task, len(chunk))
                    plain.advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:  # unreachable, refused, cut, disk full
        partial.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise UserError(f"downloading {url} failed ({reason}); nothing was kept, run it again") from None
    got = partial.stat().st_size
    if total is not None and got != total:
        partial.unlink()
        raise UserError(f"the download of {url} was cut: {got:,} of {total:,} bytes; nothing was kept, run it again")
    if digest.hexdigest() != md5:
        partial.unlink()
        raise UserError(f"the download of {url} has md5 {digest.hexdigest()}, expected {md5}; nothing was kept")
    os.replace(partial, final)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename is durable
    finally:
        os.close(fd)
    print(f"wrote {final} ({got / 1e6:.1f} MB, md5 checked) at {time.strftime('%H:%M:%S')}")
    return final
