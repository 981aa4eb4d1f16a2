"""Workloads that break the contract in one way each, as a newcomer's might: tests/integration/test_contract.py
trains each through scripts/run.py and checks the one line (or the traceback) it ends with."""
import torch

from tests.tiny_task import TinyTask, TinyWorkload


class Workload(TinyWorkload):
    """A TinyWorkload whose task is `task_class`."""

    def __init__(self, task_class, safe_to_change=frozenset({"epochs"})):
        self.task_class, self.safe_to_change = task_class, safe_to_change

    def build(self, config):
        return self.task_class(config)


class FloatLoss(TinyTask):
    def train_step(self):
        return float(super().train_step()["loss"])  # the meaning is clear: the loss


class LossOnly(TinyTask):
    def train_step(self):
        return {"loss": super().train_step()["loss"]}  # no count, no accuracy: the loss is enough


class TextStep(TinyTask):
    def train_step(self):
        super().train_step()
        return "done"


class TensorMetrics(TinyTask):
    def evaluate(self):
        return {"val_score": torch.tensor(0.5), "val_per_sample": torch.ones(16)}


class NoModelKey(TinyTask):
    def state_dict(self):  # its weights under another name: the whole task state is digested instead
        return {"weights": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]


class Opaque:
    """Something torch.load(weights_only=True) refuses to rebuild."""


class OpaqueState(TinyTask):
    def state_dict(self):
        return {**super().state_dict(), "helper": Opaque()}


class BuggyStep(TinyTask):
    def train_step(self):
        if self.step == 5:
            return {"loss": 1 / 0}  # the workload's own bug, raised in its code
        return super().train_step()


FLOAT_LOSS = Workload(FloatLoss)
LOSS_ONLY = Workload(LossOnly)
TEXT_STEP = Workload(TextStep)
TENSOR_METRICS = Workload(TensorMetrics)
NO_MODEL_KEY = Workload(NoModelKey)
OPAQUE_STATE = Workload(OpaqueState)
BUGGY_STEP = Workload(BuggyStep)
NOTHING_SAFE = Workload(TinyTask, safe_to_change=frozenset())


class ForgetsItsOptimizer(TinyTask):
    """Adam's moments are not in its state: a resumed run starts them from zero."""

    def __init__(self, config):
        super().__init__(config)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.01)

    def state_dict(self):
        return {"model": self.model.state_dict(), "step": self.step}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.step = state["step"]


class LoopsOverALoader(TinyTask):
    """The usual loop: `for batch in loader` with shuffle=True, a new iterator each epoch, its generator unsaved."""

    def __init__(self, config):
        super().__init__(config)
        dataset = torch.utils.data.TensorDataset(self.inputs, self.targets)
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, drop_last=True,
                                                  generator=torch.Generator().manual_seed(0))
        self.batches = None

    def train_step(self):
        if self.batches is None or self.step % self.steps_per_epoch == 0:
            self.batches = iter(self.loader)
        inputs, targets = next(self.batches)
        loss = torch.nn.functional.mse_loss(self.model(inputs).squeeze(1), targets)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"loss": loss.detach(), "samples": len(targets)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.batches = None


class ShufflesFromTheGlobalRNG(LoopsOverALoader):
    """The same loop with a loader that shuffles from the global RNG: saved, but the epoch starts over."""

    def __init__(self, config):
        super().__init__(config)
        self.loader = torch.utils.data.DataLoader(self.loader.dataset, batch_size=4, shuffle=True, drop_last=True)


FORGETS_ITS_OPTIMIZER = Workload(ForgetsItsOptimizer)
LOOPS_OVER_A_LOADER = Workload(LoopsOverALoader)
SHUFFLES_FROM_THE_GLOBAL_RNG = Workload(ShufflesFromTheGlobalRNG)


class RankStateNoReseed(TinyTask):
    """Keeps per-rank state but cannot derive it for another number of processes (no reseed_rank)."""

    def rank_state_dict(self) -> dict:
        return {}

    def load_rank_state_dict(self, state: dict) -> None:
        pass


RANK_STATE_WORKLOAD = Workload(RankStateNoReseed)
