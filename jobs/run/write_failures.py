"""Writes that must not stop training: a full, read-only or vanished disk is reported, not fatal.

While a run trains, its small files (status, metrics, events, the lock record) and its periodic
checkpoints are written best-effort: a write that fails is retried on its next occasion, and training
goes on. Each kind of failure (which file, which errno) is reported once, and so is its recovery, so a
disk that stays full for an hour gives two reports, not one per step.
"""
from typing import Callable

# report(event kind, what, step, message, details): "write-failed" or "write-recovered"
Report = Callable[[str, str, int | None, str, dict], None]


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


class WriteFailures:
    def __init__(self, report: Report):
        self.report = report
        self.failing: dict[str, dict] = {}  # what -> {"errno", "count", "step"} while its writes fail

    def failed(self, what: str, error: BaseException, step: int | None = None, message: str | None = None) -> None:
        code = getattr(error, "errno", None)
        current = self.failing.get(what)
        if current is not None and current["errno"] == code:
            current["count"] += 1
            return
        # recorded before reporting: the report's own event may fail too, and must find this entry
        self.failing[what] = {"errno": code, "count": 1, "step": step}
        self.report("write-failed", what, step,
                    message or f"cannot write the run's {what}: {describe(error)}; training goes on and retries",
                    {"error": describe(error)})

    def succeeded(self, what: str, step: int | None = None) -> None:
        current = self.failing.pop(what, None)
        if current is not None:
            count = current["count"]
            self.report("write-recovered", what, step,
                        f"the run's {what} can be written again (after {count} failed write{'s' * (count > 1)})",
                        {"failures": count, "since_step": current["step"]})
