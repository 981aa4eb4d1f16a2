"""A plain PyTorch training made a resumable run with jobs.adapter: an MLP learns two interleaved spirals from
points jittered anew in the dataset each time they are loaded, by two DataLoader workers, with AdamW and OneCycleLR.

    python scripts/run.py --workload examples.spirals:WORKLOAD --run-id spirals
"""
import math

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from jobs.adapter.training import Training, plain_workload
from jobs.data.loader import ResumableLoader

DEFAULTS = {"points": 2048, "noise": 0.05, "hidden": 64, "batch_size": 64, "lr": 0.02, "epochs": 10, "workers": 2,
            "seed": 0}


class Spirals(Dataset):
    """Points on two spirals, labelled by their spiral; each is jittered with torch's global RNG when loaded."""

    def __init__(self, points: int, noise: float, seed: int):
        generator = torch.Generator().manual_seed(seed)
        turn = torch.rand(points, generator=generator) * 3 * math.pi
        self.labels = torch.randint(0, 2, (points,), generator=generator)
        angle = turn + math.pi * self.labels
        self.points = torch.stack([torch.cos(angle), torch.sin(angle)], 1) * (turn / (3 * math.pi))[:, None]
        self.noise = noise

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.points[index] + self.noise * torch.randn(2), self.labels[index]


def build(config: dict) -> Training:
    torch.manual_seed(config["seed"])  # the initial weights (jobs/ saves and restores the global RNGs)
    hidden = config["hidden"]
    model = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    workers = config["workers"]
    train = ResumableLoader(Spirals(config["points"], config["noise"], config["seed"]), config["batch_size"],
                            seed=config["seed"], num_workers=workers, persistent_workers=workers > 0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"],
                                                    total_steps=config["epochs"] * len(train))
    held_out = {"val": DataLoader(Spirals(512, 0.0, config["seed"] + 1), batch_size=256)}
    test = {"test": DataLoader(Spirals(1024, 0.0, config["seed"] + 2), batch_size=256)}
    return Training(model, optimizer, train, nn.functional.cross_entropy, config["epochs"], scheduler=scheduler,
                    held_out=held_out, test=test, label=f"mlp-{hidden} spirals")


WORKLOAD = plain_workload(build, defaults=DEFAULTS)
