"""The ResNet run config: one plain dict, frozen into the run directory, and its command-line flags."""
import argparse
import os

import torch

from jobs.cli import positive_int
from jobs.errors import UserError

# Hyper-parameters of He et al. (2016), Sec. 4.2, and of the seed homework.
DEFAULTS = {
    "block": "standard",     # standard (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1 with 4x width)
    "size": 5,               # blocks per stack: 6n+2 layers (standard), 9n+2 (bottleneck); 5 -> ResNet-32
    "epochs": 182,           # 64k iterations of batch 128 on 45k images
    "batch_size": 128,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "step",      # step: lr/10 at 50% and 75% of training (32k, 48k of 64k); or cosine
    "warmup_epochs": 0.0,    # linear warm-up from ~0 to lr
    "seed": 0,
    "data_dir": None,        # CIFAR-10 python batches: the directory, its parent or the .tar.gz
    "synthetic": None,       # or N learnable synthetic images (demos, tests)
    "train_on_all": False,   # train on all 50k and evaluate on the test set instead of 45k/5k
    "val_size": 5000,
    "device": "cpu",         # resolved: cpu or cuda (the generator states depend on it)
    "bf16": False,           # bf16 autocast (GPU fast path)
    "channels_last": False,  # channels_last memory format (GPU fast path)
    "deterministic": False,  # deterministic GPU kernels: bit-exact resume on the GPU too (slower)
}
SAFE_TO_CHANGE = frozenset({"epochs", "data_dir"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model and training (frozen into the run's config)")
    g.add_argument("--block", choices=["standard", "bottleneck"], default=DEFAULTS["block"])
    g.add_argument("--size", type=positive_int, default=DEFAULTS["size"], help="blocks per stack n (default 5)")
    g.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"])
    g.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"])
    g.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    g.add_argument("--momentum", type=float, default=DEFAULTS["momentum"])
    g.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"])
    g.add_argument("--schedule", choices=["step", "cosine"], default=DEFAULTS["schedule"])
    g.add_argument("--warmup-epochs", type=float, default=DEFAULTS["warmup_epochs"])
    g.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    data = g.add_mutually_exclusive_group()
    data.add_argument("--data-dir", help="CIFAR-10: cifar-10-batches-py, its parent, or cifar-10-python.tar.gz")
    data.add_argument("--synthetic", type=positive_int, metavar="N", help="N synthetic images instead of CIFAR-10")
    g.add_argument("--train-on-all", action="store_true", help="train on 50k, evaluate on the 10k test images")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    g.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format (GPU)")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic GPU kernels, so a resumed GPU run is bit-exact too (CPU runs always are)")


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return name


def config_from_args(args: argparse.Namespace, resolve: bool = True) -> dict:
    """The run config; resolve=False keeps --device as given (submit.py decides for the compute node)."""
    if args.data_dir is None and args.synthetic is None:
        raise UserError("say which data to train on: --data-dir PATH (CIFAR-10) or --synthetic N")
    return {**DEFAULTS, "block": args.block, "size": args.size, "epochs": args.epochs,
            "batch_size": args.batch_size, "lr": args.lr, "momentum": args.momentum,
            "weight_decay": args.weight_decay, "schedule": args.schedule, "warmup_epochs": args.warmup_epochs,
            "seed": args.seed, "data_dir": os.path.abspath(args.data_dir) if args.data_dir else None,
            "synthetic": args.synthetic, "train_on_all": args.train_on_all,
            "device": resolve_device(args.device) if resolve else args.device, "bf16": args.bf16,
            "channels_last": args.channels_last, "deterministic": args.deterministic}


def validate(config: dict) -> None:
    """Impossible numbers are refused before anything is written."""
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise UserError(f"unknown config fields: {', '.join(sorted(unknown))}")
    for key in ("size", "epochs", "batch_size"):
        if not isinstance(config[key], int) or config[key] <= 0:
            raise UserError(f"{key} must be a positive integer, got {config[key]!r}")
    if not config["lr"] > 0:
        raise UserError(f"lr must be positive, got {config['lr']}")
    if not 0 <= config["momentum"] < 1:
        raise UserError(f"momentum must be in [0, 1), got {config['momentum']}")
    if config["weight_decay"] < 0:
        raise UserError(f"weight decay must be >= 0, got {config['weight_decay']}")
    if config["warmup_epochs"] < 0 or config["warmup_epochs"] >= config["epochs"]:
        raise UserError(f"warm-up must be >= 0 and shorter than the run, got {config['warmup_epochs']} epochs")
    if config["block"] not in ("standard", "bottleneck"):
        raise UserError(f"block must be standard or bottleneck, got {config['block']!r}")
    if config["schedule"] not in ("step", "cosine"):
        raise UserError(f"schedule must be step or cosine, got {config['schedule']!r}")
    if (config["data_dir"] is None) == (config["synthetic"] is None):
        raise UserError("exactly one of data_dir and synthetic must be set")
    if config["device"] not in ("cpu", "cuda"):
        raise UserError(f"device must be cpu or cuda, got {config['device']!r}")
