"""A module's state dict as Module.state_dict() makes it, in a fraction of its time (checkpoint snapshots).

Training waits while a snapshot is taken, and Module.state_dict() spends most of that time walking the
modules (ResNet-32: ~0.5 ms of Python on the CPU, for 200 tensors). Which entries a module has is fixed
once it is built, so StateReader remembers where each one lives (the module's own parameter or buffer
dict, and the name in it) and reads the live tensors from there on every call: tensors replaced since
(`.to()`, a buffer reassigned) are seen. What would change the entries themselves — a parameter, buffer or
submodule registered anywhere (torch's global registration hooks) — makes it look again. While any of its
modules has state-dict hooks (checked at every call: registering one fires no global hook), extra state
or its own _save_to_state_dict, the module is read by Module.state_dict() itself.
"""
from collections import OrderedDict

import torch
from torch.nn.modules import module as torch_module

_registrations = 0  # bumped whenever any module registers a parameter, buffer or submodule


def _registered(*_args) -> None:
    global _registrations
    _registrations += 1


torch_module.register_module_parameter_registration_hook(_registered)
torch_module.register_module_buffer_registration_hook(_registered)
torch_module.register_module_module_registration_hook(_registered)


def _hooked(module: torch.nn.Module) -> bool:
    return bool(module._state_dict_hooks or module._state_dict_pre_hooks)


def _saves_its_own_way(module: torch.nn.Module) -> bool:
    cls = type(module)
    return (cls._save_to_state_dict is not torch.nn.Module._save_to_state_dict
            or getattr(cls, "get_extra_state", torch.nn.Module.get_extra_state) is not torch.nn.Module.get_extra_state)


class StateReader:
    """`reader()` returns what `module.state_dict()` returns: the same keys in the same order, detached
    tensors sharing the module's storage, and the `_metadata` that load_state_dict reads."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self._modules: list[torch.nn.Module] = []
        self._entries: list | None = None  # (key, the dict holding the tensor, its name there)
        self._metadata = None
        self._seen = -1  # the registration count the entries were taken at

    def __call__(self) -> OrderedDict:
        if self._seen != _registrations:
            self._look()
        if self._entries is None or any(_hooked(module) for module in self._modules):  # torch's own walk
            return self.module.state_dict()
        state = OrderedDict()
        for key, holder, name in self._entries:
            state[key] = holder[name].detach()
        state._metadata = self._metadata
        return state

    def _look(self) -> None:
        self._seen = _registrations
        modules = list(self.module.named_modules(remove_duplicate=False))  # state_dict's order, shared ones twice
        self._modules = [module for _, module in modules]
        if any(_saves_its_own_way(module) for module in self._modules):
            self._entries = None
            return
        entries = []
        for prefix, module in modules:
            prefix = f"{prefix}." if prefix else ""
            entries += [(prefix + name, module._parameters, name)
                        for name, param in module._parameters.items() if param is not None]
            entries += [(prefix + name, module._buffers, name) for name, buffer in module._buffers.items()
                        if buffer is not None and name not in module._non_persistent_buffers_set]
        self._entries = entries
        self._metadata = self.module.state_dict()._metadata
