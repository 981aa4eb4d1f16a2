#!/usr/bin/env python3
"""Download CIFAR-10 (the official python version) into a data directory.

    python scripts/download_cifar10.py data            # data/cifar-10-python.tar.gz, md5 checked
    python scripts/train.py --data-dir data/cifar-10-python.tar.gz --run-id resnet32

The tarball is written as `<name>.partial` and renamed only once its size and md5 are right, so a
cut or corrupted download never looks complete; run it again to retry. `--url` and `--md5` name a
mirror and its checksum.
"""
import argparse
from pathlib import Path

from jobs.cli import run_main
from resnet.data import CIFAR10_TAR_MD5
from resnet.download import CIFAR10_URL, download_cifar10


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--url", default=CIFAR10_URL, help="default: the official URL")
    parser.add_argument("--md5", default=CIFAR10_TAR_MD5, help="the tarball's expected md5 (default: the official)")
    args = parser.parse_args(argv)
    download_cifar10(args.directory, args.url, args.md5)
    return 0


if __name__ == "__main__":
    run_main(main)
