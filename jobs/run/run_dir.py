"""The run directory: `<runs-dir>/<run-id>/` with its frozen config, events, metrics and status."""
import json
import os
import re
import socket
import time
from pathlib import Path

from jobs.environment import JobEnvironment
from jobs.errors import UserError
from jobs.run.files import append_json_lines, read_json, read_json_lines, write_atomic, write_json_atomic
from jobs.run.write_failures import WriteFailures

DEFAULT_RUNS_DIR = "checkpoints"  # where runs live unless --runs-dir says otherwise
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# every kind of event and its fields: docs/design.md, "The run directory"
EVENT_KINDS = {"start", "resume", "checkpoint", "signal", "requeue", "fallback", "lock-broken",
               "finish", "error", "stop", "diverged", "crash", "write-failed", "write-recovered", "first-step", "hang"}
MAX_PENDING_EVENTS = 1000  # events kept in memory while the log cannot be written (oldest dropped)


def validate_run_id(run_id: str) -> str:
    """A run id is a directory name: no separators, no '..', a short safe alphabet."""
    if not RUN_ID_PATTERN.fullmatch(run_id or "") or ".." in run_id:
        raise UserError(f"bad run id {run_id!r}: use 1-64 characters from A-Z a-z 0-9 . _ -, "
                        "starting with a letter or digit, without '..'")
    return run_id


def check_runs_dir(runs_dir: Path) -> Path:
    """The runs dir must be a usable directory (created if missing and its parent is writable)."""
    runs_dir = Path(runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise UserError(f"runs dir {runs_dir} is not a directory")
    if runs_dir.exists() and not os.access(runs_dir, os.R_OK | os.W_OK | os.X_OK):
        raise UserError(f"runs dir {runs_dir} is not readable and writable by this user")
    return runs_dir


class RunDir:
    """Paths and the small JSON files of one run. Only the lock holder writes here.

    After `tolerate_write_failures()` (the trainer, once it holds the lock) a failed write of events,
    metrics or status is reported through jobs.run.write_failures and retried on the next occasion instead of
    raising: events wait in memory and are appended with the next event that can be written."""

    def __init__(self, runs_dir: Path, run_id: str, read_only: bool = False):
        self.run_id = validate_run_id(run_id)
        self.read_only = read_only  # a rank other than 0: reads, and its writes are no-ops (rank 0 writes)
        self.path = Path(runs_dir) / run_id
        self.config_file = self.path / "config.json"
        self.events_file = self.path / "events.jsonl"
        self.metrics_file = self.path / "metrics.jsonl"
        self.status_file = self.path / "status.json"
        self.failures: WriteFailures | None = None
        self._pending_events: list[dict] = []

    def exists(self) -> bool:
        return self.config_file.exists()

    def create(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_file, config)

    def read_config(self) -> dict:
        try:
            config = read_json(self.config_file)
        except ValueError as e:
            raise UserError(f"{self.config_file} is not valid JSON ({e}); cannot resume this run") from None
        if config is None:
            raise UserError(f"run {self.run_id!r} has no config.json in {self.path}")
        return config

    def tolerate_write_failures(self, warn) -> WriteFailures:
        """From now on a failed write is reported once (`warn`, and an event when one can be written)."""
        def report(kind, what, step, message, details):
            warn(f"warning: {message}")
            self.event(kind, step, file=what, message=message, **details)

        self.failures = WriteFailures(report)
        return self.failures

    def _tolerated(self, what: str, write, step: int | None) -> bool:
        """Run `write()`; under tolerate_write_failures an OSError is reported (once) instead of raised."""
        if self.read_only:
            return True
        if self.failures is None:
            write()
            return True
        try:
            write()
        except OSError as e:
            self.failures.failed(what, e, step)
            return False
        self.failures.succeeded(what, step)
        return True

    def event(self, kind: str, step: int | None = None, **details) -> dict:
        assert kind in EVENT_KINDS, kind
        record = {"time": time.time(), "event": kind, "host": socket.gethostname(), "pid": os.getpid(),
                  "step": step, "slurm_job_id": JobEnvironment().job_id, **details}
        if self.read_only:
            return record
        pending = self._pending_events
        pending.append(record)

        def append():
            append_json_lines(self.events_file, pending)
            pending.clear()

        if not self._tolerated("events", append, step):
            del pending[:-MAX_PENDING_EVENTS]
        return record

    def events(self, kind: str | None = None) -> list[dict]:
        """The run's events, or only those of one kind (parsing only their lines: events are written with
        sorted keys, so each line holds `"event": "<kind>"`)."""
        if kind is None:
            return read_json_lines(self.events_file)
        return [e for e in read_json_lines(self.events_file, containing=f'"event": "{kind}"') if e.get("event") == kind]

    def write_metrics(self, records: list[dict]) -> bool:
        """The per-epoch records, rewritten whole: a write that failed is made good by the next one."""
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
        step = records[-1].get("step") if records else None
        return self._tolerated("metrics", lambda: write_atomic(self.metrics_file, data), step)

    def metrics(self) -> list[dict]:
        return read_json_lines(self.metrics_file)

    def write_status(self, status: dict) -> bool:
        return self._tolerated("status", lambda: write_json_atomic(self.status_file, status), status.get("step"))

    def read_status(self) -> dict:
        try:
            return read_json(self.status_file) or {}
        except ValueError:
            return {}


def resume_command(run_id: str, runs_dir: Path) -> str:
    """The command that continues a run, as the messages show it (--runs-dir only when not the default)."""
    where = f" --runs-dir {runs_dir}" if Path(runs_dir) != Path(DEFAULT_RUNS_DIR) else ""
    return f"`python scripts/resume.py --run-id {run_id}{where}`"


def known_run_ids(runs_dir: Path) -> list[str]:
    if not os.path.isdir(runs_dir):
        return []
    with os.scandir(runs_dir) as entries:  # plain strings: status.py lists thousands of runs
        return sorted(e.name for e in entries if e.is_dir() and os.path.exists(os.path.join(e.path, "config.json")))


def unknown_run_message(runs_dir: Path, run_id: str) -> str:
    known = known_run_ids(runs_dir)
    listing = ", ".join(known) if known else "none"
    return f"no run {run_id!r} in {runs_dir}; known runs: {listing}"
