"""The ResNet run config: one plain dict, frozen into the run directory, and its command-line flags."""
import argparse
import os

import torch

from jobs.cli import positive_int
from jobs.errors import UserError

# Hyper-parameters of He et al. (2016), Sec. 4.2, and of the seed homework: the "paper" preset.
DEFAULTS = {
    "preset": "paper",       # the recipe the fields below started from (PRESETS); flags given override it
    "block": "standard",     # standard (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1 with 4x width)
    "size": 5,               # blocks per stack: 6n+2 layers (standard), 9n+2 (bottleneck); 5 -> ResNet-32
    "epochs": 182,           # 64k iterations of batch 128 on 45k images
    "batch_size": 128,
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 1e-4,
    "schedule": "step",      # step: lr/10 at 50% and 75% of training (32k, 48k of 64k); or cosine
    "warmup_epochs": 0.0,    # linear warm-up from ~0 to lr
    "label_smoothing": 0.0,
    "eval_flip": False,      # evaluate on each image and its mirror image, averaging the logits
    "seed": 0,
    "data_dir": None,        # CIFAR-10 python batches: the directory, its parent or the .tar.gz
    "synthetic": None,       # or N learnable synthetic images (demos, tests)
    "train_on_all": False,   # train on all 50k and evaluate on the test set instead of 45k/5k
    "val_size": 5000,
    "device": "cpu",         # resolved: cpu or cuda (the generator states depend on it)
    "bf16": False,           # bf16 autocast (GPU fast path)
    "channels_last": False,  # channels_last memory format (GPU fast path)
    "fast": False,           # the GPU fast path: bf16, channels_last, and the model compiled into CUDA graphs
    "deterministic": False,  # deterministic GPU kernels: bit-exact resume on the GPU too (slower)
}
# Named recipes: each changes some fields of DEFAULTS. "better" keeps the network and changes what is known
# to help small CIFAR ResNets: all 50k images, stronger weight decay, Nesterov momentum, a cosine schedule
# (which converges in fewer epochs than the step schedule: 150 instead of 182), label smoothing, and
# test-time flips.
PRESETS = {
    "paper": {},
    "better": {"epochs": 150, "train_on_all": True, "weight_decay": 5e-4, "nesterov": True, "schedule": "cosine",
               "label_smoothing": 0.1, "eval_flip": True},
}
# Fields added after runs were first frozen: such a run had their defaults, and resumes with them (complete()).
LEGACY = {field: DEFAULTS[field] for field in ("preset", "nesterov", "label_smoothing", "eval_flip", "fast")}
# what a resumed run may change (with --override): the fast path's settings change speed, not the recipe
SAFE_TO_CHANGE = frozenset({"epochs", "data_dir", "fast", "bf16", "channels_last"})
TRAINING_FIELDS = ("block", "size", "epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay",
                   "schedule", "warmup_epochs", "label_smoothing", "eval_flip", "seed", "train_on_all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Model and training flags. Their defaults are None: a flag that is not given takes the preset's value."""
    g = parser.add_argument_group("model and training (frozen into the run's config)")
    g.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="the recipe: paper (He et al.; default) or better (150 epochs on 50k images, wd 5e-4, "
                        "Nesterov, cosine, label smoothing 0.1, flips at test time); other flags change single fields")
    g.add_argument("--block", choices=["standard", "bottleneck"])
    g.add_argument("--size", type=positive_int, help="blocks per stack n (default 5: ResNet-32)")
    g.add_argument("--epochs", type=positive_int, help="default 182 (better: 150)")
    g.add_argument("--batch-size", type=positive_int, help="default 128")
    g.add_argument("--lr", type=float, help="default 0.1")
    g.add_argument("--momentum", type=float, help="default 0.9")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction)
    g.add_argument("--weight-decay", type=float, help="default 1e-4 (better: 5e-4)")
    g.add_argument("--schedule", choices=["step", "cosine"], help="default step (better: cosine)")
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--label-smoothing", type=float, help="default 0 (better: 0.1)")
    g.add_argument("--eval-flip", action=argparse.BooleanOptionalAction,
                   help="evaluate on each image and its mirror image (better: on)")
    g.add_argument("--seed", type=int)
    data = g.add_mutually_exclusive_group()
    data.add_argument("--data-dir", help="CIFAR-10: cifar-10-batches-py, its parent, or cifar-10-python.tar.gz")
    data.add_argument("--synthetic", type=positive_int, metavar="N", help="N synthetic images instead of CIFAR-10")
    g.add_argument("--train-on-all", action=argparse.BooleanOptionalAction,
                   help="train on 50k, evaluate on the 10k test images (better: on)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    g.add_argument("--fast", action="store_true",
                   help="GPU fast path: bf16 autocast, channels_last, the model compiled into CUDA graphs")
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
    """The run config: DEFAULTS, then the preset's fields, then every flag given.

    resolve=False keeps --device as given (submit.py decides for the compute node)."""
    if args.data_dir is None and args.synthetic is None:
        raise UserError("say which data to train on: --data-dir PATH (CIFAR-10) or --synthetic N")
    config = {**DEFAULTS, **PRESETS[args.preset], "preset": args.preset}
    config.update({field: getattr(args, field) for field in TRAINING_FIELDS if getattr(args, field) is not None})
    config.update({"data_dir": os.path.abspath(args.data_dir) if args.data_dir else None,
                   "synthetic": args.synthetic,
                   "device": resolve_device(args.device) if resolve else args.device,
                   "fast": args.fast, "bf16": args.bf16 or args.fast,
                   "channels_last": args.channels_last or args.fast, "deterministic": args.deterministic})
    return config


def complete(config: dict) -> dict:
    """A frozen config with the fields added since it was written, set as that run had them."""
    return {**LEGACY, **config}


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
    if config["nesterov"] and config["momentum"] == 0:
        raise UserError("Nesterov momentum needs a momentum above 0")
    if not 0 <= config["label_smoothing"] < 1:
        raise UserError(f"label smoothing must be in [0, 1), got {config['label_smoothing']}")
    if config["preset"] not in PRESETS:
        raise UserError(f"preset must be one of {', '.join(sorted(PRESETS))}, got {config['preset']!r}")
    if config["fast"] and config["deterministic"]:
        raise UserError("--fast and --deterministic exclude each other: the fast path's compiled kernels "
                        "are not deterministic")
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
