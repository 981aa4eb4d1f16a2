"""One run in detail, as text: its fields, the curve of its primary metric, its recent events and its per-epoch
metrics. The rich view draws these pieces; piped or under sbatch they are printed as plain aligned text."""
import time

from jobs.readable import label, readable
from jobs.status.table import duration, plain_table, share

BARS = "▁▂▃▄▅▆▇█"
EVENT_COLUMNS = ["time", "event", "step", "host", "pid", "SLURM job", "details"]
RECENT_EVENTS = 15


def goodput_text(detail: dict) -> str:
    """"94.1% of 3m12s: kept 3m01s; badput startup 6.2 s, recomputed 3.1 s, ... (2 deaths, 40 steps recomputed)"."""
    parts = detail["parts"]
    badput = ", ".join(f"{part} {parts[part]:.1f} s" for part in parts if part != "kept")
    return (f"{share(detail['goodput'])} of {duration(detail['total_seconds'])} process time: kept "
            f"{duration(parts['kept'])}; badput {badput} ({detail['starts']} starts, {detail['deaths']} deaths, "
            f"{detail['recomputed_steps']} steps recomputed)")


def field_text(key: str, value, primary_metric: str | None = None) -> str:
    """A value of the detail view, readable: times as local time, seconds as durations, rates rounded, the best
    and last metric as the primary metric reads."""
    if key in ("best_metric", "last_metric"):
        return readable(primary_metric or "", value)
    if value is None:
        return "-"
    if key == "goodput":
        return share(value)
    if key == "goodput_detail":
        return goodput_text(value)
    if key == "world_sizes":
        return " → ".join(map(str, value)) + (" (resized: the same batches, not bit-exact)" if len(value) > 1 else "")
    if key == "checkpoint_interval_seconds":
        return f"{value:.1f} s"
    if key.endswith("_time") or key == "heartbeat":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if key.endswith("_seconds"):
        return duration(value)
    if isinstance(value, dict):
        return readable(key, value)
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def sparkline(values: list[float], width: int = 60) -> str:
    """The values as one line of block characters, low to high (at most `width`: evenly sampled)."""
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    low, high = min(values), max(values)
    scale = (len(BARS) - 1) / (high - low) if high > low else 0
    return "".join(BARS[round((v - low) * scale)] for v in values)


def curve(metrics: list[dict], key: str | None) -> tuple[str, str, str] | None:
    """(label, sparkline, summary) of the primary metric per evaluated epoch; None if it was never evaluated."""
    points = [(m["epoch"], m[key]) for m in metrics if key and m.get(key) is not None]
    if not points:
        return None
    best_epoch, best = max(points, key=lambda p: p[1])
    return (label(key), sparkline([v for _, v in points]),
            f"{readable(key, points[0][1])} → {readable(key, points[-1][1])} (epochs {points[0][0]}–{points[-1][0]}), "
            f"best {readable(key, best)} at epoch {best_epoch}")


def event_rows(events: list[dict]) -> tuple[int, list[list[str]]]:
    """(how many checkpoint events are left out, rows of the recent others): routine checkpoint events would
    crowd out the ones that tell the run's story (start, signal, requeue, resume, fallback, error)."""
    checkpoints = sum(1 for e in events if e["event"] == "checkpoint")
    rows = []
    for e in [e for e in events if e["event"] != "checkpoint"][-RECENT_EVENTS:]:
        details = {k: v for k, v in e.items() if k not in ("time", "event", "step", "host", "pid", "slurm_job_id")
                   and v is not None}
        rows.append([time.strftime("%m-%d %H:%M:%S", time.localtime(e["time"])), e["event"], str(e.get("step")),
                     str(e.get("host")), str(e.get("pid")), str(e.get("slurm_job_id") or "-"),
                     ", ".join(f"{k}={readable(k, v)}" for k, v in details.items())])
    return checkpoints, rows


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


def metric_table(metrics: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per epoch, one column per figure the workload logged, by its name."""
    keys = sorted((k for k in dict.fromkeys(k for m in metrics for k in m) if k not in ("time", "epoch", "step")),
                  key=_column_order)
    header = ["epoch", "step", *map(label, keys)]
    return header, [[str(m["epoch"]), str(m["step"]), *(readable(k, m.get(k)) for k in keys)] for m in metrics]


def plain_run_detail(run: dict, events: list[dict], metrics: list[dict]) -> str:
    """The whole detail view as plain text: greppable, never wider than its longest line."""
    width = max(map(len, run))
    lines = [f"{key.ljust(width)}  {field_text(key, value, run['primary_metric'])}"
             for key, value in run.items() if key != "hint"]
    if run.get("hint"):
        lines.append(f"hint: {run['hint']}")
    shown = curve(metrics, run["primary_metric"])
    if shown:
        lines.append(" ".join(shown))
    checkpoints, rows = event_rows(events)
    lines += ["", f"recent events ({checkpoints} checkpoint events not shown)", plain_table(EVENT_COLUMNS, rows)]
    header, rows = metric_table(metrics)
    lines += ["", "per-epoch metrics", plain_table(header, rows, right=set(header))]
    return "\n".join(lines)
