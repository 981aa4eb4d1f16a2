"""Numbers as people read them, and the names of fields as headings."""
from jobs.readable import label, per_second, readable, readable_fields


def test_each_kind_of_number_is_rounded_by_what_it_measures():
    assert readable("val_accuracy", 0.852134) == "85.21%"
    assert readable("test_loss", 0.8109223937988281) == "0.8109"
    assert readable("images_per_sec", 817.4521) == "817"
    assert readable("epoch_seconds", 2.04529) == "2.05"
    assert readable("lr", 0.013612345) == "0.01361"
    assert readable("step", 1056) == "1056" and readable("signal", "SIGTERM") == "SIGTERM"
    assert readable("checkpoint_ok", True) == "True" and readable("test_accuracy", None) == "-"
    assert readable("task_parts", {"data": 0.2061, "model": 5.45612}) == "{data=0.2061, model=5.456}"
    assert readable_fields({"epoch": 3, "train_loss": 0.65601, "time": 1.5}, skip=("time",)) == \
        "epoch 3 train_loss 0.6560"


def test_field_names_become_headings_and_units_short_rates():
    assert label("val_accuracy") == "validation accuracy" and label("images_per_sec") == "images/s"
    assert label("train_loss") == "train loss" and label("lr") == "learning rate"
    assert per_second("images") == "img/s" and per_second("tokens") == "tok/s" and per_second("steps") == "steps/s"
