"""Batched CIFAR augmentation (pad-and-crop, horizontal flip) and normalization, on the data's device.

The whole batch is augmented by a few tensor ops with random numbers drawn in two calls from a
dedicated generator: no per-image python, no host round trip, and the generator's state alone
(checkpointed by the training task) fixes every future batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Zero-pad by `padding`, crop a random window of the original size, flip half the images.

    images: uint8 (B, C, H, W) on any device. `generator` must live on that same device
    (``torch.Generator(device=images.device)``) so the draws happen there, without a sync.
    Draw order is fixed for reproducibility: the (B, 2) crop offsets, then the (B,) flips.
    Returns a new uint8 (B, C, H, W) tensor; the input is not modified.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if generator.device.type != images.device.type:
        raise ValueError(f"generator is on {generator.device}, images on {images.device}; use one device")
    b, c, h, w = images.shape
    dev = images.device
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator, device=dev)
    flips = torch.randint(0, 2, (b,), generator=generator, device=dev).bool()

    padded = F.pad(images, (padding, padding, padding, padding))
    rows = offsets[:, :1] + torch.arange(h, device=dev)  # (B, H): rows of each window in `padded`
    cols = offsets[:, 1:] + torch.arange(w, device=dev)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)  # a flip reads the window's columns backwards
    batch = torch.arange(b, device=dev)[:, None, None, None]
    chans = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """float32 (x / 255 - mean) / std per channel, for uint8 (..., C, H, W) and (C,) mean, std."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    return images.to(torch.float32).div_(255).sub_(mean).div_(std)
