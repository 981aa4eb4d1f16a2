"""What a checkpoint is on disk and what it holds: one plain dict (docs/design.md, "The checkpoint").

    ckpt-step<N>.pt        torch.save of the dict below
    ckpt-step<N>.pt.json   its sidecar: the same entry as in the manifest (size, sha256, model digest, ...)
    manifest.json          {"format": 1, "checkpoints": [entry, ...]}, the commit marker

    {"format": 1, "step": N, "epoch": N / steps_per_epoch,
     "task": the task's state_dict(), "rng": the global RNGs (python, numpy, torch, every CUDA device),
     "loop": the loop's state (metric history, best metric, training seconds, final metrics),
     and with several processes "world_size" and "ranks": [{"rng": ..., "task": rank_state_dict()}, ...]}

No torch here: status.py, the supervisor and resume.py read checkpoints' names and manifests without it.
"""
FORMAT = 1
MANIFEST = "manifest.json"
CHECKPOINTS = "ckpt-step*.pt"  # glob of the checkpoint files
SIDECARS = "ckpt-step*.pt.json"
TEMP_FILES = ".*.tmp-*"  # left by a writer killed mid-write (jobs.run.files.temp_path_for)


def checkpoint_name(step: int) -> str:
    return f"ckpt-step{step:09d}.pt"


def sidecar_name(checkpoint: str) -> str:
    return checkpoint + ".json"


def checkpoint_state(step: int, steps_per_epoch: int, task: dict, rng: dict, loop: dict,
                     ranks: list[dict] | None = None) -> dict:
    """The dict a checkpoint holds; `ranks`: every rank's own states, when several processes train the run."""
    state = {"format": FORMAT, "step": step, "epoch": step / steps_per_epoch, "task": task, "rng": rng, "loop": loop}
    if ranks is not None:
        state.update(world_size=len(ranks), ranks=ranks)
    return state


def weights(state: dict):
    """The model's weights in a checkpoint's dict: the task state's "model" entry, as the workload contract asks,
    else the whole task state. Their digest identifies a run's weights; non-finite ones are never committed."""
    task = state["task"]
    return task["model"] if isinstance(task, dict) and isinstance(task.get("model"), dict) else task
