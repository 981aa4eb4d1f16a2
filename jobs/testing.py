"""The test hooks, all in one place: switched on through the environment, so that the tests can reach into the
real processes (and SLURM jobs) they start. Unset, each hook is None and the product code does as always."""
import os
import time

SLOW_WRITE_ENV = "JOBS_TEST_SLOW_WRITE_SECONDS"  # stretch each checkpoint write, so that kills land inside it
HANG_AT_STEP_ENV = "JOBS_TEST_HANG_AT_STEP"  # the loop blocks for good at this step boundary


def slow_checkpoint_write():
    """A `write(f, data)` for jobs.run.files.write_atomic that takes JOBS_TEST_SLOW_WRITE_SECONDS in 8 chunks."""
    seconds = os.environ.get(SLOW_WRITE_ENV)
    if not seconds:
        return None
    seconds = float(seconds)

    def write(f, data: bytes) -> None:
        chunks = 8
        size = -(-len(data) // chunks)
        for i in range(chunks):
            f.write(data[i * size:(i + 1) * size])
            f.flush()
            time.sleep(seconds / chunks)
    return write


def hang_at_step() -> int | None:
    """The step boundary at which the loop blocks, as a real hang blocks in a syscall (JOBS_TEST_HANG_AT_STEP)."""
    step = os.environ.get(HANG_AT_STEP_ENV)
    return int(step) if step else None

KILL_AT_STEP_ENV = "JOBS_TEST_KILL_AT_STEP"  # the trainer SIGKILLs itself once this step is done


def kill_at_step() -> int | None:
    """The step after which the trainer dies outright (JOBS_TEST_KILL_AT_STEP): a death at a known step."""
    step = os.environ.get(KILL_AT_STEP_ENV)
    return int(step) if step else None
