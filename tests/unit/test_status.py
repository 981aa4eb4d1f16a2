"""How status.py reads a run: its state from the status file and the queue, a status file written before the
generic names, and the cells of the plain table."""
import socket
import time

from jobs.status.detail import sparkline
from jobs.status.summary import in_workload_words, run_state
from jobs.status.table import plain_runs_table, rate


def test_run_state_rules():
    now = time.time()
    here, pid = socket.gethostname(), 2**22 + 7  # a pid that does not exist
    fresh = {"state": "running", "host": "node-3", "pid": 1, "heartbeat": now - 5, "status_every_seconds": 10}
    assert run_state(fresh, None, now) == ("running", None)
    stale, hint = run_state({**fresh, "heartbeat": now - 600}, None, now)
    assert stale == "stale" and "no heartbeat for 600 s" in hint
    assert run_state({**fresh, "host": here, "pid": pid}, None, now)[0] == "stopped"
    gone = run_state({**fresh, "slurm_job_id": "12"}, {"state": "COMPLETED"}, now)
    assert gone[0] == "stopped" and "SLURM job 12 is gone" in gone[1]
    assert run_state({"state": "stopped"}, {"state": "PENDING"}, now)[0] == "queued"
    assert run_state({"state": "stopped"}, None, now)[0] == "stopped"
    assert run_state({}, None, now)[0] == "new"
    assert run_state({"state": "completed"}, None, now) == ("completed", None)


def test_sparkline_spans_the_blocks_from_lowest_to_highest():
    assert sparkline([0.1, 0.5, 0.9]) == "▁▅█"
    assert sparkline([0.3, 0.3]) == "▁▁"
    assert len(sparkline([i / 200 for i in range(200)], width=60)) == 60


def test_a_status_file_of_the_resnet_only_core_is_read_in_the_generic_names():
    old = {"state": "completed", "best_accuracy": 0.8, "last_accuracy": 0.75, "images_per_sec": 812.0,
           "test_accuracy": 0.79, "test_loss": 0.61}
    new = in_workload_words(old)
    assert (new["primary_metric"], new["best_metric"], new["last_metric"]) == ("val_accuracy", 0.8, 0.75)
    assert (new["unit"], new["rate"]) == ("images", 812.0)
    assert new["final_metrics"] == {"test_accuracy": 0.79, "test_loss": 0.61}
    assert in_workload_words({"primary_metric": "val_loss", "best_metric": 1.0}) == \
        {"primary_metric": "val_loss", "best_metric": 1.0}


def test_the_plain_table_speaks_each_runs_words():
    base = {"run_id": "a", "model": "m", "world_size": 1, "state": "running", "epoch": 1, "epochs": 2, "step": 5,
            "primary_metric": "val_accuracy", "best_metric": 0.5, "last_metric": 0.25, "unit": "images",
            "rate": 812.4, "eta_seconds": 75, "restarts": 0, "checkpoint_age_seconds": 3, "slurm_job_id": None,
            "slurm_state": None, "goodput": 0.9412}
    lm = dict(base, run_id="lm", primary_metric="val_bits_per_byte", best_metric=2.123456, unit="tokens", goodput=None)
    header, first, second = plain_runs_table([base, lm]).splitlines()
    assert header.split() == ["run", "model", "procs", "state", "epoch", "step", "best", "last", "speed", "ETA",
                              "restarts", "goodput", "ckpt", "age", "SLURM", "job"]
    assert "50.00%" in first and "25.00%" in first and "812 img/s" in first and "1m15s" in first and "94.1%" in first
    assert "2.123" in second and "812 tok/s" in second
    assert rate({"rate": None}) == "-" and rate({"rate": 3.0, "unit": "steps"}) == "3 steps/s"
