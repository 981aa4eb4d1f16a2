"""The runs table as text: the cells of each row, and a plain aligned table for pipes (no rich: fast)."""
from jobs.readable import per_second, readable


def duration(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def rate(run: dict) -> str:
    """The training speed in the workload's unit, e.g. "7258 img/s"."""
    if not run.get("rate"):
        return "-"
    return f"{run['rate']:.0f} {per_second(run.get('unit') or 'samples')}"


# "best" and "last": each run's primary metric (its name in the detail view), rounded by what it measures
COLUMNS = ("run", "model", "procs", "state", "epoch", "step", "best", "last", "speed", "ETA", "restarts",
           "goodput", "ckpt age", "SLURM job")
RIGHT = {"procs", "step", "speed", "restarts", "goodput"}


def share(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def run_cells(run: dict) -> list[str]:
    """One run's row of the table, as text (COLUMNS); the epoch cell without its bar."""
    job = run["slurm_job_id"] or "-"
    if run["slurm_state"]:
        job += f" {run['slurm_state']}"
    metric = run["primary_metric"] or ""
    return [run["run_id"], run["model"] or "-", str(run["world_size"]), run["state"],
            f"{run['epoch']}/{run['epochs'] or 0}", str(run["step"]),
            readable(metric, run["best_metric"]), readable(metric, run["last_metric"]), rate(run),
            duration(run["eta_seconds"]), str(run["restarts"]), share(run.get("goodput")),
            duration(run["checkpoint_age_seconds"]), job]


def plain_table(header: list[str], rows: list[list[str]], right: set[str] = frozenset()) -> str:
    """Aligned plain text, for pipes and scripts: greppable, never cut to a terminal's width, and fast for
    thousands of rows (rich lays a table out at about 1 ms per row). `right`: the columns aligned right."""
    rows = [list(header)] + rows
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) if column in right else cell.ljust(w)
                               for cell, w, column in zip(row, widths, header, strict=True)).rstrip()
                     for row in rows)


def plain_runs_table(runs: list[dict]) -> str:
    """The runs table as plain text."""
    return plain_table(list(COLUMNS), [run_cells(run) for run in runs], RIGHT)
