"""What a resume may change (jobs.launch.plan.config_changes): only the workload's safe fields, only when asked."""
import pytest

from jobs.errors import UserError
from jobs.launch.plan import config_changes

FROZEN = {"epochs": 10, "lr": 0.1, "data_dir": "/a"}
SAFE = frozenset({"epochs", "data_dir"})


def test_the_same_config_changes_nothing():
    assert config_changes(FROZEN, dict(FROZEN), SAFE, set()) == {}


def test_a_safe_field_changes_when_asked_for():
    assert config_changes(FROZEN, {**FROZEN, "epochs": 12}, SAFE, {"epochs"}) == {"epochs": 12}
    with pytest.raises(UserError, match=r"changes the run being resumed \(epochs: run has 10, given 12\); "
                                        r"pass --override epochs to allow it"):
        config_changes(FROZEN, {**FROZEN, "epochs": 12}, SAFE, set())


def test_any_other_field_contradicts_the_run():
    with pytest.raises(UserError, match=r"contradicts the run being resumed \(lr: run has 0.1, given 0.2\)"):
        config_changes(FROZEN, {**FROZEN, "lr": 0.2}, SAFE, {"lr"})
    with pytest.raises(UserError, match="seed: run has None, given 3"):  # a field the run never had
        config_changes(FROZEN, {**FROZEN, "seed": 3}, SAFE, set())
