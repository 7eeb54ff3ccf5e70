"""The perception node's input path: subscription callbacks only enqueue, one thread decodes.

A subscription callback runs on the node's executor thread, which also serves /diagnostics, parameters
and lifecycle transitions. Decoding is O(message size) but can still take a while (a 4096 x 4096 JPEG,
a long audio frame), so the callback only puts the message into a bounded queue (O(1)) and the ingest
thread runs decode -> Aligner -> inference hand-over in arrival order, as before.

The queue is bounded in messages and in payload bytes: under a flood the oldest queued messages are
dropped and counted ``dropped/<kind>`` (never a growing backlog); the newest message is always taken.
Timings kept for /diagnostics and the hostile benchmark: the longest callback (the input thread's stall)
and the longest processing time of one message per kind.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from embodied_wm.sensing.errors import SensingError, TooLargeError

#: Messages waiting for the ingest thread at most.
DEFAULT_MAX_QUEUED = 1024
#: Payload bytes (image/audio data) waiting at most: 32 MB is ~35 frames of 640 x 480 RGB (the newest
#: message is always taken, however large).
DEFAULT_MAX_QUEUED_BYTES = 32 * 2**20


class Refused:
    """A message the input callback refused; the ingest thread only counts it (``Pipeline.reject``)."""

    __slots__ = ("error",)

    def __init__(self, error: SensingError) -> None:
        self.error = error


def oversized_raw_image(msg: Any, max_pixels: int) -> Refused | None:
    """A Refused for a raw Image whose header is consistent (data length = step * height, the check the
    decoder makes first) and declares more than ``max_pixels`` pixels; None otherwise. O(1)."""
    try:
        height, width, step = int(msg.height), int(msg.width), int(msg.step)
        consistent = height > 0 and width > 0 and len(msg.data) == step * height
    except (AttributeError, TypeError, ValueError):
        return None
    if not consistent or width * height <= max_pixels:
        return None
    what = f"Image {msg.encoding} {width}x{height} has {width * height} pixels"
    return Refused(TooLargeError(f"{what}, more than the limit of {max_pixels}"))


def payload_bytes(msg: Any) -> int:
    """Size of a message's bulk data (``data`` of Image/CompressedImage/AudioFrame), 0 for small ones."""
    data = getattr(msg, "data", None)
    try:
        return len(data) if data is not None else 0
    except TypeError:
        return 0


class IngestQueue:
    """Bounded FIFO of (kind, msg, extra) handled by one thread with ``handler(kind, msg, extra)``."""

    def __init__(
        self,
        handler: Callable[[str, Any, Any], None],
        on_error: Callable[[BaseException], None],
        name: str = "ewm-ingest",
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
    ) -> None:
        self._handler = handler
        self._on_error = on_error
        self._name = name
        self.max_queued = int(max_queued)
        self.max_queued_bytes = int(max_queued_bytes)
        self._cv = threading.Condition()
        self._items: deque[tuple[str, Any, Any, int]] = deque()
        self._bytes = 0
        self._running = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self.dropped: Counter[str] = Counter()
        self.handled = 0
        self.max_queued_seen = 0
        #: Longest time one message took in the handler, per kind (ms), and the longest overall.
        self.process_max_ms: dict[str, float] = {}
        #: Longest wall time a subscription callback took (put + bookkeeping), and the longest CPU time
        #: its thread spent in it (ms): wall >> CPU means the thread waited (GIL, an oversubscribed CPU).
        self.callback_max_ms = 0.0
        self.callback_cpu_max_ms = 0.0

    def start(self) -> None:
        with self._cv:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the message in progress; queued ones are discarded (the node is deactivating)."""
        with self._cv:
            self._running = False
            self._items.clear()
            self._bytes = 0
            self._cv.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    def put(self, kind: str, msg: Any, extra: Any = None) -> None:
        """Enqueue; drops the oldest queued messages while over either bound (counted per kind)."""
        size = payload_bytes(msg)
        with self._cv:
            if not self._running:
                return
            self._items.append((kind, msg, extra, size))
            self._bytes += size
            while len(self._items) > 1 and (
                len(self._items) > self.max_queued or self._bytes > self.max_queued_bytes
            ):
                old_kind, _, _, old_size = self._items.popleft()
                self._bytes -= old_size
                self.dropped[old_kind] += 1
            self.max_queued_seen = max(self.max_queued_seen, len(self._items))
            self._cv.notify()

    def record_callback(self, wall_ms: float, cpu_ms: float) -> None:
        """Called by the subscription callback (the executor thread) with its own duration."""
        if wall_ms > self.callback_max_ms:
            self.callback_max_ms = wall_ms
        if cpu_ms > self.callback_cpu_max_ms:
            self.callback_cpu_max_ms = cpu_ms

    @property
    def queued(self) -> int:
        with self._cv:
            return len(self._items)

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is queued or being handled (for tests and orderly shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._items or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def stats(self) -> dict[str, Any]:
        with self._cv:
            out: dict[str, Any] = {
                "queued": len(self._items),
                "queued_bytes": self._bytes,
                "max_queued": self.max_queued_seen,
                "handled": self.handled,
                "callback_max_ms": round(self.callback_max_ms, 3),
                "callback_cpu_max_ms": round(self.callback_cpu_max_ms, 3),
            }
            if self.dropped:
                out["dropped"] = dict(self.dropped)
            if self.process_max_ms:
                out["process_max_ms"] = {k: round(v, 3) for k, v in self.process_max_ms.items()}
            return out

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._running and not self._items:
                    self._cv.wait()
                if not self._running:
                    return
                kind, msg, extra, size = self._items.popleft()
                self._bytes -= size
                self._busy = True
            t0 = time.perf_counter()
            try:
                self._handler(kind, msg, extra)
            except Exception as exc:  # one bad message must not stop the input path
                self._on_error(exc)
            finally:
                ms = (time.perf_counter() - t0) * 1e3
                del msg  # the message's buffer is released before the next wait
                with self._cv:
                    self._busy = False
                    self.handled += 1
                    if ms > self.process_max_ms.get(kind, 0.0):
                        self.process_max_ms[kind] = ms
                    self._cv.notify_all()
