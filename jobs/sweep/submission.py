"""`scripts/submit.py --sweep ...`: check every task of the grid, write the sweep file, submit one job array.

Every task's flags are parsed and checked (the workload's `check_config`) before anything is written; a sweep
name that exists is submitted again only with --resume-if-exists, with the same grid and flags, once its
previous array has left the queue (its finished runs then end at once, the others continue)."""
import os
import sys
from pathlib import Path

from jobs.errors import UserError
from jobs.run.run_dir import RunDir
from jobs.slurm.array import array_tasks, sbatch_array
from jobs.sweep import sweep_file
from jobs.sweep.flags import shared_flags, value_flags
from jobs.sweep.grid import parse_axes, validate_sweep_name

REPO = Path(__file__).resolve().parents[2]  # sbatch's submit dir: the batch scripts' paths are relative to it
SCRIPT = "slurm/train_sweep.sh"
OWN_FIELDS = {"device", "data_dir"}  # written by the sweep itself: resolved for the compute node, absolute


def plan(args, argv: list[str], training, check_config, allowed: list[str]) -> dict:
    """The sweep's record (jobs.sweep.sweep_file.build), each task checked as its job will parse it."""
    name = validate_sweep_name(args.sweep_name)
    if args.run_id:
        raise UserError("--run-id and --sweep exclude each other: a sweep's run ids come from --sweep-name")
    axes = parse_axes(args.sweep, allowed)
    given = [key for key in axes if getattr(args, key, None) is not None and key != "preset"]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} is given and swept; give it one way")
    common = shared_flags(argv, training, OWN_FIELDS) + ["--device", args.device]
    if args.data_dir:
        common += ["--data-dir", os.path.abspath(args.data_dir)]

    def task_flags(point: dict) -> list[str]:
        flags = [token for key, value in point.items() for token in value_flags(training, key, value)]
        try:
            parsed = training.parse_args(common + flags)  # a value the flags refuse: one line, exit 2
            parsed.nodes, parsed.tasks_per_node = args.nodes, args.tasks_per_node
            check_config(parsed)
        except UserError as e:
            raise UserError(f"--sweep {', '.join(f'{k}={v}' for k, v in point.items())}: {e}") from None
        return flags

    return sweep_file.build(name, axes, common, task_flags, args.runs_dir)


def check_new(sweep: dict, runs_dir: Path, resume_if_exists: bool) -> None:
    """A sweep that exists, or a run id taken, needs --resume-if-exists and the same grid, its array gone."""
    path = sweep_file.sweep_path(runs_dir, sweep["name"])
    if path.exists():
        old = sweep_file.read(runs_dir, sweep["name"])
        if not resume_if_exists:
            raise UserError(f"sweep {sweep['name']!r} exists ({path}); pass --resume-if-exists to submit it again")
        if (old["axes"], old["common"]) != (sweep["axes"], sweep["common"]):
            raise UserError(f"sweep {sweep['name']!r} exists with other values or flags ({path}); "
                            "give another --sweep-name")
        queued = array_tasks(old["array_job_id"]) if old.get("array_job_id") else {}
        if queued:
            raise UserError(f"sweep {sweep['name']!r} is still in SLURM job array {old['array_job_id']} "
                            f"({len(queued)} tasks queued or running); wait for it or scancel it first")
        return
    taken = [t["run_id"] for t in sweep["tasks"] if RunDir(runs_dir, t["run_id"]).exists()]
    if taken and not resume_if_exists:
        raise UserError(f"run {taken[0]!r} already exists; pass --resume-if-exists to continue it in this sweep")


def describe(sweep: dict) -> str:
    keys = list(sweep["axes"])
    rows = [["task", "run", *keys]] + [[str(t["index"]), t["run_id"], *t["values"].values()] for t in sweep["tasks"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def sbatch_options(args, name: str) -> dict:
    several = args.nodes * args.tasks_per_node > 1  # several tasks: srun in exec_train.sh, USR2 to each
    return {"job-name": name, "time": args.time, "cpus-per-task": args.cpus, "partition": args.partition,
            "account": args.account, "mem": f"{round(args.mem * 1024)}M" if args.mem else None,
            "gres": f"gpu:{args.gpus}" if args.gpus else None, "nodes": args.nodes if several else None,
            "ntasks-per-node": args.tasks_per_node if several else None,
            "output": str(Path(args.runs_dir).resolve() / "slurm-%A_%a.out")}, several


def submit_sweep(args, argv: list[str], training, check_config, allowed: list[str]) -> int:
    sweep = plan(args, argv, training, check_config, allowed)
    runs_dir = Path(args.runs_dir)
    check_new(sweep, runs_dir, args.resume_if_exists)
    if args.dry_run:
        print(f"sweep {sweep['name']}: {len(sweep['tasks'])} tasks (dry run: nothing submitted or written)")
        print(describe(sweep))
        return 0
    options, several = sbatch_options(args, sweep["name"])
    # the job records its --signal from SBATCH_SIGNAL (jobs.slurm.queries.job_record), for resume.py
    env = dict(os.environ, SBATCH_SIGNAL=f"{'' if several else 'B:'}USR2@{args.signal_delay}")
    env.setdefault("PYTHON", sys.executable)
    path = sweep_file.sweep_path(runs_dir, sweep["name"])
    previous = path.read_bytes() if path.exists() else None
    sweep_file.write(runs_dir, sweep)  # before sbatch: a task may start at once
    try:
        sweep["array_job_id"] = sbatch_array([SCRIPT, str(path.resolve())], len(sweep["tasks"]), options, env,
                                             str(REPO), args.max_parallel)
    except RuntimeError as e:
        if previous is not None:
            path.write_bytes(previous)
        else:  # nothing left behind: the file, and the folder if it was its first
            path.unlink()
            if not any(path.parent.iterdir()):
                path.parent.rmdir()
        raise UserError(str(e)) from None
    sweep_file.write(runs_dir, sweep)
    print(f"submitted sweep {sweep['name']} ({len(sweep['tasks'])} runs) as SLURM job array "
          f"{sweep['array_job_id']}; watch it with: python scripts/status.py --sweep {sweep['name']} "
          f"--runs-dir {args.runs_dir}")
    print(describe(sweep))
    return 0
