"""One whole training step (forward, loss, backward, SGD update) captured as one CUDA graph and replayed.

At batch 128 the ResNet's GPU work per step (~2-4 ms on an H100) is less than what the CPU spends
launching its ~500 kernels one by one; a replay launches them all at once. The augmented batch is
copied into the graph's static input buffers, outside the graph (augmentation draws from the task's
generator there, so its state alone still fixes every batch). The learning rate is read by the fused
SGD kernel from a device tensor filled before each replay, so the schedule moves without re-capture.

Capturing needs a few warm-up steps first (cuDNN's autotuning, the allocator, lazily created
momentum buffers, torch.compile's compilation); they run on the real batch and are then undone, so
the run trains exactly the steps it counts.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

WARMUP_STEPS = 3  # what torch's own whole-network capture example uses


class GraphedStep:
    """`step(inputs, labels, lr) -> (loss, correct)`, with `body(inputs, labels) -> (loss, correct)` doing
    forward, loss, backward and `optimizer.step()` on tensors that keep their addresses (static shapes)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 body: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]):
        self.model, self.optimizer, self.body = model, optimizer, body
        self.graph = None
        self.seconds: dict[str, float] = {}  # the last capture's warm-up (compilation included) and recording

    def reset(self) -> None:
        """Forget the graph (the optimizer's state tensors were replaced, e.g. by load_state_dict)."""
        self.graph = None

    def __call__(self, inputs: torch.Tensor, labels: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        if self.graph is None:
            self._capture(inputs, labels)
        self.inputs.copy_(inputs)
        self.labels.copy_(labels)
        self.lr.fill_(lr)
        self.graph.replay()
        # copies: the loop keeps them past the next replay, which overwrites the graph's own outputs
        return self.loss.clone(), self.correct.clone()

    def _capture(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        self.inputs, self.labels = inputs.clone(), labels.clone()
        groups = self.optimizer.param_groups
        self.lr = torch.tensor(groups[0]["lr"], dtype=torch.float32, device=inputs.device)
        float_lrs = [group["lr"] for group in groups]
        for group in groups:  # the fused kernel reads the rate from the tensor, at every replay
            group["lr"] = self.lr
        try:
            started = time.perf_counter()
            undo = self._undo_record()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self.optimizer.zero_grad(set_to_none=True)
                    self.body(self.inputs, self.labels)
            torch.cuda.current_stream().wait_stream(side)
            undo()
            torch.cuda.synchronize()  # capturing waits for the device anyway: the warm-up's time is its own
            warmed_up = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)  # the graph's backward allocates the grads it writes
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.loss, self.correct = self.body(self.inputs, self.labels)
            self.graph = graph
            self.seconds = {"graph_warm_up": warmed_up - started, "graph_capture": time.perf_counter() - warmed_up}
        finally:  # between replays the optimizer holds plain floats again: its state dict stays as it was
            for group, lr in zip(groups, float_lrs, strict=True):
                group["lr"] = lr

    def _undo_record(self) -> Callable[[], None]:
        """A function that puts the weights, buffers and momentum back as they are now, in place (the
        graph keeps their addresses). A momentum buffer the warm-up created is zeroed: SGD's first step
        on a zero buffer equals its first step without one (0 * momentum + grad)."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        had_buffer = {p for p in params if self.optimizer.state.get(p, {}).get("momentum_buffer") is not None}
        tensors += [self.optimizer.state[p]["momentum_buffer"] for p in params if p in had_buffer]
        saved = [t.detach().clone() for t in tensors]

        @torch.no_grad()
        def undo():
            for tensor, value in zip(tensors, saved, strict=True):
                tensor.copy_(value)
            for p in params:
                buffer = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if p not in had_buffer and buffer is not None:
                    buffer.zero_()
        return undo
