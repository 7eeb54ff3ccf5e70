"""The perception node's inference thread: a one-slot mailbox, so a slow model skips observations
instead of queueing them (no ROS in here; the node owns it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestOnlyWorker(Generic[T]):
    """One thread with a one-slot mailbox: ``submit`` replaces a pending item (counted in ``replaced``),
    so a slow handler makes the node skip observations instead of queueing them.

    An item submitted while the worker is idle is claimed for it at once (``busy`` from that moment),
    not left in the mailbox until the thread wakes up: otherwise a second item arriving within the
    thread's wake-up latency (GIL hand-over, CPU contention, a burst of messages released together)
    would replace it although inference was free, and be miscounted as stale. So at any time there
    is at most one item being handled (or about to be) and one pending: never a growing queue."""

    def __init__(
        self, handler: Callable[[T], None], on_error: Callable[[BaseException], None], name: str
    ) -> None:
        self._handler = handler
        self._on_error = on_error
        self._name = name
        self._cv = threading.Condition()
        self._claimed: T | None = None  # handed to the idle worker, not started yet
        self._has_claimed = False
        self._pending: T | None = None
        self._has_pending = False
        self._busy = False  # an item is claimed or being handled
        self._running = False
        self._thread: threading.Thread | None = None
        self.replaced = 0
        self.handled = 0

    def start(self) -> None:
        with self._cv:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the item in progress (if any); an item not started yet is discarded (not counted
        stale: it was dropped by the deactivation, not by load)."""
        with self._cv:
            self._running = False
            self._pending, self._has_pending = None, False
            if self._has_claimed:
                self._claimed, self._has_claimed = None, False
                self._busy = False
            self._cv.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    def submit(self, item: T) -> bool:
        """Hand over ``item``; True if it replaced one that was still waiting."""
        with self._cv:
            if not self._busy and not self._has_pending:
                self._claimed, self._has_claimed = item, True
                self._busy = True
                self._cv.notify_all()
                return False
            replaced = self._has_pending
            if replaced:
                self.replaced += 1
            self._pending, self._has_pending = item, True
            self._cv.notify_all()
            return replaced

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._busy or self._has_pending

    def wait_handled(self, count: int, timeout: float) -> bool:
        """Wait until more than ``count`` items were handled or nothing is waiting (True), or timeout. A long
        PredictRollout calls this between its chunks, so a pending live prediction runs in between."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.handled <= count and (self._busy or self._has_pending):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._busy or self._has_pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._running and not (self._has_claimed or self._has_pending):
                    self._cv.wait()
                if not self._running:
                    return
                if self._has_claimed:  # always older than a pending item
                    item = self._claimed
                    self._claimed, self._has_claimed = None, False
                else:
                    item = self._pending
                    self._pending, self._has_pending = None, False
                self._busy = True
            try:
                self._handler(item)  # type: ignore[arg-type]
            except Exception as exc:  # one failed prediction must not kill the worker
                self._on_error(exc)
            finally:
                with self._cv:
                    self._busy = False
                    self.handled += 1
                    self._cv.notify_all()
