"""A plain workload (jobs.adapter) whose every trained step writes which samples each rank trained on: the
elastic tests read these logs to check that no sample is skipped or seen twice across resumes with another
number of processes.

48 samples, a global batch of 6 (it divides among 1, 2 and 3 processes), 8 steps per epoch; SGD with momentum
and a step schedule, so that the optimizer's state and the schedule matter. Each process appends one JSON line
per step to `<log_dir>/rank<R>-pid<PID>.jsonl`: {"step", "rank", "world_size", "lr", "indices"}.
"""
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from jobs.adapter.training import Training, plain_workload
from jobs.data.loader import ResumableLoader

SAMPLES, BATCH = 48, 6
DEFAULTS = {"epochs": 4, "seed": 0, "lr": 0.05, "log_dir": None}


class Indexed(Dataset):
    """Random points; each target carries the sample's index beside its value."""

    def __init__(self, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(SAMPLES, 4, generator=generator)
        self.values = self.inputs @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, index: int):
        return self.inputs[index] + 0.01 * torch.randn(4), torch.tensor([self.values[index], float(index)])


class LoggedTraining(Training):
    """Training that logs each step's sample indices (in the order this rank trained them)."""

    def __init__(self, *args, log_dir: str, **kwargs):
        super().__init__(*args, **kwargs)
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.rank, self.world = rank, world
        self.log = open(Path(log_dir) / f"rank{rank}-pid{os.getpid()}.jsonl", "a", buffering=1)
        self.indices = None

    def loss(self, outputs, targets):
        self.indices = targets[:, 1].long().tolist()
        return nn.functional.mse_loss(outputs.squeeze(1), targets[:, 0])

    def train_step(self) -> dict:
        step, lr = self.step, self.optimizer.param_groups[0]["lr"]
        out = super().train_step()
        self.log.write(json.dumps({"step": step, "rank": self.rank, "world_size": self.world, "lr": lr,
                                   "indices": self.indices}) + "\n")
        return out


def build(config: dict) -> Training:
    torch.manual_seed(config["seed"])
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.8)
    loader = ResumableLoader(Indexed(config["seed"]), BATCH, seed=config["seed"])
    task = LoggedTraining(model, optimizer, loader, None, config["epochs"], scheduler=scheduler, accuracy=False,
                          label="logged-linear", log_dir=config["log_dir"])
    task.loss_fn = task.loss
    return task


WORKLOAD = plain_workload(build, defaults=DEFAULTS, primary_metric=None)
