"""Time alignment of camera frames with audio, tactile, proprio and action streams.

One Observation per camera frame, plus camera-less ones while the camera is out (below). The rules are
chosen so the result depends only on the per-topic streams, not on how topics interleave (live DDS
delivery vs. a bag read in stamp order):

* A frame at ``t`` is held until every *active* modality has shown it has nothing more to say about
  ``t`` (a reading with stamp >= t; audio: samples covering t, or a chunk starting after t), or until
  the newest stamp on any stream passes ``t + max_wait_s`` (a silent modality is then missing), or
  ``flush()``. Frames are emitted in stamp order.
* A modality is *active* for ``t`` when it has data stamped in ``[t - buffer_s, t - max_wait_s]``.
  That interval is complete as soon as the frame arrives (provided no topic lags another by more
  than ``max_wait_s``), so activity never depends on arrival order. An inactive modality is missing
  (None) even if a reading happens to be buffered: a stream needs ``max_wait_s`` of history before
  it counts, so the first frames after start-up or a reset carry only what was already flowing.
* Tactile / proprio / action: the latest reading in ``[t - tol, t]`` (causal first), else the
  earliest in ``(t, t + tol]``, else None.
* Audio: the ``spec.audio_window_samples`` samples ending at the last sample stamped <= t, assembled
  from contiguous chunks; gaps or overlaps under one sample are absorbed, larger holes make the window
  None (never zero-filled).
* Out-of-order delivery *within* a topic is deterministic only with ``reorder_s`` >= the reordering
  span (frames then wait that much longer); with the default 0 late readings are still inserted in
  place but may miss frames already emitted.
* Bad clocks: a non-image reading stamped more than ``future_s`` ahead of the newest stamp of every
  *other* stream, images included (a sensor with a bad clock, a corrupted header), is dropped and
  counted ``future:<modality>`` without touching any buffer or clock. Taken, it would move the
  eviction horizon past every in-time reading: all streams ``too_old`` until data time reached it.
  Comparing with the other streams, not with the camera alone, keeps a camera outage from turning
  every reading into ``future:`` (the counter names the stream whose stamps are wrong), and data
  within the topic-lag contract never trips it, so the result stays independent of interleaving.
  With no other stream yet (the very first message) there is no reference and the reading is taken;
  when the image clock starts (first frame, reset), buffered readings more than ``future_s`` ahead
  of that frame are dropped and counted the same way (what they evicted meanwhile stays lost).
  A future *image* is not rejected (it is the reference): it is emitted, readings stay ``too_old``
  until the next in-time image, which is a backwards jump of the image clock, i.e. one reset.
* Camera outage (``camera_timeout_s`` > 0): an *outage tick* is a multiple ``t`` of
  ``outage_period_s`` (the model's dt: a fixed grid in data time anchored at stamp 0, so runs agree
  without shared state) lying more than ``camera_timeout_s`` after the last camera frame before it
  (before any frame: after the epoch's first stamp). A tick is handled like a frame without an image:
  held until complete or until ``t + max_wait_s`` is passed (then, within the topic-lag contract, no
  frame stamped <= t can still come), then emitted as an Observation with ``image=None`` and the
  readings a frame at ``t`` would get, in stamp order with the frames. A tick without a single reading
  is skipped; where no stream is active the clock jumps to where data could make one active, so a long
  silence costs no loop. So camera-less Observations come at the model's rate, ``max_wait_s`` behind
  the newest data, and stop when frames come back. Nothing is buffered for ticks: memory stays within
  the stream caps. Limits: a camera slower than ``1 / camera_timeout_s`` Hz, or lagging the other
  streams by more than about ``camera_timeout_s``, looks like an outage between its frames (raise the
  timeout); with a single non-image stream the ticks stop ``future_s`` after the last frame (nothing
  vouches for its stamps, see above); backwards jumps are detected on the image stream only, so a bag
  loop or simulator reset during an outage stops the ticks until frames come back.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from embodied_wm.errors import ConfigError
from embodied_wm.observation import NS_PER_S, ModalitySpec, Observation

log = logging.getLogger(__name__)

#: Non-image streams the Aligner buffers, in Observation order.
STREAMS: tuple[str, ...] = ("audio", "tactile", "proprio", "action")
#: Outage clock period when neither the config nor a Pipeline's backend gives one (the shipped model's dt).
DEFAULT_OUTAGE_PERIOD_S = 0.1


@dataclass
class AlignerConfig:
    spec: ModalitySpec = field(default_factory=ModalitySpec)
    #: A tactile/proprio/action reading counts for a frame within this distance of its stamp.
    tolerance_s: float = 0.05
    #: A stream is active for a frame if it delivered data in [t - buffer_s, t - max_wait_s];
    #: buffers keep about this much history.
    buffer_s: float = 2.0
    #: Hard cap on items per buffer (and on stashed items), whatever the input rate.
    max_items: int = 4096
    #: An image stamp this far behind the newest image is a reset (bag loop, simulator reset).
    reset_jump_s: float = 1.0
    #: A frame is emitted at the latest when any stream's stamps pass t + max_wait_s.
    max_wait_s: float = 0.2
    #: Per-topic reordering span to tolerate deterministically (adds this much latency when > 0).
    reorder_s: float = 0.0
    #: Frames held at most; beyond this the oldest is emitted early (counted as forced).
    max_pending: int = 64
    #: Bytes of held frames at most (the newest frame is always held): large images are emitted early
    #: (counted as forced) instead of piling up, e.g. 64 frames of 4000 x 4000 would be 3 GB.
    max_pending_bytes: int = 128 * 2**20
    #: A non-image reading stamped more than this ahead of every other stream (images included) is
    #: a bad stamp: dropped, counted "future:<modality>". Must exceed max_wait_s + reorder_s, the lead
    #: in-time data may have; 2 s leaves room for a slow camera's frame gaps (1 Hz, dropped frames)
    #: and, being <= buffer_s, keeps a bad stamp *within* the bound from pushing the eviction horizon
    #: (about buffer_s + max_wait_s + tolerance_s + audio window behind the newest stamp) past other
    #: streams' in-time readings. Such a stamp can still make its own stream's next readings look like
    #: a backwards jump (stashed, lost) for up to future_s - reset_jump_s of data time.
    future_s: float = 2.0
    #: Camera outage: no frame for longer than this (data time) while other streams go on -> camera-less
    #: Observations (image None) on the outage clock, see the module docstring. 0 = off. Must exceed the
    #: camera's frame period (0.5 s: cameras down to 2 Hz, and several dropped frames, are no outage).
    camera_timeout_s: float = 0.5
    #: Outage clock period (s). None = the model's dt (a Pipeline with a backend fills it in), else
    #: DEFAULT_OUTAGE_PERIOD_S.
    outage_period_s: float | None = None

    def __post_init__(self) -> None:
        if self.spec.audio_window_samples < 1:
            raise ConfigError(f"audio window must hold at least one sample, got {self.spec.audio_window_s}s")
        for name in ("tolerance_s", "max_wait_s", "reorder_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"AlignerConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.reset_jump_s <= 0:
            raise ConfigError(f"AlignerConfig.reset_jump_s must be > 0, got {self.reset_jump_s}")
        if self.buffer_s <= self.max_wait_s:
            raise ConfigError(
                f"AlignerConfig.buffer_s ({self.buffer_s}) must exceed max_wait_s ({self.max_wait_s})"
            )
        if self.max_items < 1 or self.max_pending < 1 or self.max_pending_bytes < 1:
            raise ConfigError("AlignerConfig.max_items, max_pending and max_pending_bytes must be >= 1")
        if not self.future_s > self.max_wait_s + self.reorder_s:  # also rejects NaN
            raise ConfigError(
                f"AlignerConfig.future_s ({self.future_s}) must exceed max_wait_s + reorder_s "
                f"({self.max_wait_s} + {self.reorder_s}): in-time readings may lead the images that much"
            )
        if not (math.isfinite(self.camera_timeout_s) and self.camera_timeout_s >= 0):
            raise ConfigError(
                f"AlignerConfig.camera_timeout_s must be >= 0 (0 = off), got {self.camera_timeout_s}"
            )
        period = self.outage_period_s
        if period is not None and not (math.isfinite(period) and period >= 1e-3):
            raise ConfigError(f"AlignerConfig.outage_period_s must be >= 0.001 s (or None), got {period}")


class _Stream:
    """Stamp-sorted readings of one modality, plus a stash for readings from after a backwards jump
    (a bag loop reaches audio before the next image; those wait for the image stream's reset)."""

    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.values: list[np.ndarray] = []
        self.stash_stamps: list[int] = []
        self.stash_values: list[np.ndarray] = []
        self.newest: int | None = None
        #: Set by a reset when nothing was stashed: old-epoch stragglers may still arrive.
        self.after_reset = False

    def insert(self, stamp: int, value: np.ndarray) -> bool:
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            return False
        self.stamps.insert(i, stamp)
        self.values.insert(i, value)
        if self.newest is None or stamp > self.newest:
            self.newest = stamp
        return True

    def stash(self, stamp: int, value: np.ndarray, cap: int) -> bool:
        i = bisect.bisect_left(self.stash_stamps, stamp)
        if i < len(self.stash_stamps) and self.stash_stamps[i] == stamp:
            return False
        self.stash_stamps.insert(i, stamp)
        self.stash_values.insert(i, value)
        if len(self.stash_stamps) > cap:
            del self.stash_stamps[0], self.stash_values[0]
        return True

    def restart_from_stash(self) -> None:
        self.stamps, self.values = self.stash_stamps, self.stash_values
        self.stash_stamps, self.stash_values = [], []
        self.newest = self.stamps[-1] if self.stamps else None
        # A topic that already delivered new-epoch data sends no old-epoch data after it (per-topic
        # order); one that did not may still have old-epoch messages in flight.
        self.after_reset = not self.stamps

    def clear(self) -> None:
        self.stamps, self.values = [], []
        self.stash_stamps, self.stash_values = [], []
        self.newest = None
        self.after_reset = False

    def any_in(self, lo: int, hi: int) -> bool:
        i = bisect.bisect_left(self.stamps, lo)
        return i < len(self.stamps) and self.stamps[i] <= hi

    def pop_front(self, n: int) -> None:
        del self.stamps[:n], self.values[:n]

    def first_from(self, lo: int) -> int | None:
        """The earliest stamp >= lo, or None."""
        i = bisect.bisect_left(self.stamps, lo)
        return self.stamps[i] if i < len(self.stamps) else None


class Aligner:
    """Builds one Observation per camera frame (and per outage tick while the camera is out) from
    per-modality buffers (see the module docstring)."""

    def __init__(self, config: AlignerConfig | None = None) -> None:
        self.config = config or AlignerConfig()
        cfg = self.config
        spec = cfg.spec
        self._window = spec.audio_window_samples
        self._dt_ns = NS_PER_S / spec.audio_sample_rate
        self._tol = round(cfg.tolerance_s * NS_PER_S)
        self._active_lo = round(cfg.buffer_s * NS_PER_S)
        self._max_wait = round(cfg.max_wait_s * NS_PER_S)
        self._reorder = round(cfg.reorder_s * NS_PER_S)
        self._jump = round(cfg.reset_jump_s * NS_PER_S)
        self._future = round(cfg.future_s * NS_PER_S)
        # History needed behind the newest stamp: activity look-back from the oldest frame that can
        # still be pending, plus the audio window and tolerance.
        self._horizon = round(
            (cfg.buffer_s + cfg.max_wait_s + cfg.tolerance_s + cfg.reorder_s + spec.audio_window_s) * NS_PER_S
        )
        self._max_audio_samples = 2 * math.ceil(self._horizon / self._dt_ns) + self._window
        self._streams: dict[str, _Stream] = {m: _Stream() for m in STREAMS}
        self._audio_samples = 0
        self._pending_stamps: list[int] = []
        self._pending: list[tuple[np.ndarray, str]] = []
        self._pending_bytes = 0
        self._image_newest: int | None = None
        #: Stamp of the last Observation emitted (frame or outage tick): nothing at or before it follows.
        self._last_emitted: int | None = None
        # Outage clock (see the module docstring).
        self._outage_after = round(cfg.camera_timeout_s * NS_PER_S)
        self._period = round((cfg.outage_period_s or DEFAULT_OUTAGE_PERIOD_S) * NS_PER_S)
        #: The last camera frame emitted (the outage reference) and its frame_id (given to ticks).
        self._last_frame_out: int | None = None
        self._frame_id = "camera_optical_frame"
        #: Ticks at or before this stamp are done (emitted, or skipped with nothing active).
        self._ticks_done: int | None = None
        #: Earliest stamp taken in this epoch: the outage reference before the first frame.
        self._epoch_first: int | None = None
        #: Camera-less Observations emitted (outage ticks).
        self.camera_missing = 0
        #: Reasons for dropping input, e.g. "duplicate:tactile", "out_of_order:image", "evicted:audio",
        #: "too_old:proprio", "future:action" (more than future_s ahead of every other stream).
        self.counters: Counter[str] = Counter()
        #: Backwards jumps of the image stream that cleared the buffers.
        self.resets = 0
        #: Bumped on every reset (detected or by ``reset()``): consumers reset their own history.
        self.epoch = 0

    # ------------------------------------------------------------------ counters
    @property
    def duplicates(self) -> int:
        return sum(v for k, v in self.counters.items() if k.startswith("duplicate:"))

    @property
    def out_of_order(self) -> int:
        return self.counters["out_of_order:image"]

    @property
    def evicted(self) -> int:
        return sum(v for k, v in self.counters.items() if k.startswith("evicted:"))

    @property
    def pending(self) -> int:
        return len(self._pending_stamps)

    def buffer_sizes(self) -> dict[str, int]:
        """Items held per buffer (for diagnostics and the memory-bound tests)."""
        sizes = {m: len(s.stamps) for m, s in self._streams.items()}
        sizes.update({f"stash_{m}": len(s.stash_stamps) for m, s in self._streams.items()})
        sizes["audio_samples"] = self._audio_samples
        sizes["pending_images"] = len(self._pending_stamps)
        sizes["pending_image_bytes"] = self._pending_bytes
        return sizes

    # ------------------------------------------------------------------ input
    def add_image(
        self, stamp_ns: int, rgb: np.ndarray, frame_id: str = "camera_optical_frame"
    ) -> list[Observation]:
        stamp = int(stamp_ns)
        if self._image_newest is not None and stamp < self._image_newest - self._jump:
            self._reset_on_jump(stamp)
        if self._last_emitted is not None and stamp <= self._last_emitted:
            self.counters["duplicate:image" if stamp == self._last_frame_out else "out_of_order:image"] += 1
            return []
        i = bisect.bisect_left(self._pending_stamps, stamp)
        if i < len(self._pending_stamps) and self._pending_stamps[i] == stamp:
            self.counters["duplicate:image"] += 1
            return []
        self._pending_stamps.insert(i, stamp)
        self._pending.insert(i, (rgb, frame_id))
        self._taken(stamp)
        self._pending_bytes += int(rgb.nbytes)
        if self._image_newest is None:
            self._image_newest = stamp
            self._drop_future()
        elif stamp > self._image_newest:
            self._image_newest = stamp
        out: list[Observation] = []
        while len(self._pending_stamps) > self.config.max_pending or (
            self._pending_bytes > self.config.max_pending_bytes and len(self._pending_stamps) > 1
        ):
            self.counters["forced:image"] += 1
            self._take_ticks(self._pending_stamps[0], self._newest(), True, out)
            out.append(self._emit_head())
        return out + self._drain()

    def add_audio(self, stamp_ns: int, samples: np.ndarray) -> list[Observation]:
        """Mono float32 samples at ``spec.audio_sample_rate``; ``stamp_ns`` is the first sample's time."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size == 0:
            return []
        if self._add("audio", int(stamp_ns), samples):
            self._audio_samples = sum(v.size for v in self._streams["audio"].values)
        return self._drain()

    def add_tactile(self, stamp_ns: int, values: np.ndarray) -> list[Observation]:
        self._add("tactile", int(stamp_ns), np.asarray(values, dtype=np.float32))
        return self._drain()

    def add_proprio(self, stamp_ns: int, values: np.ndarray) -> list[Observation]:
        self._add("proprio", int(stamp_ns), np.asarray(values, dtype=np.float32))
        return self._drain()

    def add_action(self, stamp_ns: int, values: np.ndarray) -> list[Observation]:
        self._add("action", int(stamp_ns), np.asarray(values, dtype=np.float32))
        return self._drain()

    def flush(self) -> list[Observation]:
        """Emit every held frame now with whatever is buffered (end of a bag, shutdown), and the outage
        ticks up to the newest stamp."""
        return self._drain(final=True)

    def reset(self) -> None:
        """Forget everything (held frames included)."""
        for s in self._streams.values():
            s.clear()
        self._clear_images()
        self._audio_samples = 0
        self._epoch_first = None
        self.epoch += 1

    # ------------------------------------------------------------------ internals
    def _taken(self, stamp: int) -> None:
        if self._epoch_first is None or stamp < self._epoch_first:
            self._epoch_first = stamp

    def _add(self, m: str, stamp: int, value: np.ndarray) -> bool:
        s = self._streams[m]
        if s.newest is not None and stamp < s.newest - self._jump:
            # This stream already jumped back; keep its new epoch aside until the images follow.
            if not s.stash(stamp, value, self.config.max_items):
                self.counters[f"duplicate:{m}"] += 1
            return False
        if s.after_reset and self._image_newest is not None and stamp > self._image_newest + self._jump:
            # Far ahead of the images right after a reset: a late message from the old epoch.
            self.counters[f"stale:{m}"] += 1
            return False
        ref = self._newest(but=m)
        if ref is not None and stamp > ref + self._future:
            # Far ahead of every other stream: a bad stamp. Taking it would move every clock to it.
            self.counters[f"future:{m}"] += 1
            return False
        # Newest over all streams = the other streams' newest and this one's (one pass, per reading).
        newest = max((t for t in (ref, s.newest) if t is not None), default=None)
        if newest is not None and stamp < newest - self._horizon:
            self.counters[f"too_old:{m}"] += 1
            return False
        if not s.insert(stamp, value):
            self.counters[f"duplicate:{m}"] += 1
            return False
        s.after_reset = False
        self._taken(stamp)
        return True

    def _newest(self, but: str | None = None) -> int | None:
        """Newest stamp on any stream (images included), leaving out stream ``but``."""
        stamps = [s.newest for m, s in self._streams.items() if s.newest is not None and m != but]
        if self._image_newest is not None:
            stamps.append(self._image_newest)
        return max(stamps) if stamps else None

    def _drop_future(self) -> None:
        """When the image clock starts (first frame, after a reset): drop buffered readings stamped
        more than future_s ahead of it, taken while nothing could show them wrong. Normally a no-op."""
        assert self._image_newest is not None
        limit = self._image_newest + self._future
        if self._epoch_first is not None and self._epoch_first > limit:
            # Every stamp taken so far is dropped below: the epoch starts at this frame.
            self._epoch_first = self._image_newest
        for m, s in self._streams.items():
            if s.newest is None or s.newest <= limit:
                continue
            n = bisect.bisect_right(s.stamps, limit)
            self.counters[f"future:{m}"] += len(s.stamps) - n
            del s.stamps[n:], s.values[n:]
            s.newest = s.stamps[-1] if s.stamps else None
            if m == "audio":
                self._audio_samples = sum(v.size for v in s.values)

    def _clear_images(self) -> None:
        self._pending_stamps.clear()
        self._pending.clear()
        self._pending_bytes = 0
        self._image_newest = None
        self._last_emitted = None
        self._last_frame_out = None
        self._ticks_done = None

    def _reset_on_jump(self, stamp: int) -> None:
        self.resets += 1
        self.epoch += 1
        log.warning(
            "image stamps jumped back %.3f s (%.3f -> %.3f s): reset #%d, dropping %d held frames",
            ((self._image_newest or 0) - stamp) / NS_PER_S,
            (self._image_newest or 0) / NS_PER_S,
            stamp / NS_PER_S,
            self.resets,
            len(self._pending_stamps),
        )
        self._clear_images()
        for s in self._streams.values():
            s.restart_from_stash()
        self._audio_samples = sum(v.size for v in self._streams["audio"].values)
        firsts = [s.stamps[0] for s in self._streams.values() if s.stamps]
        self._epoch_first = min(firsts) if firsts else None

    def _active(self, m: str, t: int) -> bool:
        return self._streams[m].any_in(t - self._active_lo, t - self._max_wait)

    def _complete(self, t: int) -> bool:
        if self._reorder and (self._image_newest is None or self._image_newest < t + self._reorder):
            return False
        for m, s in self._streams.items():
            if not self._active(m, t):
                continue
            newest = s.newest if s.newest is not None else -1
            if m == "audio":
                if self._reorder == 0 and self._audio_window(t) is not None:
                    continue
                if newest <= t + self._reorder:
                    return False
            elif self._reorder == 0:
                if newest < t:
                    return False
            elif newest <= t + self._tol + self._reorder:
                return False
        return True

    def _drain(self, final: bool = False) -> list[Observation]:
        """Emit what is ready, frames and outage ticks in stamp order (everything when ``final``)."""
        out: list[Observation] = []
        newest = self._newest()
        while True:
            head = self._pending_stamps[0] if self._pending_stamps else None
            if not self._take_ticks(head, newest, final, out) or head is None:
                break
            timed_out = newest is not None and newest > head + self._max_wait
            if not (final or timed_out or self._complete(head)):
                break
            out.append(self._emit_head())
        self._evict()
        return out

    def _emit_head(self) -> Observation:
        t = self._pending_stamps.pop(0)
        rgb, frame_id = self._pending.pop(0)
        self._pending_bytes -= int(rgb.nbytes)
        self._last_emitted = self._last_frame_out = t
        self._frame_id = frame_id
        return self._fill(Observation(stamp_ns=t, image=rgb, frame_id=frame_id))

    def _fill(self, obs: Observation) -> Observation:
        """Give ``obs`` the readings of every modality active at its stamp."""
        t = obs.stamp_ns
        if self._active("audio", t):
            obs.audio = self._audio_window(t)
        for m in ("tactile", "proprio", "action"):
            if self._active(m, t):
                setattr(obs, m, self._reading(m, t))
        return obs

    # ------------------------------------------------------------------ camera outage
    def _next_tick(self, before: int | None) -> int | None:
        """The first outage tick not done yet, if it lies before the held frame ``before``."""
        if not self._outage_after:
            return None
        ref = self._last_frame_out if self._last_frame_out is not None else self._epoch_first
        if ref is None:
            return None
        lo = ref + self._outage_after
        for done in (self._last_emitted, self._ticks_done):
            if done is not None and done > lo:
                lo = done
        t = (lo // self._period + 1) * self._period  # the first multiple of the period after lo
        return t if before is None or t < before else None

    def _take_ticks(
        self, before: int | None, newest: int | None, force: bool, out: list[Observation]
    ) -> bool:
        """Emit the outage ticks before the held frame ``before`` (None: no frame held) that are ready;
        with ``force`` all of them (up to ``newest`` when no frame is held). True when none is left."""
        while (t := self._next_tick(before)) is not None:
            if force:
                if before is None and (newest is None or t > newest):
                    return True
            elif not (newest is not None and newest > t + self._max_wait) and not (
                before is not None and self._complete(t)
            ):
                # Not ready: a frame stamped <= t may still come, or an active stream is behind t.
                return False
            if not any(self._active(m, t) for m in STREAMS):
                self._ticks_done = self._skip_from(t, newest)
                continue
            self._ticks_done = t
            obs = self._fill(Observation(stamp_ns=t, image=None, frame_id=self._frame_id))
            if len(obs.missing) == len(obs.present):
                continue  # active streams, but no reading near t (past the data's end): nothing to say
            self._last_emitted = t
            self.camera_missing += 1
            out.append(obs)
        return True

    def _skip_from(self, t: int, newest: int | None) -> int:
        """No stream is active at tick ``t``: the last stamp before the first tick that could have one
        active. A stream becomes active max_wait_s after a reading: the next buffered one (stamped after
        t - max_wait_s, or it would be active at t), or one still to come (within the topic-lag contract
        stamped after newest - max_wait_s)."""
        nxt = [n for s in self._streams.values() if (n := s.first_from(t - self._active_lo)) is not None]
        if newest is not None:
            nxt.append(newest - self._max_wait)
        return max(t, min(nxt) + self._max_wait - 1) if nxt else t

    def _reading(self, m: str, t: int) -> np.ndarray | None:
        s = self._streams[m]
        i = bisect.bisect_right(s.stamps, t) - 1
        if i >= 0 and s.stamps[i] >= t - self._tol:
            return s.values[i]
        if i + 1 < len(s.stamps) and s.stamps[i + 1] <= t + self._tol:
            return s.values[i + 1]
        return None

    def _audio_window(self, t: int) -> np.ndarray | None:
        """The window of samples ending at the last sample stamped <= t, or None if not all there."""
        s = self._streams["audio"]
        j = bisect.bisect_right(s.stamps, t) - 1
        if j < 0:
            return None
        dt = self._dt_ns
        chunk = s.values[j]
        k = math.floor((t - s.stamps[j]) / dt + 1e-6)  # index of the last sample at or before t
        if k >= chunk.size:
            # t lies past this chunk. Fine only if the next chunk follows within one sample (t is in
            # that sub-sample gap); otherwise the samples around t are missing or not here yet.
            if k > chunk.size or j + 1 >= len(s.stamps):
                return None
            if (s.stamps[j + 1] - s.stamps[j]) - chunk.size * dt >= dt:
                return None
            k = chunk.size - 1
        need = self._window
        pieces = [chunk[max(0, k + 1 - need) : k + 1]]
        need -= pieces[0].size
        while need > 0:
            if j == 0:
                return None
            prev = s.values[j - 1]
            gap = (s.stamps[j] - s.stamps[j - 1]) - prev.size * dt  # in ns, negative = overlap
            if gap >= dt:
                return None
            if gap <= -dt:
                # Overlapping chunks: the later chunk's samples win, drop prev's overlapping tail.
                prev = prev[: max(0, prev.size - round(-gap / dt))]
            take = min(need, prev.size)
            if take:
                pieces.append(prev[prev.size - take :])
            need -= take
            j -= 1
        return np.concatenate(pieces[::-1]) if len(pieces) > 1 else pieces[0].copy()

    def _evict(self) -> None:
        newest = self._newest()
        cap = self.config.max_items
        for m, s in self._streams.items():
            if newest is not None and s.stamps:
                cutoff = newest - self._horizon
                if m == "audio":
                    # Evict by a chunk's end so a long chunk still covering the horizon stays.
                    n = 0
                    while n < len(s.stamps) and s.stamps[n] + s.values[n].size * self._dt_ns < cutoff:
                        n += 1
                else:
                    n = bisect.bisect_left(s.stamps, cutoff)
                if n:
                    s.pop_front(n)
            over = len(s.stamps) - cap
            if over > 0:
                self.counters[f"evicted:{m}"] += over
                s.pop_front(over)
            if m == "audio":
                total = sum(v.size for v in s.values)
                while total > self._max_audio_samples and len(s.stamps) > 1:
                    total -= s.values[0].size
                    self.counters["evicted:audio"] += 1
                    s.pop_front(1)
                self._audio_samples = total
