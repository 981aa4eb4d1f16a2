"""The run's scalars for TensorBoard (--tensorboard, the `tensorboard` extra), under `<run>/tensorboard/`: each
step's loss and learning rate, and each epoch's figures. A resumed run continues the same curves: its writer
purges what a killed process wrote past the checkpoint it resumes from, so no step is shown twice; and everything
up to a checkpoint is on disk before that checkpoint is taken, so no step is missing."""
import torch

DIRECTORY = "tensorboard"


class TensorBoardLog:
    def __init__(self, directory, resumed_at: int | None):
        from torch.utils.tensorboard import SummaryWriter  # only with --tensorboard: the extra's package

        # an event at a step >= purge_step written by an earlier process is dropped by TensorBoard's readers (a
        # restart from no checkpoint at all purges from step 1)
        self.writer = SummaryWriter(log_dir=str(directory), purge_step=(resumed_at or 0) + 1)
        self.pending: list[tuple[int, object, object]] = []  # (step, loss, lr): converted at the next flush

    def step(self, step: int, out: dict) -> None:
        loss = out["loss"].detach() if isinstance(out["loss"], torch.Tensor) else out["loss"]
        self.pending.append((step, loss, out.get("lr")))

    def epoch(self, record: dict) -> None:
        for key, value in record.items():
            if key not in ("epoch", "step", "time") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"epoch/{key}", value, record["step"])

    def flush(self) -> None:
        """Write the pending steps (one device sync for all of them) and put the file on disk."""
        if self.pending:
            first = self.pending[0][1]
            device = first.device if isinstance(first, torch.Tensor) else "cpu"
            losses = torch.stack([torch.as_tensor(loss).float().reshape(()).to(device) for _, loss, _ in self.pending])
            for (step, _, lr), loss in zip(self.pending, losses.tolist(), strict=True):
                self.writer.add_scalar("train/loss", loss, step)
                if lr is not None:
                    self.writer.add_scalar("train/lr", float(lr), step)
            self.pending.clear()
        self.writer.flush()

    def close(self) -> None:
        self.flush()
        self.writer.close()


class NoTensorBoard:
    """Without --tensorboard, and on the ranks other than 0."""

    def step(self, step: int, out: dict) -> None:
        pass

    def epoch(self, record: dict) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
