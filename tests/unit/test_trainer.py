"""The loop itself (jobs.train.trainer), driven in this process over a real run directory with a tiny real task:
what it returns, writes and reports when it finishes, is stopped, or meets an error of each kind."""
import json
import signal

import pytest
import torch

from jobs.distributed.ranks import Ranks
from jobs.run.run_dir import RunDir
from jobs.signals import StopFlag
from jobs.train.config import LoopConfig
from jobs.train.outcome import Ending
from jobs.train.progress import Reporter
from jobs.train.startup import StartupClock
from jobs.train.trainer import Trainer
from tests.helpers_runs import events, manifest_entries
from tests.tiny_task import TinyTask


def trainer(tmp_path, task=None, stop=None, **loop) -> tuple[Trainer, RunDir]:
    run = RunDir(tmp_path, "t")
    run.path.mkdir(exist_ok=True)
    trainer = Trainer(task or TinyTask({}), run, LoopConfig(**loop), stop or StopFlag(),
                      Reporter(interactive=False), "val_score", ranks=Ranks(), clock=StartupClock())
    return trainer, run


def test_a_run_to_its_end_commits_its_final_checkpoint_and_says_where_it_stands(tmp_path, capsys):
    outcome = trainer(tmp_path)[0].train()
    run = RunDir(tmp_path, "t")
    assert (outcome.ending, outcome.step, outcome.exit_code) == (Ending.FINISHED, 12, 0)
    assert set(outcome.final_metrics) == {"test_score"}
    final = manifest_entries(run.path)[-1]
    assert final["final"] and final["step"] == 12
    assert [m["epoch"] for m in run.metrics()] == [1, 2, 3]
    assert set(run.metrics()[0]) >= {"train_loss", "train_accuracy", "lr", "samples_per_sec", "val_score"}
    status = json.loads(run.status_file.read_text())
    assert status["state"] == "completed" and status["primary_metric"] == "val_score"
    assert status["best_metric"] == max(m["val_score"] for m in run.metrics())
    assert status["unit"] == "samples" and status["rate"] > 0 and status["final_metrics"] == outcome.final_metrics
    assert [e["event"] for e in events(run.path) if e["event"] != "checkpoint"] == ["first-step", "finish"]
    out = capsys.readouterr().out
    assert "epoch 1/3 step 4 train_loss " in out and " train_accuracy " in out and " lr 0.1 samples_per_sec " in out
    assert "finished run t: step 12, best val_score " in out


def test_a_stop_signal_saves_its_step_and_stops_there(tmp_path):
    stop = StopFlag()
    stop.received.append(signal.Signals.SIGTERM.name)  # as its handler would, before the first step
    trainer_, run = trainer(tmp_path, stop=stop)
    outcome = trainer_.train()
    assert (outcome.ending, outcome.step, outcome.signal, outcome.exit_code) == (Ending.STOPPED, 0, "SIGTERM", 75)
    assert [e["step"] for e in manifest_entries(run.path)] == [0]
    (stopped,) = events(run.path, "stop")
    assert stopped["checkpoint_ok"] and json.loads(run.status_file.read_text())["stop_signal"] == "SIGTERM"


class Failing(TinyTask):
    def __init__(self, error: BaseException, at_step: int):
        super().__init__({})
        self.error, self.at_step = error, at_step

    def train_step(self):
        if self.step == self.at_step:
            raise self.error
        return super().train_step()


def test_running_out_of_memory_is_an_outcome_that_names_the_batch_and_what_is_kept(tmp_path):
    trainer_, run = trainer(tmp_path, Failing(MemoryError(), at_step=6))
    outcome = trainer_.train()
    assert outcome.ending is Ending.OUT_OF_MEMORY and outcome.exit_code == 5
    assert outcome.message.startswith("out of memory in step 7 with batch size 4: the host ran out of memory (")
    assert outcome.message.endswith("; the last committed checkpoint (step 4) is intact")  # its epoch end
    assert json.loads(run.status_file.read_text())["state"] == "failed"


def test_a_nonfinite_loss_is_an_outcome_and_nothing_after_it_is_saved(tmp_path):
    trainer_, run = trainer(tmp_path, TinyTask({"lr": 1e6}))
    outcome = trainer_.train()
    assert outcome.ending is Ending.DIVERGED and "non-finite loss at step" in outcome.message
    for entry in manifest_entries(run.path):
        state = torch.load(run.path / entry["file"], weights_only=True)
        assert all(torch.isfinite(t).all() for t in state["task"]["model"].values())
    (diverged,) = events(run.path, "diverged")
    assert diverged["last_checkpoint_step"] == (manifest_entries(run.path) or [{"step": None}])[-1]["step"]


def test_a_workloads_own_bug_keeps_its_traceback_and_is_recorded_as_what_it_is(tmp_path):
    trainer_, run = trainer(tmp_path, Failing(ZeroDivisionError("division by zero"), at_step=2))
    with pytest.raises(ZeroDivisionError):
        trainer_.train()
    (error,) = events(run.path, "error")
    assert error["message"] == "ZeroDivisionError: division by zero" and error["step"] == 2
    assert json.loads(run.status_file.read_text())["error"] == "ZeroDivisionError: division by zero"


def test_epoch_ends_are_saved_every_nth_and_the_seconds_cadence_can_be_off(tmp_path):
    trainer_, run = trainer(tmp_path, checkpoint_every_epochs=2, checkpoint_every_seconds=None)
    assert trainer_.train().ending is Ending.FINISHED
    assert [e["step"] for e in manifest_entries(run.path)] == [8, 12]  # epoch 2's end, and the final one
    status = json.loads(run.status_file.read_text())
    assert status["checkpoint_interval_seconds"] is None


def test_the_auto_cadence_measures_a_save_first_and_says_its_interval(tmp_path):
    trainer_, run = trainer(tmp_path, checkpoint_every_seconds="auto")
    assert trainer_.train().ending is Ending.FINISHED
    cost = trainer_.checkpointer.cadence.cost
    assert cost > 0
    status = json.loads(run.status_file.read_text())
    assert status["checkpoint_interval_seconds"] == pytest.approx(max(1.0, 100 * cost, (2 * cost * 3600) ** 0.5))
    (ledger,) = (run.path / "goodput").iterdir()
    assert json.loads(ledger.read_bytes()[64:].decode().split("\n")[0])["saves"] == len(manifest_entries(run.path))
