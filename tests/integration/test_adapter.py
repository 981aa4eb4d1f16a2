"""A plain PyTorch training through jobs.adapter (examples/spirals.py: a DataLoader with two workers over a dataset
that jitters its points with torch's RNG, AdamW, OneCycleLR), SIGKILLed twice in the middle of an epoch and
resumed: it ends with the weights of an uninterrupted run and logs every epoch as that run logged it, with one
process and with two ranks under torchrun (gloo). A finished run is extended with resume.py --epochs (its one-cycle
schedule becomes the longer run's), and the tools show it in its own words."""
import json
import socket
import subprocess
import time

import torch

from tests.helpers_runs import (
    PYTHON,
    REPO,
    call,
    checkpoint_file,
    clean_env,
    discard,
    events,
    final_digest,
    kill_tree,
    logged,
    run,
    spawn,
    status_of,
)

WORKLOAD = "examples.spirals:WORKLOAD"
CONFIG = json.dumps({"points": 512, "batch_size": 32, "epochs": 3, "workers": 2})  # 16 steps an epoch, 48 in all
SPE = 16


def args(runs, run_id: str, config: str = CONFIG) -> list:
    return ["--workload", WORKLOAD, "--config", config, "--run-id", run_id, "--runs-dir", runs,
            "--checkpoint-every-steps", "1"]


def committed_at_least(run_dir, step: int, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(e["step"] >= step for e in events(run_dir, "checkpoint")):
        assert proc.poll() is None and time.monotonic() < deadline, f"no checkpoint at step {step}"
        time.sleep(0.02)


def test_killed_twice_mid_epoch_it_ends_as_an_uninterrupted_run(tmp_path):
    runs = tmp_path / "runs"
    done = run("run.py", *args(runs, "whole"))
    assert done.returncode == 0, done.stderr
    path = runs / "killed"
    proc = spawn("run.py", *args(runs, "killed"), slow=0.02)
    try:
        for at_least in (5, SPE + 5):  # in the first epoch, then in the second
            committed_at_least(path, at_least, proc)
            proc.kill9()
            proc = spawn("resume.py", "--run-id", "killed", "--runs-dir", runs, "--local", slow=0.02)
        assert proc.wait(180) == 0, proc.stderr
    finally:
        discard(proc)
    resumed = [e["step"] for e in events(path, "resume")]
    assert len(resumed) == 2 and any(step % SPE for step in resumed), resumed  # mid-epoch resumes
    assert final_digest(path) == final_digest(runs / "whole")
    assert logged(path) == logged(runs / "whole")


def torchrun(runs, run_id: str, *extra: str) -> subprocess.Popen:
    command = [PYTHON, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
               "scripts/run.py", *args(runs, run_id), *extra]
    log = open(runs.parent / f"{run_id}-{len(list(runs.parent.glob('*.log')))}.log", "w")
    return subprocess.Popen(command, cwd=REPO, env=clean_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_under_torchrun_killed_twice_end_as_an_uninterrupted_two_rank_run(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    assert torchrun(runs, "whole").wait(240) == 0, [p.read_text() for p in tmp_path.glob("*.log")]
    path = runs / "killed"
    proc = torchrun(runs, "killed")
    try:
        for at_least in (5, SPE + 5):
            committed_at_least(path, at_least, proc)
            kill_tree(proc.pid)  # torchrun, both ranks and their loaders' workers, at once
            proc.wait(30)
            proc = torchrun(runs, "killed", "--resume-if-exists")
        assert proc.wait(240) == 0, [p.read_text() for p in tmp_path.glob("*.log")]
    finally:
        kill_tree(proc.pid)
    starts = events(path, "start") + events(path, "resume")
    assert len(starts) == 3 and all(e["world_size"] == 2 and e["launcher"] == "torchrun" for e in starts)
    assert final_digest(path) == final_digest(runs / "whole")
    assert logged(path) == logged(runs / "whole")


def test_a_finished_run_is_extended_and_the_tools_speak_its_words(tmp_path, hermetic):
    config = json.dumps({"points": 256, "batch_size": 32, "epochs": 2, "workers": 0})
    code, out, err = call("run", *args(tmp_path, "s", config))
    assert code == 0, err
    code, out, err = call("resume", "--run-id", "s", "--runs-dir", tmp_path, "--local", "--epochs", "3")
    assert code == 0, err  # OneCycleLR past its old total steps: the new length's schedule, from step 16
    (resumed,) = events(tmp_path / "s", "resume")
    assert resumed["changes"] == {"epochs": 3} and resumed["step"] == 16
    # the rate at step 22 is the three-epoch schedule's, as a fresh OneCycleLR of 24 steps has it there
    state = torch.load(checkpoint_file(tmp_path / "s", 22), weights_only=True)
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=0.02)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.02, total_steps=24)
    for _ in range(22):
        optimizer.step()
        schedule.step()
    assert state["task"]["optimizer"]["param_groups"][0]["lr"] == optimizer.param_groups[0]["lr"] > 1e-6
    summary = status_of(tmp_path, "s")
    assert summary["state"] == "completed" and summary["step"] == 24 and summary["unit"] == "samples"
    code, out, err = call("evaluate", "--run-id", "s", "--runs-dir", tmp_path, "--json")
    assert code == 0, err
    (scored,) = json.loads(out)
    assert scored["test_accuracy"] == summary["final_metrics"]["test_accuracy"]
    code, out, err = call("report", "s", "--runs-dir", tmp_path, "--output", tmp_path / "s.png")
    assert code == 0, err
    assert "| best validation accuracy | test accuracy | test loss |" in out and " samples/s |" in out
    code, out, err = call("status", "--run-id", "s", "--runs-dir", tmp_path)
    assert code == 0 and "validation accuracy" in out and "samples/s" in out, out
