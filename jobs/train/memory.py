"""Running out of memory: what the loop catches, and how much memory the device had."""
import os

import torch

# CUDA's allocator raises torch.cuda.OutOfMemoryError (also without a GPU: the class always exists);
# the host raises MemoryError. The kernel's OOM killer sends SIGKILL instead: see jobs.supervise.
OUT_OF_MEMORY = (torch.cuda.OutOfMemoryError, MemoryError)


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def out_of_memory_text(error: BaseException) -> str:
    """The device's memory, for the one-line message: "cuda:0 (NVIDIA H100, 79.1 GiB; this run's peak ...)"."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        if not torch.cuda.is_available():
            return "CUDA ran out of memory (no CUDA device is visible to read its size)"
        device = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(device)
        return (f"cuda:{device} ({props.name}) has {_gib(props.total_memory)}, this run's peak was "
                f"{_gib(torch.cuda.max_memory_allocated(device))}")
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return "the host ran out of memory"
    return f"the host ran out of memory ({_gib(total)} of RAM)"
