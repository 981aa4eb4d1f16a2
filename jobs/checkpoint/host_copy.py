"""Host copies of a checkpoint's state, taken without making training wait for the device."""
import copy

import torch


def _dense(tensor: torch.Tensor) -> bool:
    """Its elements fill one block of memory (contiguous or channels_last): it can be copied as a flat block."""
    return tensor.is_contiguous() or (tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last))


# immutable leaves: shared with the state, not copied (an optimizer state dict holds hundreds of them)
_ATOMIC = frozenset({int, float, bool, str, bytes, type(None), torch.dtype, torch.device})


class _Group:
    """The tensors of one (device, dtype): views into one flat buffer on the device and one on the host."""

    def __init__(self, device: torch.device, dtype: torch.dtype, members: list):
        self.indices = [index for index, _, _ in members]  # positions in the state's staged tensors
        total = sum(torch.Size(shape).numel() for _, shape, _ in members)
        self.device_flat = torch.empty(total, dtype=dtype, device=device)
        self.host_flat = torch.empty(total, dtype=dtype, pin_memory=device.type == "cuda")
        self.device_views, self.host_views, offset = [], [], 0
        for _, shape, stride in members:
            self.device_views.append(self.device_flat.as_strided(shape, stride, offset))
            self.host_views.append(self.host_flat.as_strided(shape, stride, offset))
            offset += torch.Size(shape).numel()


class HostCopy:
    """Host copies of a state's tensors for the background writer, taken without making training wait.

    The device tensors of one dtype are gathered by one multi-tensor copy into a staging buffer on the
    device, which goes to a pinned host buffer in one device-to-host copy (hundreds of small copies cost
    ~20 us each to launch); both buffers are kept from one save to the next. Nothing waits: a CUDA event
    per device marks when the copy has landed, and the writer thread waits for it before it reads. Kernels
    queued after the copies cannot change what they copy (same stream). CPU tensors are cloned.
    `on` names the device types staged this way (tests stage CPU tensors to check the layout).

    Training waits for the Python part, so it is one walk over the state: while the tensors have the
    layout of the last save (every save but the first), the walk puts the kept host views straight into
    the copy it builds; otherwise it allocates new buffers and walks again."""

    def __init__(self, on: tuple[str, ...] = ("cuda",)):
        self.on = on
        self._layout: list = []  # the (shape, stride, dtype, device) of every staged tensor, in order, as allocated
        self._host_views: list = []  # the host view of each staged tensor, by position
        self._groups: list[_Group] = []

    def take(self, state) -> tuple[object, list]:
        """(host state, events to wait for before reading it)."""
        with torch.no_grad():  # the copies need no autograd bookkeeping (parameters require grad)
            host_state, staged, layout = self._walk(state)
            if layout != self._layout:  # the first save, or tensors of another shape: new buffers
                self._allocate(layout)
                host_state, staged, _ = self._walk(state)
            events = []
            for group in self._groups:
                torch._foreach_copy_(group.device_views, [staged[index] for index in group.indices])
                group.host_flat.copy_(group.device_flat, non_blocking=True)
                if group.device_flat.device.type == "cuda":
                    event = torch.cuda.Event()
                    event.record(torch.cuda.current_stream(group.device_flat.device))
                    events.append(event)
        return host_state, events

    def _walk(self, state) -> tuple[object, list, list]:
        """(a copy of the state whose staged tensors are the kept host views where their layout matches,
        the staged tensors, their layout)."""
        staged: list[torch.Tensor] = []
        layout: list[tuple] = []
        kept, views, on = self._layout, self._host_views, self.on

        def walk(value):
            if type(value) in _ATOMIC:
                return value
            if isinstance(value, dict):
                return {key: walk(item) for key, item in value.items()}
            if isinstance(value, torch.Tensor):
                index = len(staged)
                where = (value.shape, value.stride(), value.dtype, value.device)
                # a kept layout is a staged one (dense, on a staged device): no need to check it again
                if index < len(kept) and kept[index] == where:
                    staged.append(value)
                    layout.append(where)
                    return views[index]
                if value.device.type in on and _dense(value):
                    staged.append(value)
                    layout.append(where)
                    return None  # a new layout: new buffers and a second walk, so no value is needed
                return value.to("cpu", copy=True)
            if isinstance(value, (list, tuple)):
                if _ATOMIC.issuperset(map(type, value)):  # e.g. a param group's parameter indices
                    return type(value)(value)
                return type(value)(walk(item) for item in value)
            return copy.deepcopy(value)

        return walk(state), staged, layout

    def _allocate(self, layout: list) -> None:
        """One flat buffer per (device, dtype) on each side, and views into them shaped like the tensors."""
        by_group: dict = {}
        for index, (shape, stride, dtype, device) in enumerate(layout):
            by_group.setdefault((device, dtype), []).append((index, shape, stride))
        self._groups = [_Group(device, dtype, members) for (device, dtype), members in by_group.items()]
        self._host_views = [None] * len(layout)
        for group in self._groups:
            for index, view in zip(group.indices, group.host_views, strict=True):
                self._host_views[index] = view
        self._layout = layout


def snapshot(obj):
    """A copy of a state dict whose tensors live on the host, taken synchronously (one copy per tensor)."""
    return HostCopy(on=()).take(obj)[0]
