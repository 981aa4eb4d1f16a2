"""A workload's resume, checked in seconds: it trains a few steps as the loop does, takes checkpoints at an epoch's
end and inside an epoch (through the toolkit's own checkpoint store), continues each one in a fresh process, and
compares the continuation with the uninterrupted one, part by part: right after the load (what the checkpoint
did not hold) and after each following step (what the steps draw that the checkpoint does not fix: the data's
order, an unsaved generator). The fresh processes come from a fork server that has imported torch and nothing of
the workload: they start in milliseconds, and find the workload's module as a new process does.
"""
import multiprocessing
import multiprocessing.forkserver
import tempfile
import traceback
from pathlib import Path

import torch

from jobs.check.components import components, first_difference
from jobs.checkpoint import layout
from jobs.checkpoint.rng import capture_rng, restore_rng
from jobs.checkpoint.store import CheckpointStore
from jobs.errors import ContractError, UserError
from jobs.train.contract import one_step, plain_metrics, step_figures
from jobs.workload import completed, load_workload

STEPS_AFTER = 2  # steps compared after each resume
DEFAULT_START_METHOD = multiprocessing.get_start_method()
FRESH = multiprocessing.get_context("forkserver")

ADVICE = {
    "a model": "its weights are not restored: put them in state_dict() and load them in load_state_dict()",
    "an optimizer": "its state (momentum, Adam's moments, its step count) is not in state_dict(), or "
                    "load_state_dict() does not load it",
    "an LR scheduler": "its state is not in state_dict(), or load_state_dict() does not load it",
    "a generator": "its state is not in state_dict(): save generator.get_state() and restore it with set_state()",
    "a data loader": "it shuffles from a generator that state_dict() does not hold: after a resume its batches "
                     "come in another order (jobs.data.ResumableLoader resumes a DataLoader exactly)",
    "a counter": "load_state_dict() does not restore it",
    "the global RNGs": "they are not as the checkpoint left them: load_state_dict() draws from them",
}


def advance(task, steps: int) -> None:
    """Steps as the loop takes them: each one's figures checked, an evaluation at each epoch's end."""
    for _ in range(steps):
        before = task.step
        step_figures(task.train_step())
        one_step(before, task.step)
        if task.step % task.steps_per_epoch == 0:
            plain_metrics(task.evaluate(), "evaluate()")


def build(workload_ref: str, config: dict):
    workload = load_workload(workload_ref)
    config = completed(workload, config)
    workload.validate(config)
    return workload.build(config)


def resume_points(task) -> list[int]:
    """An epoch's end, then a step inside an epoch after the first point's trace (none if an epoch is one step)."""
    spe = task.steps_per_epoch
    points = [spe]
    if spe > 1:
        inside = max(spe + spe // 2, spe + STEPS_AFTER)
        points.append(inside + 1 if inside % spe == 0 else inside)
    needed = points[-1] + STEPS_AFTER
    if task.total_steps < needed:
        raise UserError(f"the check trains {needed} steps (it resumes at {describe(points, spe)}), but this config "
                        f"has only {task.total_steps}: give it more epochs")
    return points


def describe(points: list[int], spe: int) -> str:
    return " and ".join(f"step {p} ({'an epoch end' if p % spe == 0 else 'inside an epoch'})" for p in points)


def save(task, directory: Path) -> None:
    """The checkpoint the toolkit would write now (a single process), through its own store."""
    state = layout.checkpoint_state(task.step, task.steps_per_epoch, task.state_dict(), capture_rng(), {})
    directory.mkdir(parents=True)
    CheckpointStore(directory, weights_of=layout.weights).save(state, step=task.step, epoch=0.0)


def trace(task, steps: int) -> list[dict]:
    """The task's parts now and after each of the next `steps` steps."""
    seen = [components(task)]
    for _ in range(steps):
        advance(task, 1)
        seen.append(components(task))
    return seen


def check(workload_ref: str, config: dict) -> tuple[str, list[str]]:
    """(the resume points, described; what first differs at each, one line each: none if every resume is exact)."""
    FRESH.set_forkserver_preload(["torch", "torch._dynamo", "numpy"])  # the optimizers import torch._dynamo
    multiprocessing.forkserver.ensure_running()  # it imports them while this process trains the reference
    task = build(workload_ref, config)
    points = resume_points(task)
    problems = []
    with tempfile.TemporaryDirectory(prefix="check-workload-") as scratch:
        wanted = {}
        for point in points:
            advance(task, point - task.step)
            save(task, Path(scratch) / str(point))
            wanted[point] = trace(task, STEPS_AFTER)
            # the trace stepped on: the next point is reached from there (the same steps, whatever was traced)
        for point in points:
            got = continue_in_a_fresh_process(Path(scratch) / str(point), workload_ref, config)
            problems += [problem for problem in [compare(point, task.steps_per_epoch, wanted[point], got)] if problem]
    return describe(points, task.steps_per_epoch), problems


def continue_in_a_fresh_process(directory: Path, workload_ref: str, config: dict) -> list[dict]:
    receive, send = FRESH.Pipe(duplex=False)
    process = FRESH.Process(target=_continue, args=(send, str(directory), workload_ref, config, STEPS_AFTER,
                                                    torch.get_num_threads()))
    process.start()
    send.close()
    while not receive.poll(1.0):
        if not process.is_alive():
            process.join()
            raise RuntimeError(f"the resumed process ended with exit code {process.exitcode} before it reported")
    failure, seen = receive.recv()
    process.join()
    if failure == "contract":
        raise ContractError(seen)
    if failure == "input":
        raise UserError(seen)
    if failure:
        raise RuntimeError(f"the resumed process failed (the workload's building or loading, in a fresh process):\n"
                           f"{seen}")
    return seen


def compare(point: int, spe: int, wanted: list[dict], got: list[dict]) -> str | None:
    where = f"resumed at {describe([point], spe)}"
    difference = first_difference(wanted[0], got[0])
    if difference:
        name, kind = difference
        return f"{where}: {_part(name, kind)} is not what it was when the checkpoint was taken: {ADVICE[kind]}"
    for step, (want, have) in enumerate(zip(wanted[1:], got[1:], strict=True), start=point + 1):
        difference = first_difference(want, have)
        if difference is None:
            continue
        name, kind = difference
        if kind in ("a generator", "a data loader", "an LR scheduler"):
            return f"{where}: after step {step}, {_part(name, kind)} differs from the uninterrupted run: {ADVICE[kind]}"
        return (f"{where}: step {step} trained on other data or other random numbers than the uninterrupted run "
                f"({_part(name, kind)} differs after it, while the checkpoint held every part as it was): the data "
                "does not resume at its position (an iterator that starts the epoch over draws a new order; a loader "
                "shuffled from a generator state_dict() does not hold) or a random source is not saved; "
                "jobs.data.ResumableLoader resumes a DataLoader exactly")
    return None


def _part(name: str, kind: str) -> str:
    return name if name == kind else f"{name} ({kind})"


def _continue(send, directory: str, workload_ref: str, config: dict, steps: int, threads: int) -> None:
    """In the fresh process: the task built anew, the checkpoint loaded as the toolkit loads it, then traced."""
    torch.set_num_threads(threads)  # the same numerics as the uninterrupted run (sums split over as many threads)
    # a process of its own, as `python` starts one: its loaders' workers fork from it (not from the fork server)
    multiprocessing.set_start_method(DEFAULT_START_METHOD, force=True)
    try:
        task = build(workload_ref, config)
        state, _ = CheckpointStore(Path(directory)).load_latest()
        task.load_state_dict(state["task"])
        restore_rng(state["rng"])
        send.send((None, trace(task, steps)))
    except ContractError as e:
        send.send(("contract", str(e)))
    except UserError as e:
        send.send(("input", str(e)))
    except BaseException:
        send.send(("error", traceback.format_exc()))
