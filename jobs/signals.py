"""Stop requests: signal handlers only set a flag; the loop acts on it at the next step boundary.

Python runs a handler between two bytecodes, possibly in the middle of an optimizer update, so
saving inside the handler could capture a half-updated model (docs/design.md, invariant 4).
"""
import atexit
import signal

from jobs.step_file import mark_ready

STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
_early: list[str] = []  # stop signals caught by catch_early() before a StopFlag was installed


def _record_early(signum, frame) -> None:
    _early.append(signal.Signals(signum).name)


def ignore_usr2() -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def ignore_usr2_at_exit() -> None:
    """From the end of the program on, a USR2 (a time-limit warning that comes as a finished run exits) is
    ignored: the interpreter's shutdown puts Python-handled signals back to their default action, which
    for USR2 kills the process and fails a job whose run has just completed. Ignored ones stay ignored.
    Registered once however often it is asked (a submitit job calls catch_early twice)."""
    atexit.unregister(ignore_usr2)
    atexit.register(ignore_usr2)


def catch_early(signals=(signal.SIGUSR2, signal.SIGTERM)) -> None:
    """Call first thing in an entry point, before the slow imports and the data loading.

    USR2's default action kills the process: a SLURM warning (time limit, or preemption, which
    sends it at once) arriving while the trainer still starts up would end the job FAILED, not
    requeued; TERM (preemption's next step) would end it without its step-boundary save. Caught
    here, they are handed to the StopFlag installed later, and the loop stops at its first step
    boundary like for any other stop request. A supervisor (jobs.supervise) is told it may forward
    signals from now on."""
    for sig in signals:
        signal.signal(sig, _record_early)
    if signal.SIGUSR2 in signals:
        ignore_usr2_at_exit()
    mark_ready()


class StopFlag:
    """Records which stop signals arrived. A second Ctrl-C raises KeyboardInterrupt: exit at once."""

    def __init__(self):
        self.received: list[str] = []
        self._previous: dict[int, object] = {}

    @property
    def first(self) -> str | None:
        return self.received[0] if self.received else None

    def install(self) -> "StopFlag":
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        self.received.extend(_early)  # arrived during start-up (catch_early)
        _early.clear()
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT" and "SIGINT" in self.received:
            raise KeyboardInterrupt("second Ctrl-C")
        self.received.append(name)

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.restore()
