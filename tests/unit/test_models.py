import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jobs.errors import UserError
from resnet.models import build_model, count_parameters


def weighted_layers(model: nn.Module) -> int:
    """Layers as the paper counts them: convs and the linear layer, not the 1x1 projection shortcuts."""
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) and "shortcut" not in name for name, m in model.named_modules())


def projections(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) and "shortcut" in name for name, m in model.named_modules())


@pytest.mark.parametrize("n, paper", [(3, 0.27e6), (5, 0.46e6), (7, 0.66e6), (9, 0.85e6), (18, 1.7e6)])
def test_standard_parameter_counts_match_the_paper(n, paper):
    model = build_model("standard", n)
    assert abs(count_parameters(model) - paper) / paper < 0.05
    assert weighted_layers(model) == 6 * n + 2


@pytest.mark.parametrize("n", [1, 2, 18])
def test_bottleneck_has_9n_plus_2_layers_and_4x_wide_outputs(n):
    model = build_model("bottleneck", n)
    assert weighted_layers(model) == 9 * n + 2
    assert model.fc.in_features == 256
    # Shape changes at the first block of every stack (16 -> 64, 64 -> 128 /2, 128 -> 256 /2).
    assert projections(model) == 3


def test_resnet164_is_about_1_7m_parameters():
    assert abs(count_parameters(build_model("bottleneck", 18)) - 1.7e6) / 1.7e6 < 0.05


def test_standard_projects_only_where_the_shape_changes():
    assert projections(build_model("standard", 3)) == 2


@pytest.mark.parametrize("block, widths", [("standard", (16, 32, 64)), ("bottleneck", (64, 128, 256))])
def test_stacks_halve_the_maps_and_widen(block, widths):
    model = build_model(block, 1)
    x = F.relu(model.stem(torch.randn(2, 3, 32, 32)))
    shapes = []
    for stack in model.stacks:
        x = stack(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(widths[0], 32, 32), (widths[1], 16, 16), (widths[2], 8, 8)]


@pytest.mark.parametrize("block", ["standard", "bottleneck"])
def test_outputs_are_logits_with_chance_level_loss_at_init(block):
    torch.manual_seed(0)
    model = build_model(block, 1).train()
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    logits = model(x)
    assert logits.shape == (64, 10)
    assert not torch.allclose(logits.sum(dim=1), torch.ones(64), atol=1e-3)
    assert (logits < 0).any()
    assert F.cross_entropy(logits, y).item() == pytest.approx(math.log(10), abs=0.5)


def test_num_classes_sets_the_output_width():
    assert build_model("standard", 1, num_classes=100)(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_init_is_kaiming_fan_out_and_unit_batch_norm():
    model = build_model("standard", 3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)
    big = max(convs, key=lambda c: c.weight.numel())  # 64x64x3x3: enough samples for its std
    fan_out = big.out_channels * big.kernel_size[0] * big.kernel_size[1]
    assert big.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


@pytest.mark.parametrize(
    "block, size", [("basic", 3), ("Standard", 3), ("standard", 0), ("bottleneck", -1), ("standard", 2.5)]
)
def test_bad_arguments_are_user_errors(block, size):
    with pytest.raises(UserError):
        build_model(block, size)


def test_count_parameters_counts_every_trainable_tensor():
    model = nn.Linear(3, 2)
    assert count_parameters(model) == 8
    model.bias.requires_grad_(False)
    assert count_parameters(model) == 6
