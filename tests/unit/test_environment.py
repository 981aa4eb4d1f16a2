"""jobs.environment.JobEnvironment: SLURM's and the launchers' variables, read in one place."""
import pytest

from jobs.environment import PORT_BASE, JobEnvironment, Launch
from jobs.errors import UserError


def launch_of(env: dict) -> Launch | None:
    return JobEnvironment(env).launch()


def test_a_single_process_initializes_nothing():
    assert launch_of({}) is None
    # a batch shell of `sbatch -n 2` (no srun step) is one process, though SLURM_NTASKS says 2
    assert launch_of({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_PROCID": "0"}) is None
    assert launch_of({"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0",
                                         "SLURM_LOCALID": "0"}) is None


def test_srun_tasks_meet_on_the_first_node_at_a_port_from_the_job_id():
    env = {"SLURM_JOB_ID": "12345", "SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
           "SLURM_STEP_NUM_NODES": "1", "SLURM_STEP_NODELIST": "node0"}
    launch = launch_of(env)
    assert launch == Launch(3, 4, 1, "127.0.0.1", PORT_BASE + 12345, "srun")
    assert launch_of(dict(env, MASTER_PORT="4000", MASTER_ADDR="10.0.0.1")).master_port == 4000


def test_torchrun_variables_win():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "29400",
           "TORCHELASTIC_RUN_ID": "x", "SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "0"}
    assert launch_of(env) == Launch(1, 2, 1, "h", 29400, "torchrun")



def test_the_job_id_is_the_one_the_user_sees_and_task_zero_decides():
    assert JobEnvironment({}).job_id is None and JobEnvironment({}).task_id == "0"
    assert JobEnvironment({"SLURM_JOB_ID": "77"}).job_id == "77"
    array = JobEnvironment({"SLURM_JOB_ID": "78", "SLURM_ARRAY_JOB_ID": "70", "SLURM_ARRAY_TASK_ID": "3"})
    assert array.job_id == "70_3"
    assert JobEnvironment({"SLURM_PROCID": "2"}).task_id == "2"
    assert JobEnvironment({"SLURM_RESTART_COUNT": "4"}).restart_count == 4
    assert JobEnvironment({}).restart_count is None
    assert JobEnvironment({"SLURM_RESTART_COUNT": "x"}).restart_count is None


def test_a_variable_that_is_no_integer_is_one_clear_error():
    with pytest.raises(UserError, match="RANK='one' in the environment is not an integer"):
        launch_of({"RANK": "one", "WORLD_SIZE": "2"})
