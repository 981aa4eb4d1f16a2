"""The supervisor's crash-retry rules (jobs.supervise.crash), in the order of its docstring."""
import pytest

from jobs.supervise.crash import crash_decision, describe_exit

DECIDE = dict(returncode=-9, terminating=False, job_id="7", start_step=10, committed=20, crash_step=23,
              crashes=[], max_retries=3)



@pytest.mark.parametrize("change, requeue, reason", [
    ({}, True, "crash retry 1 of 3"),
    ({"terminating": True}, False, "SLURM is stopping the job (SIGTERM reached it)"),
    ({"job_id": None}, False, "not inside a SLURM job"),
    ({"start_step": None}, False, "it died before its first step"),
    ({"committed": 10}, False, "no progress: no checkpoint committed since it started at step 10"),
    ({"committed": None}, False, "no progress: no checkpoint committed since it started at step 10"),
    ({"crashes": [{"step": 23, "requeued": True}]}, False, "it crashed at step 23 before"),
    ({"crashes": [{"step": 5, "requeued": True}]}, True, "crash retry 2 of 3"),
    ({"crashes": [{"step": s, "requeued": True} for s in (1, 2, 3)]}, False,
     "crash retry cap reached (3 of --max-crash-retries 3)"),
    ({"max_retries": 0}, False, "crash retry cap reached (0 of --max-crash-retries 0)"),
])
def test_crash_decision(change, requeue, reason):
    assert crash_decision(**{**DECIDE, **change}) == (requeue, reason)


def test_an_exit_is_described_by_its_signal_or_code():
    assert describe_exit(-9) == "killed by SIGKILL" and describe_exit(1) == "exit code 1"
    assert describe_exit(7) == "exit code 7: hung, no step within --hang-timeout-seconds"
