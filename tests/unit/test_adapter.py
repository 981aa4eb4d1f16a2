"""jobs.adapter: the usual pieces as a task whose state holds everything, and its workload's config checks."""
import pytest
import torch

from examples.spirals import WORKLOAD
from jobs.errors import UserError

SMALL = {"points": 128, "batch_size": 32, "epochs": 2, "workers": 0}


def test_its_state_continues_the_task_exactly_and_its_loader_seeks():
    whole, cut = WORKLOAD.build(SMALL), WORKLOAD.build(SMALL)
    for _ in range(6):
        whole.train_step()
    for _ in range(3):
        cut.train_step()
    resumed = WORKLOAD.build(SMALL)
    resumed.load_state_dict(cut.state_dict())
    for _ in range(3):
        resumed.train_step()
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(),
                                                  resumed.model.state_dict().values(), strict=True))
    assert set(resumed.state_dict()) == {"model", "optimizer", "scheduler", "step", "total_steps"}
    assert resumed.steps_per_epoch == 4 and resumed.total_steps == 8 and resumed.batch_size == 32


def test_its_config_names_every_field_it_has():
    WORKLOAD.validate(SMALL)
    with pytest.raises(UserError, match="unknown config fields: epoch .this workload has batch_size, epochs"):
        WORKLOAD.validate({"epoch": 3})
    with pytest.raises(UserError, match="epochs must be a positive integer, got 0"):
        WORKLOAD.validate({"epochs": 0})
    assert WORKLOAD.complete({"epochs": 3})["points"] == 2048
