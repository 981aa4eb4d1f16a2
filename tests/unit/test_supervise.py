"""The supervisor's crash-retry rules (jobs.supervise.crash), in the order of its docstring: in a batch job
(a requeue) and outside one (a retry in place), and how it tells the two apart (jobs.environment)."""
import pytest

from jobs.environment import JobEnvironment
from jobs.supervise.crash import crash_decision, describe_exit

DECIDE = dict(returncode=-9, received=set(), batch_job="7", tasks=1, start_step=10, committed=20, crash_step=23,
              crashes=[], max_retries=3)
IN_PLACE = {**DECIDE, "batch_job": None}


@pytest.mark.parametrize("change, requeue, reason", [
    ({}, True, "crash retry 1 of 3"),
    ({"received": {"SIGTERM"}}, False, "SLURM is stopping the job (SIGTERM reached it)"),
    ({"received": {"SIGUSR2", "SIGTERM"}}, False, "SLURM is stopping the job (SIGTERM reached it)"),
    ({"received": {"SIGINT"}}, True, "crash retry 1 of 3"),  # as before: in a batch job only TERM counts
    ({"received": {"SIGUSR2"}}, True, "crash retry 1 of 3"),
    ({"tasks": 2}, True, "crash retry 1 of 3"),  # task 0 of an srun step requeues the whole job
    ({"start_step": None}, False, "it died before its first step"),
    ({"committed": 10}, False, "no progress: no checkpoint committed since it started at step 10"),
    ({"committed": None}, False, "no progress: no checkpoint committed since it started at step 10"),
    ({"crashes": [{"step": 23, "requeued": True}]}, False, "it crashed at step 23 before"),
    ({"crashes": [{"step": 5, "requeued": True}]}, True, "crash retry 2 of 3"),
    ({"crashes": [{"step": 5, "requeued": False, "retried": True}]}, True, "crash retry 2 of 3"),
    ({"crashes": [{"step": 5, "requeued": False, "retried": False}]}, True, "crash retry 1 of 3"),
    ({"crashes": [{"step": s, "requeued": True} for s in (1, 2, 3)]}, False,
     "crash retry cap reached (3 of --max-crash-retries 3)"),
    ({"max_retries": 0}, False, "crash retry cap reached (0 of --max-crash-retries 0)"),
])
def test_crash_decision_in_a_batch_job(change, requeue, reason):
    assert crash_decision(**{**DECIDE, **change}) == (requeue, reason)


@pytest.mark.parametrize("change, retry, reason", [
    ({}, True, "crash retry 1 of 3"),
    ({"received": {"SIGTERM"}}, False, "the supervisor is being stopped (SIGTERM reached it)"),
    ({"received": {"SIGINT"}}, False, "the supervisor is being stopped (SIGINT reached it)"),
    ({"received": {"SIGINT", "SIGTERM"}}, False, "the supervisor is being stopped (SIGTERM reached it)"),
    ({"received": {"SIGUSR2"}}, True, "crash retry 1 of 3"),
    ({"tasks": 2}, False, "it is one of 2 tasks outside a batch job, which cannot be restarted alone"),
    ({"start_step": None}, False, "it died before its first step"),
    ({"committed": 10}, False, "no progress: no checkpoint committed since it started at step 10"),
    ({"committed": None}, False, "no progress: no checkpoint committed since it started at step 10"),
    ({"crashes": [{"step": 23, "retried": True}]}, False, "it crashed at step 23 before"),
    ({"crashes": [{"step": 5, "retried": True}]}, True, "crash retry 2 of 3"),
    # the cap counts the retries of both kinds: a run requeued in a batch job, then retried in place
    ({"crashes": [{"step": 5, "requeued": True}, {"step": 8, "retried": True}]}, True, "crash retry 3 of 3"),
    ({"crashes": [{"step": 5, "requeued": True}, {"step": 8, "retried": True}, {"step": 9, "retried": True}]},
     False, "crash retry cap reached (3 of --max-crash-retries 3)"),
    ({"crashes": [{"step": 5, "retried": True}], "max_retries": 1}, False,
     "crash retry cap reached (1 of --max-crash-retries 1)"),
])
def test_crash_decision_outside_a_batch_job_retries_in_place(change, retry, reason):
    assert crash_decision(**{**IN_PLACE, **change}) == (retry, reason)


@pytest.mark.parametrize("env, batch_job", [
    ({}, None),  # a workstation, tmux on a login node
    ({"SLURM_JOB_ID": "12"}, None),  # salloc, or srun alone: an interactive allocation
    ({"SLURM_JOB_ID": "12", "SLURM_STEP_ID": "0"}, None),  # srun inside salloc
    ({"SLURM_JOB_ID": "12", "ENVIRONMENT": "BATCH"}, "12"),  # the batch script of an sbatch job
    ({"SLURM_JOB_ID": "12", "ENVIRONMENT": "BATCH", "SLURM_STEP_ID": "0"}, "12"),  # an srun step of it
    ({"SLURM_JOB_ID": "13", "SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "1", "ENVIRONMENT": "BATCH"}, "12_1"),
    ({"ENVIRONMENT": "BATCH"}, None),
])
def test_a_batch_job_is_one_sbatch_started(env, batch_job):
    assert JobEnvironment(env).batch_job_id == batch_job


def test_the_launch_size_and_the_retry_mark_come_from_the_environment():
    assert JobEnvironment({}).tasks == 1 and JobEnvironment({"SLURM_STEP_NUM_TASKS": "2"}).tasks == 2
    assert JobEnvironment({"WORLD_SIZE": "4", "RANK": "0"}).tasks == 4
    assert JobEnvironment({"JOBS_SUPERVISED_RETRY": "1"}).supervised_retry
    assert not JobEnvironment({}).supervised_retry
    assert not JobEnvironment({"JOBS_SUPERVISED_RETRY": ""}).supervised_retry


def test_an_exit_is_described_by_its_signal_or_code():
    assert describe_exit(-9) == "killed by SIGKILL" and describe_exit(1) == "exit code 1"
    assert describe_exit(7) == "exit code 7: hung, no step within --hang-timeout-seconds"


def test_a_standby_stands_in_for_a_python_script_or_module_only(monkeypatch):
    from jobs.supervise.standby import STANDBY_ENV, can_stand_in

    assert can_stand_in(["python", "scripts/train.py", "--run-id", "x"])
    assert can_stand_in(["/usr/bin/python3.11", "-m", "jobs.examples", "--run-id", "x"])
    assert not can_stand_in(["python", "-c", "print()"]) and not can_stand_in(["python", "-u", "train.py"])
    assert not can_stand_in(["torchrun", "train.py"]) and not can_stand_in(["python", "-m"])
    monkeypatch.setenv(STANDBY_ENV, "0")
    assert not can_stand_in(["python", "scripts/train.py"])
