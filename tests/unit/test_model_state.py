"""jobs.checkpoint.model_state.StateReader: what Module.state_dict() returns, without its walk at every save."""
import torch

from jobs.checkpoint.model_state import StateReader
from resnet.models import build_model


def same(got, want) -> None:
    """Equal keys in equal order, each tensor the module's own (same storage, shape and strides), detached."""
    assert list(got) == list(want)
    for key, tensor in want.items():
        assert got[key].data_ptr() == tensor.data_ptr() and got[key].stride() == tensor.stride(), key
        assert torch.equal(got[key], tensor) and not got[key].requires_grad, key
    assert got._metadata == want._metadata


def test_it_follows_the_module_through_training_loading_and_conversion():
    for block in ("standard", "bottleneck"):
        model = build_model(block, 1)
        reader = StateReader(model)
        same(reader(), model.state_dict())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        model(torch.randn(4, 3, 32, 32)).sum().backward()
        optimizer.step()  # new values, and BatchNorm's running statistics and counters
        same(reader(), model.state_dict())
        model.load_state_dict(build_model(block, 1).state_dict())
        same(reader(), model.state_dict())
        model.to(memory_format=torch.channels_last)  # new tensors behind the same names
        same(reader(), model.state_dict())


def test_it_sees_what_is_registered_later_and_defers_to_hooks():
    model = build_model("standard", 1)
    reader = StateReader(model)
    reader()
    model.fc = torch.nn.Linear(model.fc.in_features, 10, bias=False)  # a submodule replaced: one entry fewer
    same(reader(), model.state_dict())
    model.stem.register_buffer("temperature", torch.ones(1))  # a new entry, early in the order
    same(reader(), model.state_dict())

    def drop_temperature(module, state, prefix, local_metadata):
        del state[prefix + "temperature"]
    model.stem.register_state_dict_post_hook(drop_temperature)
    assert "stem.temperature" not in reader()
    same(reader(), model.state_dict())
