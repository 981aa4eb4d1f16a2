"""The stop agreement (jobs.train.stop_agreement): one code per rank, one decision for all."""
import signal

from jobs.distributed.ranks import Ranks
from jobs.signals import StopFlag
from jobs.train.stop_agreement import SAVE_DUE, SIGNAL_CODES, StopAgreement, agree


def test_the_strongest_signal_any_rank_received_stops_every_rank():
    usr2, term, intr = SIGNAL_CODES["SIGUSR2"], SIGNAL_CODES["SIGTERM"], SIGNAL_CODES["SIGINT"]
    assert agree([0, 0, 0]) == (None, {}, False)
    assert agree([0, usr2, 0]) == ("SIGUSR2", {1: "SIGUSR2"}, False)  # a signal that reached one rank only
    assert agree([intr, term, usr2]) == ("SIGTERM", {0: "SIGINT", 1: "SIGTERM", 2: "SIGUSR2"}, False)


def test_only_rank_0s_cadence_asks_for_a_save():
    assert agree([SAVE_DUE, 0]) == (None, {}, True)
    assert agree([SAVE_DUE + SIGNAL_CODES["SIGINT"], 0]) == ("SIGINT", {0: "SIGINT"}, True)
    assert agree([0, SAVE_DUE])[2] is False  # another rank's clock never decides


def test_a_single_process_agrees_with_itself():
    flag = StopFlag()
    agreement = StopAgreement(flag, Ranks())
    assert agreement.at_boundary(save_due=True) is True and agreement.signal is None
    flag.received.append(signal.Signals.SIGUSR2.name)
    assert agreement.at_boundary(save_due=False) is False
    assert (agreement.signal, agreement.by_rank) == ("SIGUSR2", {0: "SIGUSR2"})
