"""The ResNet training task: the stateful unit the jobs/ loop drives one optimizer step at a time.

All randomness comes from generators whose state is in state_dict(): the model's initialisation
from the global torch RNG seeded with the run's seed (saved by jobs/ with the other global RNGs),
each epoch's permutation from a generator seeded with (seed, epoch), and the crops and flips from a
dedicated generator on the training device.

The fast path (config "fast", for GPUs) runs the same task with bf16 autocast, channels_last and the
whole training step (forward, loss, backward, fused SGD) captured once as a CUDA graph and replayed
(resnet/graphed_step.py): the net is launch-bound at batch 128, and one replay launches its ~500
kernels at once. The augmentation stays eager, outside the graph. "compile" adds kernels generated and
fused by torch.compile (inductor), inside the graph on the fast path. The state dicts are the plain
module's (no `_orig_mod.`) and the optimizer's are plain floats, so a fast-path checkpoint loads into an
eager run and back.

Trained by several processes (jobs/ has set up torch.distributed), each rank takes its shard of every
global batch of the same permutation (batch_size / world size images) and DistributedDataParallel averages
the gradients, so each step sees the images a single process would. Evaluation is sharded and summed.
The fast path's CUDA graph is not used there (DDP's all-reduce runs outside it): bf16, channels_last and
compile are.
"""
import math
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

from jobs.checkpoint.model_state import StateReader
from jobs.distributed.ddp import replicate
from jobs.errors import UserError
from resnet import config as run_config
from resnet.augment import normalize, random_crop_flip
from resnet.data import CIFAR10_CLASSES, Dataset, channel_stats, load_cifar10, make_synthetic, split_train_val
from resnet.graphed_step import GraphedStep
from resnet.models import build_model

EVAL_BATCH = 1000
COMPILE_BACKEND = "inductor"  # torch.compile's backend (the CPU tests patch in "eager": seconds, not minutes)


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, schedule: str, warmup_epochs: float) -> float:
    """Multiplier of the base learning rate before optimizer step `step` (0-based)."""
    warmup = round(warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress = (step - warmup) / max(total_steps - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 0.1 ** ((step >= total_steps // 2) + (step >= total_steps * 3 // 4))  # paper: 32k, 48k of 64k


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch `epoch`: a pure function of (seed, epoch), so resuming needs only the step."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def load_data(config: dict) -> tuple[Dataset, Dataset, Dataset]:
    """(train, held-out set used during training, test set)."""
    if config["synthetic"] is not None:
        train, test = make_synthetic(config["synthetic"], config["seed"])
    else:
        train, test = load_cifar10(config["data_dir"])
    if config["train_on_all"]:
        return train, test, test
    val_size = config["val_size"] if config["synthetic"] is None else max(len(train) // 10, 1)
    train, val = split_train_val(train, val_size, seed=config["seed"])
    return train, val, test


class ResNetTask:
    unit = "images"  # what train_step counts: the loop logs images_per_sec

    def __init__(self, config: dict):
        self.config = config
        if config["device"] == "cuda" and not torch.cuda.is_available():
            raise UserError("this run trains on cuda, but no CUDA device is available here")
        self.device = torch.device(config["device"])
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU (LOCAL_RANK)
        if config["deterministic"]:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True)
        else:
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
        self.rank, self.world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if config["batch_size"] % self.world_size:
            raise UserError(f"batch size {config['batch_size']} does not divide among {self.world_size} processes; "
                            f"give a multiple of {self.world_size}")
        self.rank_batch = config["batch_size"] // self.world_size  # this rank's share of every batch
        started = time.perf_counter()
        train, self.val_set, self.test_set = load_data(config)
        self.startup_phases = {"data": time.perf_counter() - started}  # for jobs' first-step event
        batch = self.batch_size = config["batch_size"]
        if len(train) < batch:
            raise UserError(f"batch size {batch} is larger than the {len(train)} training images")
        self.mean, self.std = (t.to(self.device) for t in channel_stats(train.images))
        # the whole dataset lives on the device as uint8; batches are augmented there
        started = time.perf_counter()
        self.train_images, self.train_labels = train.images.to(self.device), train.labels.to(self.device)
        self.startup_phases["to_device"] = time.perf_counter() - started  # a GPU's initialisation included
        self.steps_per_epoch = len(train) // batch  # full batches only: BatchNorm on a batch of 1 fails
        self.total_steps = config["epochs"] * self.steps_per_epoch
        self.step = 0

        started = time.perf_counter()
        torch.manual_seed(config["seed"])
        self.model = build_model(config["block"], config["size"]).to(self.device)
        self.memory_format = torch.channels_last if config["channels_last"] else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.model_state = StateReader(self.model)  # model.state_dict(), without its walk at every save
        self.forward = self.model
        if dist.is_initialized():  # every rank starts from the same weights (same seed), DDP checks it
            self.forward = replicate(self.model, self.device)
        self.startup_phases["model"] = time.perf_counter() - started
        if config["compile"]:
            started = time.perf_counter()
            self.forward = compile_model(self.forward)  # imports torch._dynamo and inductor: seconds
            self.startup_phases["compile"] = time.perf_counter() - started
        started = time.perf_counter()
        # DDP's forward is a collective (it broadcasts rank 0's buffers): evaluation, whose slices may take
        # more batches on one rank than on another, runs the module itself
        self.eval_forward = self.model if dist.is_initialized() else self.forward
        # the graph's update is the fused kernel: one launch, and it reads the rate from a device tensor
        graphed = config["fast"] and self.device.type == "cuda" and not dist.is_initialized()
        self.optimizer_flags = {"fused": True if graphed else None, "foreach": None}
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config["lr"], momentum=config["momentum"],
                                         nesterov=config["nesterov"], weight_decay=config["weight_decay"],
                                         **self.optimizer_flags)
        # the first optimizer imports torch._dynamo, unless torch.compile did: seconds, paid at every start
        self.startup_phases["optimizer"] = time.perf_counter() - started
        total, spe = self.total_steps, self.steps_per_epoch
        schedule, warmup = config["schedule"], config["warmup_epochs"]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, total, spe, schedule, warmup))
        # each rank its own crops and flips (rank 0, or a single process, as before)
        self.augment_generator = torch.Generator(device=self.device).manual_seed(config["seed"] + 1_000_003 * self.rank)
        self._permutation_epoch, self._permutation = None, None
        self.graphed_step = GraphedStep(self.model, self.optimizer, self._step) if graphed else None

    # -- the contract of jobs.workload.Task --------------------------------------------------------
    def describe(self) -> str:
        depth = (6 if self.config["block"] == "standard" else 9) * self.config["size"] + 2
        return f"resnet-{depth} {self.config['block']}"

    def current_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def train_step(self) -> dict:
        epoch, position = divmod(self.step, self.steps_per_epoch)
        if self._permutation_epoch != epoch:
            self._permutation = epoch_permutation(len(self.train_labels), self.config["seed"], epoch).to(self.device)
            self._permutation_epoch = epoch
        first = position * self.config["batch_size"] + self.rank * self.rank_batch  # this rank's shard
        index = self._permutation[first:first + self.rank_batch]
        images = random_crop_flip(self.train_images[index], self.augment_generator)
        inputs = normalize(images, self.mean, self.std).contiguous(memory_format=self.memory_format)
        return self.train_on(inputs, self.train_labels[index])

    def train_on(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict:
        """One optimizer step on a prepared batch (normalized float inputs on the device)."""
        lr = self.current_lr()
        if self.graphed_step is not None:
            capturing = self.graphed_step.graph is None
            loss, correct = self.graphed_step(inputs, labels, lr)
            if capturing:  # for jobs' first-step event: what the graph's warm-up and capture cost
                self.startup_phases.update(self.graphed_step.seconds)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            loss, correct = self._step(inputs, labels)
        self.scheduler.step()
        self.step += 1
        return {"loss": loss, "correct": correct, "images": len(labels), "lr": lr}

    def _step(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss, backward and update: (loss, correct answers), on the device."""
        logits = self._logits(inputs)
        # logits in, log-softmax inside: no softmax before
        loss = F.cross_entropy(logits, labels, label_smoothing=self.config["label_smoothing"])
        loss.backward()
        self.optimizer.step()
        return loss.detach(), (logits.argmax(1) == labels).sum()

    def _logits(self, inputs: torch.Tensor, forward=None) -> torch.Tensor:
        """float32 logits. No autocast cache: a CUDA graph cannot capture one, and each weight is cast once anyway."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config["bf16"], cache_enabled=False):
            # `is None`, not `or`: a compiled module refuses truth tests (torch 2.13: "does not support len()")
            logits = (self.forward if forward is None else forward)(inputs)
        return logits.float()

    @torch.no_grad()
    def confusion(self, data: Dataset) -> tuple[torch.Tensor, float]:
        """(confusion matrix: a row per true class, a column per predicted one; the mean loss) over `data`.

        With several processes each rank scores its slice with rank 0's BatchNorm statistics (those that a
        checkpoint saves), and the counts are summed: every rank returns the same figures."""
        if dist.is_initialized():
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)
        self.model.eval()
        classes = self.model.fc.out_features
        confusion = torch.zeros(classes, classes, device=self.device)
        loss = torch.zeros((), device=self.device)
        shard = -(-len(data) // self.world_size)
        mine = range(self.rank * shard, min((self.rank + 1) * shard, len(data)))
        for start in range(mine.start, mine.stop, EVAL_BATCH):
            end = min(start + EVAL_BATCH, mine.stop)
            images = data.images[start:end].to(self.device)
            labels = data.labels[start:end].to(self.device)
            inputs = normalize(images, self.mean, self.std).contiguous(memory_format=self.memory_format)
            logits = self._logits(inputs, self.eval_forward)
            if self.config["eval_flip"]:  # the mirror image is as likely as the image: average both
                logits = (logits + self._logits(inputs.flip(3), self.eval_forward)) / 2
            loss += F.cross_entropy(logits, labels, reduction="sum")
            # one-hot products count (true, predicted) pairs: exact, and deterministic on a GPU (bincount is not)
            confusion += F.one_hot(labels, classes).T.float() @ F.one_hot(logits.argmax(1), classes).float()
        if dist.is_initialized():
            dist.all_reduce(confusion)
            dist.all_reduce(loss)
        self.model.train()
        return confusion.round().long().cpu(), loss.item() / len(data)

    def _score(self, data: Dataset) -> tuple[float, float]:
        confusion, loss = self.confusion(data)
        return confusion.trace().item() / len(data), loss

    def evaluate(self) -> dict:
        accuracy, loss = self._score(self.val_set)
        return {"val_accuracy": accuracy, "val_loss": loss}

    def final_metrics(self) -> dict:
        accuracy, loss = self._score(self.test_set)
        return {"test_accuracy": accuracy, "test_loss": loss}

    @property
    def class_names(self) -> list[str]:
        classes = self.model.fc.out_features
        return list(CIFAR10_CLASSES) if self.config["synthetic"] is None else [str(i) for i in range(classes)]

    def score(self, split: str) -> dict:
        """For scripts/evaluate.py: accuracy and loss on one split, per class, and the confusion matrix."""
        confusion, loss = self.confusion(self.val_set if split == "val" else self.test_set)
        per_class = (confusion.diagonal().double() / confusion.sum(1).clamp(min=1).double()).tolist()
        return {"accuracy": confusion.trace().item() / confusion.sum().item(), "loss": loss,
                "per_class_accuracy": per_class, "confusion_matrix": confusion.tolist()}

    def state_dict(self) -> dict:
        epoch, position = divmod(self.step, self.steps_per_epoch)
        return {"model": self.model_state(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "augment_generator": self.augment_generator.get_state(),
                "data": {"epoch": epoch, "position": position, "permutation_seed": self.config["seed"]},
                "step": self.step}

    def rank_state_dict(self) -> dict:
        """What differs between the ranks of a run trained by several processes: each one's crops and flips."""
        return {"augment_generator": self.augment_generator.get_state()}

    def load_rank_state_dict(self, state: dict) -> None:
        self.augment_generator.set_state(state["augment_generator"])

    def reseed_rank(self, seed: int) -> None:
        """Resumed by another number of processes: this rank's crops and flips drawn from a seed jobs/ derives."""
        self.augment_generator.manual_seed(seed)

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # this run's kernel choice, whichever path saved the state
            group.update(self.optimizer_flags)
        if self.graphed_step is not None:
            self.graphed_step.reset()  # new momentum buffers: the next step captures anew
        self.scheduler.load_state_dict(state["scheduler"])
        self.augment_generator.set_state(state["augment_generator"])
        self.step = state["step"]
        self._permutation_epoch = None


def compile_model(model: torch.nn.Module):
    """The model's forward with inductor's generated, fused kernels (on the fast path inside its CUDA graph).

    dynamic=False: the train batch, the evaluation batch and a last partial batch each get their own
    specialised kernels (a handful of shapes) rather than dynamic-shape ones."""
    return torch.compile(model, backend=COMPILE_BACKEND, dynamic=False)


class ResNetWorkload:
    """What jobs/ needs to know about this workload (jobs.workload.Workload)."""
    primary_metric = "val_accuracy"
    safe_to_change = run_config.SAFE_TO_CHANGE

    def validate(self, config: dict) -> None:
        run_config.validate(config)

    def complete(self, config: dict) -> dict:
        """A frozen config with the fields added since it was written (jobs.launch.plan asks before comparing)."""
        return run_config.complete(config)

    def build(self, config: dict) -> ResNetTask:
        return ResNetTask(config)

    def for_evaluation(self, config: dict, device: str) -> dict:
        """The config to evaluate a run's checkpoints with: on `device`, in fp32, without the fast path's settings
        (the checkpoints hold the plain module's weights, whatever path trained them)."""
        return {**config, "fast": False, "compile": False, "bf16": False, "channels_last": False,
                "deterministic": False, "device": run_config.resolve_device(device)}


WORKLOAD = ResNetWorkload()
REFERENCE = "resnet.task:WORKLOAD"
