"""How a training ended, mapped to its exit code and its one line, in one place (jobs.train.outcome)."""
from jobs import exit_codes
from jobs.train.outcome import EXIT_CODES, Ending, Outcome, error_line, kept

RESUME = "`python scripts/resume.py --run-id r`"


def test_every_ending_has_its_exit_code():
    assert set(EXIT_CODES) == set(Ending)
    assert Outcome(Ending.FINISHED, 9).exit_code == exit_codes.EXIT_OK
    assert Outcome(Ending.STOPPED, 9, signal="SIGUSR2").exit_code == exit_codes.EXIT_STOPPED
    assert Outcome(Ending.NOT_SAVED, 9).exit_code == exit_codes.EXIT_WRITE_FAILED
    assert Outcome(Ending.DIVERGED, 9).exit_code == exit_codes.EXIT_DIVERGED
    assert Outcome(Ending.OUT_OF_MEMORY, 9).exit_code == exit_codes.EXIT_OUT_OF_MEMORY
    assert Outcome(Ending.PEER_LOST, 9).exit_code == exit_codes.EXIT_FAILED
    assert exit_codes.EXIT_FAILED in exit_codes.RETRIED_BY_SUPERVISOR  # a lost peer is retried like a crash


def test_the_line_says_what_went_wrong_and_how_to_go_on():
    assert error_line(Outcome(Ending.DIVERGED, 3, message="diverged: x"), RESUME) == "error: diverged: x"
    assert error_line(Outcome(Ending.PEER_LOST, 3, message="lost"), RESUME) == f"error: lost; continue with {RESUME}"
    assert error_line(Outcome(Ending.NOT_SAVED, 3, message="full"), RESUME) == \
        f"error: full; once the disk has room again, continue with {RESUME}"
    assert error_line(Outcome(Ending.FINISHED, 3), RESUME) is None
    assert error_line(Outcome(Ending.STOPPED, 3, signal="SIGTERM"), RESUME) is None


def test_every_failure_ends_with_what_the_run_still_has():
    assert kept(40) == "the last committed checkpoint (step 40) is intact"
    assert kept(None) == "no checkpoint of this run is committed"
