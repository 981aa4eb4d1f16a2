"""A character-level language model over a text file: a second workload, deliberately unlike the ResNet.

    python scripts/run.py --workload examples.char_lm:WORKLOAD --config examples/char_lm.json --run-id lm

Its data iterator is not a per-epoch permutation but a position in one token stream: the text is cut
into `batch_size` parallel tracks read side by side, `context` characters per step; at the end of the
tracks each one restarts at a random offset drawn from the task's own generator. A GRU predicts each
next byte. Everything that decides the future (weights, Adam's moments, the position, the generator,
the step) is in state_dict(), so jobs/ can stop and resume it exactly, like the ResNet.
"""
import math
import os

import torch
import torch.nn.functional as F

from jobs.errors import UserError

DEFAULTS = {"text": None, "context": 32, "batch_size": 16, "embed": 32, "hidden": 64, "steps_per_epoch": 40,
            "epochs": 5, "lr": 3e-3, "seed": 0, "held_out": 0.1}


class CharModel(torch.nn.Module):
    def __init__(self, embed: int, hidden: int):
        super().__init__()
        self.embed = torch.nn.Embedding(256, embed)  # bytes: no tokenizer
        self.gru = torch.nn.GRU(embed, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, 256)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(self.embed(tokens))[0])


class CharTask:
    unit = "tokens"  # what train_step counts: the loop logs tokens_per_sec, and the loss per token

    def __init__(self, config: dict):
        self.config = config
        with open(config["text"], "rb") as f:
            data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()
        split = int(len(data) * (1 - config["held_out"]))
        self.train_tokens, self.held_out = data[:split], data[split:]
        self.batch_size = config["batch_size"]  # tracks read side by side: named if the device runs out of memory
        self.steps_per_epoch = config["steps_per_epoch"]
        self.total_steps = config["epochs"] * self.steps_per_epoch
        self.step = 0
        torch.manual_seed(config["seed"])  # the initial weights (jobs/ checkpoints the global RNG too)
        self.model = CharModel(config["embed"], config["hidden"])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config["lr"])
        self.generator = torch.Generator().manual_seed(config["seed"])
        self.track_length = len(self.train_tokens) // config["batch_size"]
        self.position = 0  # where the tracks are read next
        self.offsets = torch.arange(config["batch_size"]) * self.track_length  # each track's start

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.config["context"]
        if self.position + context + 1 > self.track_length:  # the tracks ran out: new random starts
            starts = max(len(self.train_tokens) - self.track_length, 1)
            self.offsets = torch.randint(0, starts, (self.config["batch_size"],), generator=self.generator)
            self.position = 0
        index = self.offsets[:, None] + self.position + torch.arange(context + 1)
        self.position += context
        window = self.train_tokens[index]
        return window[:, :-1], window[:, 1:]

    def train_step(self) -> dict:
        inputs, targets = self._batch()
        logits = self.model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, 256), targets.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        correct = (logits.argmax(-1) == targets).sum()  # next bytes predicted right: the per-byte accuracy
        return {"loss": loss.detach(), "correct": correct, "tokens": targets.numel(), "lr": self.config["lr"]}

    @torch.no_grad()
    def evaluate(self) -> dict:
        tokens = self.held_out[: len(self.held_out) // (self.config["context"] + 1) * (self.config["context"] + 1)]
        windows = tokens.view(-1, self.config["context"] + 1)
        logits = self.model(windows[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), windows[:, 1:].reshape(-1)).item()
        accuracy = (logits.argmax(-1) == windows[:, 1:]).float().mean().item()
        return {"val_accuracy": accuracy, "val_loss": loss, "val_bits_per_byte": loss / math.log(2)}

    def final_metrics(self) -> dict:
        return {f"test_{k[4:]}": v for k, v in self.evaluate().items()}  # one held-out text: reported again

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                "stream": {"position": self.position, "offsets": self.offsets.clone(),
                           "generator": self.generator.get_state()}}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.position = state["stream"]["position"]
        self.offsets = state["stream"]["offsets"].clone()
        self.generator.set_state(state["stream"]["generator"])

    def describe(self) -> str:
        return f"char-gru-{self.config['hidden']}"


class CharWorkload:
    primary_metric = "val_accuracy"
    safe_to_change = frozenset({"epochs"})

    def complete(self, config: dict) -> dict:
        return {**DEFAULTS, **config}

    def validate(self, config: dict) -> None:
        config = self.complete(config)
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise UserError(f"unknown config fields: {', '.join(sorted(unknown))}")
        if not config["text"] or not os.path.isfile(config["text"]):
            raise UserError(f"text: no file {config['text']!r} (give a text file to learn from)")
        for key in ("context", "batch_size", "embed", "hidden", "steps_per_epoch", "epochs"):
            if not isinstance(config[key], int) or config[key] <= 0:
                raise UserError(f"{key} must be a positive integer, got {config[key]!r}")
        held_out = os.path.getsize(config["text"]) * config["held_out"]
        if os.path.getsize(config["text"]) - held_out < config["batch_size"] * (config["context"] + 1) or \
                held_out < config["context"] + 1:
            raise UserError(f"{config['text']} is too short for {config['batch_size']} tracks of "
                            f"{config['context'] + 1} bytes and a held-out part")

    def build(self, config: dict) -> CharTask:
        return CharTask(self.complete(config))


WORKLOAD = CharWorkload()
