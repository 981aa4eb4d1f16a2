"""Rich rendering of run summaries (jobs.status.summary) for scripts/status.py on a terminal."""
import time

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from jobs.status.detail import EVENT_COLUMNS, curve, event_rows, field_text, metric_table
from jobs.status.table import COLUMNS, RIGHT, run_cells

STATE_STYLE = {"running": "green", "queued": "cyan", "completed": "bold blue", "stopped": "yellow",
               "stale": "magenta", "failed": "bold red", "new": "dim"}


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
        if key != "hint":  # shown on its own line below
            fields.add_row(Text(key, style="bold"), field_text(key, value, run["primary_metric"]))
    checkpoints, rows = event_rows(events)
    event_table = Table(title=f"recent events ({checkpoints} checkpoint events not shown)", header_style="bold")
    for column in EVENT_COLUMNS:
        event_table.add_column(column)
    for row in rows:
        event_table.add_row(*row)
    header, rows = metric_table(metrics)
    epochs = Table(title="per-epoch metrics", header_style="bold")
    for column in header:
        epochs.add_column(column, justify="right")
    for row in rows:
        epochs.add_row(*row)
    items = [fields, event_table, epochs]
    shown = curve(metrics, run["primary_metric"])
    if shown:
        name, line, summary = shown
        text = Text(f"{name} ", style="bold")
        text.append(line, style="green")
        text.append(f"  {summary}")
        items.insert(1, text)
    if run.get("hint"):
        items.insert(1, Text(run["hint"], style="yellow"))
    return Group(*items)
