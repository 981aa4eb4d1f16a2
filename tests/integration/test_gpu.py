"""The fast path on a real GPU: skipped without CUDA (CI has none; run it where a GPU is lent).

A fast-path run (bf16, channels_last, the step as one CUDA graph) stopped by SIGTERM saves at its step
boundary and exits 75; resumed, it continues from the saved step and finishes. The graphed step trains
the steps it counts with the rate of each step (its warm-up undone, the schedule moving in the graph)."""
import signal

import pytest
import torch

from tests.helpers_runs import discard, events, manifest_entries, run, start, status_of, wait_for_event

pytestmark = [pytest.mark.usefixtures("hermetic"),
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the fast path's CUDA graphs")]


def test_fast_path_stopped_by_sigterm_resumes_from_its_step_and_finishes(tmp_path):
    runs = tmp_path / "runs"
    args = ("--synthetic", "3000", "--size", "1", "--batch-size", "128", "--epochs", "4", "--fast", "--device",
            "cuda", "--run-id", "gpu", "--runs-dir", runs)
    proc = start("train.py", *args)
    try:
        assert wait_for_event(runs / "gpu", proc, {"first-step"}, timeout=300) is not None, proc.stderr
        proc.send(signal.SIGTERM)
        assert proc.wait(120) == 75, proc.stderr
    finally:
        discard(proc)
    (stop,) = events(runs / "gpu", "stop")
    assert stop["signal"] == "SIGTERM" and stop["checkpoint_ok"] and stop["step"] > 0
    assert stop["step"] in [e["step"] for e in manifest_entries(runs / "gpu")]
    done = run("resume.py", "--run-id", "gpu", "--runs-dir", runs, "--local", timeout=300)
    assert done.returncode == 0, done.stderr
    (resumed,) = events(runs / "gpu", "resume")
    assert resumed["step"] == stop["step"]
    summary = status_of(runs, "gpu")
    assert summary["state"] == "completed" and summary["step"] == summary["total_steps"]
    starts = events(runs / "gpu", "first-step")
    assert [e["step"] for e in starts] == [0, stop["step"]]
    assert all(e["task_parts"]["graph_capture"] > 0 and e["task_parts"]["graph_warm_up"] > 0 for e in starts)
    print(f"\n[gpu] first step after {starts[0]['seconds']:.1f} s, after the resume {starts[1]['seconds']:.1f} s; "
          f"the task's parts: {starts[0]['task_parts']}, {starts[1]['task_parts']}")


def test_the_graphed_step_trains_like_the_eager_one():
    """fp32 both ways: six steps replayed from the graph land where six eager steps land, much closer than
    one step apart. Warm-up steps left in, or a rate frozen into the graph (it climbs every step here),
    would put them steps apart."""
    from resnet.config import DEFAULTS
    from resnet.task import ResNetTask

    config = {**DEFAULTS, "size": 1, "batch_size": 64, "epochs": 2, "synthetic": 1000, "device": "cuda",
              "warmup_epochs": 1.0}
    graphed, eager = ResNetTask({**config, "fast": True}), ResNetTask(config)
    assert graphed.graphed_step is not None and eager.graphed_step is None
    for _ in range(6):
        graphed.train_step(), eager.train_step()
    six = torch.cat([p.detach().flatten() for p in eager.model.parameters()])
    eager.train_step()
    seven = torch.cat([p.detach().flatten() for p in eager.model.parameters()])
    replayed = torch.cat([p.detach().flatten() for p in graphed.model.parameters()])
    assert graphed.step == 6 and graphed.current_lr() == pytest.approx(0.1 * 7 / graphed.steps_per_epoch)
    assert (replayed - six).norm() < 0.05 * (seven - six).norm()


def test_host_copy_on_the_gpu_is_bit_equal_and_ordered_before_later_kernels():
    """The background writer's host copy on a GPU: queued without a sync, it holds the values of the moment
    it was taken, even if a kernel queued right after changes them (same stream), bit for bit."""
    from jobs.checkpoint.host_copy import HostCopy

    torch.manual_seed(0)
    weight = torch.randn(64, 32, 3, 3, device="cuda").contiguous(memory_format=torch.channels_last)
    state = {"model": {"w": weight, "b": torch.randn(64, device="cuda").to(torch.bfloat16),
                       "n": torch.tensor(3, device="cuda")}}
    expected = {k: v.cpu() for k, v in state["model"].items()}
    host = HostCopy()
    copied, events = host.take(state)
    weight.mul_(2)  # queued after the copies
    for event in events:
        event.synchronize()
    for key, value in expected.items():
        got = copied["model"][key]
        assert got.is_pinned() and got.stride() == state["model"][key].stride()
        assert torch.equal(got, value), key
