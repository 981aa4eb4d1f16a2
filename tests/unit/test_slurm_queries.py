"""What jobs.slurm reads from SLURM's answers, and when a run stops requeuing itself."""
from jobs.slurm import queries, requeue


def test_sacct_lines_give_each_job_its_final_state():
    # `sacct -n -X -P -o JobID,State` output: one line per job (-X: no .batch steps), "|"-separated
    text = "41|COMPLETED\n42|CANCELLED by 0\n43|RUNNING\n44.batch|COMPLETED\n45|\n46_2|TIMEOUT\n46_[3-5]|PENDING\n\n"
    assert queries.parse_sacct(text) == {"41": {"state": "COMPLETED", "time_left": None},
                                       "42": {"state": "CANCELLED", "time_left": None},
                                       "43": {"state": "RUNNING", "time_left": None},
                                       "46_2": {"state": "TIMEOUT", "time_left": None}}  # an array's task


def test_a_run_stops_requeuing_after_two_jobs_without_a_step():
    requeues = [{"step": 40}, {"step": 88}]
    assert requeue.requeue_refusal(requeues, 120, max_requeues=200) is None  # progress: requeue
    assert requeue.requeue_refusal(requeues, 88, max_requeues=200) is None  # one job without a step is forgiven
    stalled = requeues + [{"step": 88}]
    assert requeue.requeue_refusal(stalled, 88, max_requeues=200) == "no progress in the last 2 jobs (still at step 88)"
    assert requeue.requeue_refusal(stalled, 88, max_requeues=3) == "requeue cap reached (3 of --max-requeues 3)"


def test_a_job_is_over_in_an_ended_state_or_once_it_left_the_queue():
    assert queries.ended("COMPLETED") and queries.ended("PREEMPTED") and queries.ended("")  # "": left squeue
    assert not queries.ended("RUNNING") and not queries.ended("REQUEUE_HOLD") and not queries.ended(None)
