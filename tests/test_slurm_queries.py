"""What jobs.slurm reads from SLURM's commands for status.py."""
import pytest

from jobs import slurm


def test_sacct_lines_give_each_job_its_final_state():
    # `sacct -n -X -P -o JobID,State` output: one line per job (-X: no .batch steps), "|"-separated
    text = "41|COMPLETED\n42|CANCELLED by 0\n43|RUNNING\n44.batch|COMPLETED\n45|\n\n"
    assert slurm.parse_sacct(text) == {"41": {"state": "COMPLETED", "time_left": None},
                                       "42": {"state": "CANCELLED", "time_left": None},
                                       "43": {"state": "RUNNING", "time_left": None}}


@pytest.mark.slurm
def test_without_accounting_sacct_adds_nothing(slurm_env, monkeypatch):
    """The dev cluster runs without slurmdbd: sacct answers "accounting storage is disabled" (exit 1)."""
    monkeypatch.setenv("SLURM_CONF", slurm_env["SLURM_CONF"])
    assert slurm.accounting(["1", "2"]) == {}
    assert slurm.queue() is not None  # squeue still answers
