"""The workload contract checked where it enters the loop: what train_step(), evaluate() and final_metrics()
return. Plain numbers and one-element tensors are taken where the meaning is clear; anything else stops the run
with a ContractError that names what came back and what the contract asks for
(docs/design.md, "The workload contract")."""
import numbers

import torch

from jobs.errors import CONTRACT, ContractError


def _is_number(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.is_complex()
    return isinstance(value, numbers.Real)


def _shown(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:80]


def step_figures(out) -> dict:
    """train_step()'s dict, checked; a bare number is its loss. Tensors stay as they are (on the device)."""
    if _is_number(out):
        return {"loss": out}
    if not isinstance(out, dict):
        raise ContractError(f"train_step() returned {_shown(out)}; it must return the loss, or a dict with "
                            f"\"loss\" and optional counts and numbers ({CONTRACT})")
    if "loss" not in out:
        raise ContractError(f"train_step() returned a dict without \"loss\" (keys: {', '.join(map(str, out))}) "
                            f"({CONTRACT})")
    for key, value in out.items():
        if not isinstance(key, str) or not _is_number(value):
            raise ContractError(f"train_step() returned {key!r}: {_shown(value)}; every value must be a number or "
                                f"a one-element tensor ({CONTRACT})")
    return out


def plain_metrics(metrics, where: str) -> dict[str, float]:
    """evaluate()'s or final_metrics()'s dict as plain floats (they go into JSON files and tables)."""
    if not isinstance(metrics, dict):
        raise ContractError(f"{where} returned {_shown(metrics)}; it must return a dict of names to numbers "
                            f"({CONTRACT})")
    plain = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not _is_number(value):
            raise ContractError(f"{where} returned {key!r}: {_shown(value)}; every value must be a number or a "
                                f"one-element tensor ({CONTRACT})")
        plain[key] = float(value)
    return plain
