"""The background writer: one checkpoint write at a time on a thread, from a host copy of the state."""
import threading
import time

from jobs.checkpoint.host_copy import HostCopy
from jobs.checkpoint.store import CheckpointStore


class BackgroundWriter:
    """Writes one checkpoint at a time on a thread; training waits only for queuing the host copies.

    The pinned buffers are reused by the next save: submit() asserts that the previous write was waited
    for, so they are never overwritten while being written."""

    def __init__(self, store: CheckpointStore):
        self.store = store
        self.host = HostCopy()
        self._thread: threading.Thread | None = None
        self._result: dict | None = None
        self._error: BaseException | None = None

    def submit(self, state: dict, **meta) -> None:
        assert self._thread is None, "wait() for and collect() the previous write first"
        host_state, ready = self.host.take(state)
        self._result, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(host_state, ready, meta), daemon=True,
                                        name="checkpoint-writer")
        self._thread.start()

    def _run(self, state: dict, ready: list, meta: dict) -> None:
        time.sleep(0)  # hand the GIL back to the training thread at once: it waits in Thread.start() for us
        try:
            for event in ready:
                event.synchronize()  # the device-to-host copies have landed
            self._result = self.store.save(state, **meta)
        except BaseException as e:  # reported to the training thread by collect()
            self._error = e

    def wait(self) -> None:
        if self._thread is not None:
            try:
                self._thread.join()
            except RuntimeError:  # a second Ctrl-C interrupted submit() inside Thread.start(): nothing to wait for
                pass

    def collect(self) -> tuple[dict | None, BaseException | None]:
        """The finished write's (entry, error), once; (None, None) while busy or when nothing is new."""
        if self._thread is None or self._thread.is_alive():
            return None, None
        self._thread = None
        return self._result, self._error
