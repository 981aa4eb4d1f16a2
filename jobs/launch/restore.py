"""Restoring a run: the newest checkpoint that verifies, loaded into the freshly built task on every rank
(docs/design.md, invariant 3), and the run's start or resume announced."""
from jobs.checkpoint.rng import restore_rng
from jobs.checkpoint.store import CheckpointStore
from jobs.distributed.ranks import Ranks
from jobs.environment import JobEnvironment
from jobs.launch.elastic import rederived_rank_state, saved_world_size
from jobs.run.run_dir import RunDir
from jobs.train.metrics import LoopState
from jobs.train.progress import Reporter
from jobs.workload import Task


def restore(run: RunDir, task: Task, ranks: Ranks,
            reporter: Reporter) -> tuple[LoopState | None, dict | None, int | None]:
    """(the loop's state, the manifest entry it came from, the number of processes that saved it if it was
    another) of the newest good checkpoint; (None, None, None) for none."""
    store = CheckpointStore(run.path, warn=reporter.warn)
    try:
        if ranks.is_writer:
            store.remove_temp_files()
    except OSError:
        pass  # a read-only directory: leftovers stay (readers never take a temp file for a checkpoint)

    def fallback(entry, reason):
        run.event("fallback", entry["step"], file=entry["file"], reason=reason)
        reporter.warn(f"warning: checkpoint {entry['file']} is unusable ({reason}); trying the previous one")

    # rank 0 reads and verifies; every rank gets the same state (then its own RNG and generator states)
    loaded = ranks.on_rank0(lambda: store.load_latest(on_fallback=fallback))
    if not loaded:
        return None, None, None
    state, entry = loaded
    task.load_state_dict(state["task"])
    resized_from = saved_world_size(state) if saved_world_size(state) != ranks.world_size else None
    if resized_from:  # each rank's own states derived anew (jobs.launch.elastic)
        mine = rederived_rank_state(state, task, ranks.rank, ranks.world_size)
    else:
        mine = state["ranks"][ranks.rank] if "ranks" in state else {"rng": state["rng"]}
    if mine.get("task"):  # what differs between ranks (e.g. each one's augmentation generator)
        task.load_rank_state_dict(mine["task"])
    restore_rng(mine["rng"])  # after building the task: its construction drew from the global RNGs
    # metrics of epochs whose checkpoint never committed are replaced by the committed history
    run.write_metrics(state["loop"]["history"])
    loop_state = LoopState.from_dict(state["loop"])
    if "window" in mine:  # this rank's own sums of the epoch under way
        loop_state.window = mine["window"]
    return loop_state, entry, resized_from


def announce(run: RunDir, task: Task, ranks: Ranks, reporter: Reporter, resumed: bool, changes: dict,
             entry: dict | None, loop_changes: dict | None = None, resized_from: int | None = None) -> int:
    """The start or resume event and line; the number of restarts the run has had."""
    event = "resume" if resumed else "start"
    resized = {"resized": {"from": resized_from, "to": ranks.world_size, "bit_exact": False}} if resized_from else {}
    run.event(event, task.step, changes=changes or None, checkpoint=entry["file"] if entry else None,
              **({"loop_changes": loop_changes} if loop_changes else {}), **resized,
              slurm_restart_count=JobEnvironment().restart_count,
              **({"world_size": ranks.world_size, "launcher": ranks.launcher} if ranks.distributed else {}))
    processes = f", {ranks.world_size} processes ({ranks.launcher})" if ranks.distributed else ""
    reporter.message(f"{event} run {run.run_id} ({task.describe()}{processes}) at step {task.step}/{task.total_steps}"
                     f" in {run.path}")
    if resized_from:
        reporter.warn(f"warning: run {run.run_id} was saved by {resized_from} process(es) and goes on with "
                      f"{ranks.world_size}: the same batches in the same order, but not bit-exact (the gradients "
                      "are summed in another order, each rank's random generators derived anew)")
    return len(run.events("resume"))
