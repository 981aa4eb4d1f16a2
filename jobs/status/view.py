"""Rich rendering of run summaries (jobs.status.summary) for scripts/status.py."""
import time

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from jobs.readable import label, readable
from jobs.status.table import COLUMNS, RIGHT, duration, run_cells

STATE_STYLE = {"running": "green", "queued": "cyan", "completed": "bold blue", "stopped": "yellow",
               "stale": "magenta", "failed": "bold red", "new": "dim"}


def _field(key: str, value) -> str:
    """A value of the detail view, readable: times as local time, seconds as durations, rates rounded."""
    if value is None:
        return "-"
    if key.endswith("_time") or key == "heartbeat":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if key.endswith("_seconds"):
        return duration(value)
    if isinstance(value, dict):
        return readable(key, value)
    return f"{value:.1f}" if isinstance(value, float) else str(value)


BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 60) -> str:
    """The values as one line of block characters, low to high (at most `width`: evenly sampled)."""
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    low, high = min(values), max(values)
    scale = (len(BARS) - 1) / (high - low) if high > low else 0
    return "".join(BARS[round((v - low) * scale)] for v in values)


def metric_curve(metrics: list[dict], key: str | None) -> Text | None:
    """The primary metric per evaluated epoch, as a small in-terminal curve with its first, last and best."""
    points = [(m["epoch"], m[key]) for m in metrics if key and m.get(key) is not None]
    if not points:
        return None
    best_epoch, best = max(points, key=lambda p: p[1])
    text = Text(f"{label(key)} ", style="bold")
    text.append(sparkline([v for _, v in points]), style="green")
    text.append(f"  {readable(key, points[0][1])} → {readable(key, points[-1][1])} "
                f"(epochs {points[0][0]}–{points[-1][0]}), best {readable(key, best)} at epoch {best_epoch}")
    return text


def _epoch_cell(run: dict):
    epochs = run["epochs"] or 0
    bar = ProgressBar(total=max(epochs, 1), completed=run["epoch"] or 0, width=12)
    return Group(Text(f"{run['epoch']}/{epochs}"), bar)


def runs_table(runs: list[dict]) -> Table:
    table = Table(title=f"runs ({time.strftime('%H:%M:%S')})", header_style="bold")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in RIGHT else "left",
                         # in a narrow terminal the run id folds whole rather than end in "…"
                         overflow="fold" if column == "run" else "ellipsis", no_wrap=column == "state")
    for run in runs:
        cells = [Text(cell) for cell in run_cells(run)]  # Text: no markup parsing of run ids
        cells[2].stylize(STATE_STYLE.get(run["state"], ""))
        cells[3] = _epoch_cell(run)
        table.add_row(*cells)
    return table


def run_detail(run: dict, events: list[dict], metrics: list[dict]) -> Group:
    fields = Table.grid(padding=(0, 2))
    for key, value in run.items():
        if key in ("best_metric", "last_metric"):  # rounded by what the primary metric measures
            fields.add_row(Text(key, style="bold"), readable(run["primary_metric"] or "", value))
        elif key != "hint":  # shown on its own line below
            fields.add_row(Text(key, style="bold"), _field(key, value))
    # Routine checkpoint events (one per save, many per epoch) would crowd out the ones that tell the run's
    # story (start, signal, requeue, resume, fallback, error); the fields above show the newest checkpoint.
    checkpoints = sum(1 for e in events if e["event"] == "checkpoint")
    events = [e for e in events if e["event"] != "checkpoint"]
    event_table = Table(title=f"recent events ({checkpoints} checkpoint events not shown)", header_style="bold")
    for column in ("time", "event", "step", "host", "pid", "SLURM job", "details"):
        event_table.add_column(column)
    for e in events[-15:]:
        details = {k: v for k, v in e.items() if k not in ("time", "event", "step", "host", "pid", "slurm_job_id")
                   and v is not None}
        event_table.add_row(time.strftime("%m-%d %H:%M:%S", time.localtime(e["time"])), e["event"],
                            str(e.get("step")), str(e.get("host")), str(e.get("pid")),
                            str(e.get("slurm_job_id") or "-"),
                            ", ".join(f"{k}={readable(k, v)}" for k, v in details.items()))
    curve = metric_curve(metrics, run["primary_metric"])
    items = [fields, *([curve] if curve else []), event_table, metrics_table(metrics)]
    if run.get("hint"):
        items.insert(1, Text(run["hint"], style="yellow"))
    return Group(*items)


def _column_order(key: str) -> int:
    """The training figures, the evaluation's, the learning rate, the speed, the times."""
    if key == "train_loss":
        return 0
    if key.startswith("train_"):
        return 1
    if key == "lr":
        return 3
    if key.endswith("_per_sec"):
        return 4
    return 5 if key.endswith("_seconds") else 2


def metrics_table(metrics: list[dict]) -> Table:
    """One row per epoch, one column per figure the workload logged (its names)."""
    keys = sorted((key for key in dict.fromkeys(k for m in metrics for k in m) if key not in ("time", "epoch", "step")),
                  key=_column_order)
    table = Table(title="per-epoch metrics", header_style="bold")
    for column in ("epoch", "step", *keys):
        table.add_column(label(column), justify="right")
    for m in metrics:
        table.add_row(str(m["epoch"]), str(m["step"]), *(readable(key, m.get(key)) for key in keys))
    return table
