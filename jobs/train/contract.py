"""The workload contract checked where it enters the loop: what train_step(), evaluate() and final_metrics()
return. Plain numbers and one-element tensors are taken where the meaning is clear; anything else stops the run
with a ContractError that names what came back and what the contract asks for
(docs/design.md, "The workload contract")."""
import numbers

import numpy as np
import torch

from jobs.errors import CONTRACT, ContractError


def _number(value):
    """The value as the loop takes a number: itself (a real number, a one-element tensor, left on its device),
    the element of a one-element array or list (e.g. scheduler.get_last_lr()); None if it is none of these."""
    if isinstance(value, torch.Tensor):
        return value if value.numel() == 1 and not value.is_complex() else None
    if isinstance(value, np.ndarray) and value.size == 1 and np.isrealobj(value):
        return value.item()
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return _number(value[0])
    return value if isinstance(value, numbers.Real) else None


def _shown(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:80]


def step_figures(out) -> dict:
    """train_step()'s dict, checked and normalised; a bare number is its loss, an "lr" of None (no scheduler)
    is left out. Tensors stay as they are (on the device)."""
    if _number(out) is not None:
        return {"loss": _number(out)}
    if not isinstance(out, dict):
        raise ContractError(f"train_step() returned {_shown(out)}; it must return the loss, or a dict with "
                            f"\"loss\" and optional counts and numbers ({CONTRACT})")
    if "loss" not in out:
        raise ContractError(f"train_step() returned a dict without \"loss\" (keys: {', '.join(map(str, out))}) "
                            f"({CONTRACT})")
    figures = {}
    for key, value in out.items():
        if key == "lr" and value is None:
            continue
        if not isinstance(key, str) or _number(value) is None:
            raise ContractError(f"train_step() returned {key!r}: {_shown(value)}; every value must be a number or "
                                f"a one-element tensor ({CONTRACT})")
        figures[key] = _number(value)
    return figures


def plain_metrics(metrics, where: str) -> dict[str, float]:
    """evaluate()'s or final_metrics()'s dict as plain floats (they go into JSON files and tables)."""
    if not isinstance(metrics, dict):
        raise ContractError(f"{where} returned {_shown(metrics)}; it must return a dict of names to numbers "
                            f"({CONTRACT})")
    plain = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or _number(value) is None:
            raise ContractError(f"{where} returned {key!r}: {_shown(value)}; every value must be a number or a "
                                f"one-element tensor ({CONTRACT})")
        plain[key] = float(_number(value))
    return plain


def one_step(before: int, after: int) -> None:
    """train_step() advances task.step by one: the loop's cadence, its stops and its checkpoints count on it."""
    if after != before + 1:
        raise ContractError(f"train_step() must advance task.step by one; it went from {before} to {after} "
                            f"({CONTRACT})")
