"""The goodput ledger, its accounting and the auto cadence, on records built here (jobs.goodput)."""
import math

import pytest

from jobs.goodput import cadence
from jobs.goodput.accounting import account, start_parts, train_seconds_at
from jobs.goodput.ledger import HEADER_BYTES, Ledger, read_ledger


def start(resume, last, train, snapshots, end=None, **seconds):
    return {"resume_step": resume, "first_step": resume + 1, "last_step": last, "snapshots": snapshots, "end": end,
            "seconds": {"startup": 2.0, "train": train, "checkpoint": 0.1, "evaluation": 0.5, "final": 0.0, **seconds}}


def test_train_seconds_are_exact_at_checkpoints_and_interpolated_between():
    s = start(0, 30, 29.0, [[10, 9.0], [20, 19.0]])
    assert [train_seconds_at(s, step) for step in (0, 1, 10, 15, 20, 30)] == [0.0, 0.0, 9.0, 14.0, 19.0, 29.0]


def test_steps_above_what_a_later_start_resumed_from_are_recomputed():
    s = start(0, 27, 26.0, [[10, 9.0], [20, 19.0]])
    parts = start_parts(s, kept_to=20)
    assert (parts["kept_steps"], parts["recomputed_steps"]) == (20, 7)
    assert (parts["kept"], parts["recomputed"]) == (19.0, 7.0)
    # a later start fell back to before this one began: all of its steps were for nothing
    parts = start_parts(start(20, 27, 6.0, []), kept_to=10)
    assert (parts["kept_steps"], parts["recomputed_steps"], parts["kept"], parts["recomputed"]) == (0, 7, 0.0, 6.0)


def test_a_ledger_survives_a_kill_and_a_shorter_rewrite(tmp_path):
    ledger = Ledger(tmp_path, resume_step=0, world_size=2, cadence="auto", since_start=1.5)
    ledger.first_step_done(1)
    ledger.snapshot(1)
    ledger.body["snapshots"] *= 50  # a long body, then a shorter one over it: the old tail stays behind
    ledger.enter("train")
    ledger.body["snapshots"] = []
    ledger.step(7)  # the last step line; no body write after it, as when killed in the next step
    ledger.enter("train")
    record = read_ledger(tmp_path / "goodput" / "00001.json")
    assert record["last_step"] == 7 and record["end"] is None and record["seconds"]["startup"] >= 1.5
    assert sum(record["seconds"].values()) == pytest.approx(record["total_seconds"])
    assert len((tmp_path / "goodput" / "00001.json").read_bytes()[:HEADER_BYTES]) == HEADER_BYTES
    Ledger(tmp_path, resume_step=7, world_size=2, cadence="auto", since_start=1.0).end("finished")
    result = account(tmp_path)
    assert (result["starts"], result["deaths"]) == (2, 1)  # process-seconds: 2 ranks each
    assert result["total_seconds"] == pytest.approx(2 * sum(read_ledger(p)["total_seconds"]
                                                          for p in sorted((tmp_path / "goodput").iterdir())))


def test_young_daly_within_its_bounds():
    assert cadence.young_daly(0.02, 3600) == pytest.approx(math.sqrt(144))
    assert cadence.bounded_interval(0.02, 3600) == pytest.approx(12.0)
    assert cadence.bounded_interval(0.02, 30) == pytest.approx(2.0)  # at most 1% of the time in saves
    assert cadence.bounded_interval(0.001, 30) == cadence.MIN_SECONDS
    assert cadence.bounded_interval(5.0, 1e6) == cadence.MAX_SECONDS
    assert cadence.bounded_interval(None, 3600) == cadence.MIN_SECONDS  # no save measured yet: measure one


def test_the_mean_time_between_deaths_is_observed_once_there_is_one():
    auto = cadence.AutoCadence(earlier_seconds=0.0, deaths=0, cost=None, prior_seconds=None)
    assert auto.mtbf(10.0) == cadence.PRIOR_SECONDS
    assert cadence.AutoCadence(0.0, 0, None, prior_seconds=600.0).mtbf(10.0) == 600.0  # the job's time limit
    assert cadence.AutoCadence(7200.0, 0, None, None).mtbf(10.0) == 7210.0  # lived longer than the prior
    auto = cadence.AutoCadence(earlier_seconds=90.0, deaths=3, cost=None, prior_seconds=None)
    assert auto.mtbf(30.0) == 40.0
    auto.measured(0.04)
    auto.measured(0.02)
    assert auto.cost == pytest.approx(0.03)
