"""DistributedDataParallel that resumes bit-exactly: all gradients in one bucket, all-reduced in the order of
the model's parameters (docs/design.md, "Decisions")."""
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

ONE_BUCKET_MB = 4096  # every gradient of a model up to a billion fp32 parameters in one bucket


def all_reduce_in_model_order(model: torch.nn.Module, world_size: int):
    """A DDP communication hook: the mean of the gradients over the ranks, all-reduced in the order of the
    model's parameters.

    DDP regroups its bucket after the first step of each process (in the order the gradients became ready),
    and with more than two ranks where a gradient sits in the all-reduced buffer changes the order of its
    sum: a resumed process (its first step) would add in another order than the uninterrupted one. One
    bucket, summed in a fixed order, keeps a resumed run bit-exact for any number of ranks."""
    position = {id(p): i for i, p in enumerate(model.parameters())}

    def hook(process_group, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        gradients, parameters = bucket.gradients(), bucket.parameters()
        order = sorted(range(len(parameters)), key=lambda i: position[id(parameters[i])])
        flat = torch.cat([gradients[i].reshape(-1) for i in order]).div_(world_size)

        def scatter(future: torch.futures.Future) -> torch.Tensor:
            reduced = future.value()[0]
            offset = 0
            for i in order:
                gradients[i].copy_(reduced[offset:offset + gradients[i].numel()].view_as(gradients[i]))
                offset += gradients[i].numel()
            return bucket.buffer()

        return dist.all_reduce(flat, group=process_group, async_op=True).get_future().then(scatter)

    return hook



def replicate(model: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """`model` under DDP with one bucket and the fixed-order all-reduce (torch.distributed is initialized)."""
    if device.type == "cuda":  # "cuda" alone is this rank's own GPU (jobs.distributed.process_group set it)
        index = device.index if device.index is not None else torch.cuda.current_device()
    ddp = DistributedDataParallel(model, device_ids=[index] if device.type == "cuda" else None,
                                  bucket_cap_mb=ONE_BUCKET_MB)
    ddp.register_comm_hook(None, all_reduce_in_model_order(model, dist.get_world_size()))
    return ddp
