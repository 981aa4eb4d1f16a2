"""A real task as small as one can be, for the direct tests of the loop's components: a linear regression
trained by SGD on 16 fixed samples, 4 per batch, in its own permutation (seeded by the epoch)."""
import torch

from jobs.errors import UserError


class TinyTask:
    unit = "samples"

    def __init__(self, config: dict):
        self.config = config
        generator = torch.Generator().manual_seed(config.get("seed", 0))
        self.inputs = torch.randn(16, 3, generator=generator)
        self.targets = self.inputs @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(16, generator=generator)
        self.batch_size = 4
        self.steps_per_epoch = 16 // self.batch_size
        self.total_steps = config.get("epochs", 3) * self.steps_per_epoch
        self.step = 0
        torch.manual_seed(config.get("seed", 0))
        self.model = torch.nn.Linear(3, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.get("lr", 0.1))

    def train_step(self) -> dict:
        epoch, position = divmod(self.step, self.steps_per_epoch)
        order = torch.randperm(16, generator=torch.Generator().manual_seed(epoch))
        index = order[position * self.batch_size:(position + 1) * self.batch_size]
        prediction = self.model(self.inputs[index]).squeeze(1)
        loss = torch.nn.functional.mse_loss(prediction, self.targets[index])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.step += 1
        correct = ((prediction - self.targets[index]).abs() < 0.5).sum()
        return {"loss": loss.detach(), "samples": len(index), "correct": correct, "lr": self.config.get("lr", 0.1)}

    def evaluate(self) -> dict:
        with torch.no_grad():
            error = torch.nn.functional.mse_loss(self.model(self.inputs).squeeze(1), self.targets).item()
        return {"val_loss": error, "val_score": 1 / (1 + error)}

    def final_metrics(self) -> dict:
        return {"test_score": self.evaluate()["val_score"]}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]

    def describe(self) -> str:
        return "tiny-linear"


class TinyWorkload:
    primary_metric = "val_score"
    safe_to_change = frozenset({"epochs"})

    def validate(self, config: dict) -> None:
        if config.get("epochs", 3) <= 0:
            raise UserError(f"epochs must be positive, got {config['epochs']}")

    def build(self, config: dict) -> TinyTask:
        return TinyTask(config)


WORKLOAD = TinyWorkload()
