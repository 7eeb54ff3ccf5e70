"""Aligner: property tests against a brute-force reference, determinism across interleavings,
bounded memory, resets, and the documented edge cases."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embodied_wm.observation import NS_PER_S, ModalitySpec, Observation
from embodied_wm.sensing.aligner import Aligner, AlignerConfig

SPEC = ModalitySpec(audio_sample_rate=16000, audio_window_s=0.1, tactile_shape=(5, 5), proprio_dim=6)
DT = NS_PER_S // SPEC.audio_sample_rate  # 62500 ns: test audio lies on an exact sample grid
WIN = SPEC.audio_window_samples
MS = 1_000_000
STATE = ("tactile", "proprio", "action")

Event = tuple[str, int, Any]


def add(aligner: Aligner, kind: str, stamp: int, payload: Any) -> list[Observation]:
    if kind == "image":
        return aligner.add_image(stamp, payload, "cam")
    return getattr(aligner, f"add_{kind}")(stamp, payload)


def run(cfg: AlignerConfig, events: list[Event]) -> tuple[list[Observation], Aligner]:
    aligner = Aligner(cfg)
    out: list[Observation] = []
    for kind, stamp, payload in events:
        out += add(aligner, kind, stamp, payload)
    out += aligner.flush()
    return out, aligner


def audio_value(index: np.ndarray) -> np.ndarray:
    """Sample value as a function of its absolute sample index, so windows can be checked exactly."""
    return (np.sin(index * 0.013) * 0.5 + (index % 7) * 0.01).astype(np.float32)


@dataclass
class Streams:
    """Per-topic message lists in delivery order (may contain reorderings and duplicates)."""

    topics: dict[str, list[Event]]
    reorder_ns: int


def make_streams(
    seed: int,
    rates: dict[str, float],
    duration_s: float,
    jitter: float,
    drop: float,
    dup: float,
    reorder_s: float,
    camera_gap: tuple[float, float] | None = None,
) -> Streams:
    """Per-topic streams; ``camera_gap`` (s): no frames stamped in that interval (a camera outage)."""
    rng = np.random.default_rng(seed)
    topics: dict[str, list[Event]] = {}
    for kind, rate in rates.items():
        if rate <= 0:
            continue
        start = rng.uniform(0.0, 0.6)
        stop = duration_s if rng.random() < 0.7 else rng.uniform(duration_s / 2, duration_s)
        if camera_gap is not None:
            stop = duration_s  # every stream goes on to the end: the outage is the camera's alone
        events: list[Event] = []
        if kind == "audio":
            chunk = max(1, round(SPEC.audio_sample_rate / rate))
            first = int(start * SPEC.audio_sample_rate)
            for k in range(int((stop - start) * rate)):
                i0 = first + k * chunk
                if rng.random() < drop:
                    continue
                events.append((kind, i0 * DT, audio_value(np.arange(i0, i0 + chunk))))
        else:
            period = 1.0 / rate
            n = int((stop - start) * rate)
            stamps = start + np.arange(n) * period + rng.uniform(-jitter, jitter, n) * period
            stamps_ns = np.unique(np.maximum(0, np.round(stamps * NS_PER_S)).astype(np.int64))
            for idx, s in enumerate(stamps_ns):
                if rng.random() < drop:
                    continue
                gap_ns = camera_gap and (camera_gap[0] * NS_PER_S, camera_gap[1] * NS_PER_S)
                if kind == "image" and gap_ns and gap_ns[0] <= s <= gap_ns[1]:
                    continue
                if kind == "image":
                    payload: Any = np.full((2, 3, 3), idx % 256, np.uint8)
                elif kind == "tactile":
                    payload = np.full((5, 5), idx, np.float32)
                elif kind == "proprio":
                    payload = np.arange(6, dtype=np.float32) + idx
                else:
                    payload = np.full(6, -idx, np.float32)
                events.append((kind, int(s), payload))
        # Reorder within reorder_s: every message still precedes all messages stamped reorder_s later.
        keys = [s + rng.uniform(0, reorder_s * NS_PER_S) for _, s, _ in events]
        events = [e for _, e in sorted(zip(keys, events), key=lambda p: p[0])]
        for i in range(len(events) - 1, -1, -1):
            if rng.random() < dup:
                events.insert(min(len(events), i + 1 + int(rng.integers(0, 3))), events[i])
        topics[kind] = events
    return Streams(topics, round(reorder_s * NS_PER_S))


def interleave(streams: Streams, seed: int, max_delay_s: float) -> list[Event]:
    """One delivery order: per-topic order kept, each message delayed by up to max_delay_s."""
    rng = np.random.default_rng(seed)
    keyed: list[tuple[float, float, Event]] = []
    for events in streams.topics.values():
        key = -np.inf
        for ev in events:
            key = max(key + 1, ev[1] + rng.uniform(0, max_delay_s * NS_PER_S))  # strictly increasing
            keyed.append((key, rng.random(), ev))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [ev for _, _, ev in keyed]


def outage_ticks(uniq: dict[str, dict[int, Any]], cfg: AlignerConfig) -> list[int]:
    """Brute force: the multiples of the outage period up to the newest stamp lying more than
    camera_timeout_s after the last frame before them (or the first stamp of all, before any frame)."""
    if not cfg.camera_timeout_s:
        return []
    period = round((cfg.outage_period_s or 0.1) * NS_PER_S)
    timeout = round(cfg.camera_timeout_s * NS_PER_S)
    stamps = sorted({s for d in uniq.values() for s in d})
    if not stamps:
        return []
    images = np.array(sorted(uniq.get("image", {})), np.int64)
    out = []
    for t in range(-(-stamps[0] // period) * period, stamps[-1] + 1, period):
        before = images[images <= t]
        ref = int(before.max()) if before.size else stamps[0]
        if t > ref + timeout:
            out.append(t)
    return out


def reference(streams: Streams, cfg: AlignerConfig) -> list[dict[str, Any]]:
    """What every frame (and outage tick) should get, computed with all data at hand and by brute force."""
    tol = cfg.tolerance_s * NS_PER_S
    lo, hi = cfg.buffer_s * NS_PER_S, cfg.max_wait_s * NS_PER_S
    uniq: dict[str, dict[int, Any]] = {}
    for kind, events in streams.topics.items():
        uniq[kind] = {}
        for _, s, p in events:
            uniq[kind].setdefault(s, p)
    covered = np.zeros(0, bool)
    values = np.zeros(0, np.float32)
    if uniq.get("audio"):
        end = max(s // DT + p.size for s, p in uniq["audio"].items())
        covered = np.zeros(end + 1, bool)
        values = np.zeros(end + 1, np.float32)
        for s, p in uniq["audio"].items():
            covered[s // DT : s // DT + p.size] = True
            values[s // DT : s // DT + p.size] = p
    out = []
    frames = set(uniq.get("image", {}))
    for t in sorted(frames | set(outage_ticks(uniq, cfg))):
        row: dict[str, Any] = {"stamp": t, "image": t in frames}
        for kind in ("audio", *STATE):
            stamps = np.array(sorted(uniq.get(kind, {})), np.int64)
            active = bool(((stamps >= t - lo) & (stamps <= t - hi)).any())
            row[kind] = None
            if not active:
                continue
            if kind == "audio":
                last = t // DT
                if last - WIN + 1 >= 0 and last < covered.size and covered[last - WIN + 1 : last + 1].all():
                    row[kind] = values[last - WIN + 1 : last + 1]
                continue
            before = stamps[(stamps >= t - tol) & (stamps <= t)]
            after = stamps[(stamps > t) & (stamps <= t + tol)]
            if before.size:
                row[kind] = uniq[kind][int(before.max())]
            elif after.size:
                row[kind] = uniq[kind][int(after.min())]
        if row["image"] or any(row[k] is not None for k in ("audio", *STATE)):
            out.append(row)  # a tick without a single reading carries nothing: not emitted
    return out


def assert_matches(obs: list[Observation], ref: list[dict[str, Any]]) -> None:
    assert [o.stamp_ns for o in obs] == [r["stamp"] for r in ref]
    for o, r in zip(obs, ref):
        assert (o.image is not None) == r["image"], o.stamp_ns / 1e9
        for kind in ("audio", *STATE):
            got, want = getattr(o, kind), r[kind]
            assert (got is None) == (want is None), (kind, o.stamp_ns / 1e9)
            if want is not None:
                assert got.dtype == np.float32
                np.testing.assert_array_equal(got, want)
        if o.audio is not None:
            assert o.audio.shape == (WIN,)


def assert_same(a: list[Observation], b: list[Observation]) -> None:
    assert [o.stamp_ns for o in a] == [o.stamp_ns for o in b]
    for x, y in zip(a, b):
        assert x.present == y.present
        for kind in ("image", "audio", *STATE):
            if getattr(x, kind) is not None:
                np.testing.assert_array_equal(getattr(x, kind), getattr(y, kind))


rates_st = st.fixed_dictionaries(
    {
        "image": st.floats(5, 100),
        "audio": st.one_of(st.just(0.0), st.floats(5, 100)),
        "tactile": st.one_of(st.just(0.0), st.floats(5, 100)),
        "proprio": st.one_of(st.just(0.0), st.floats(5, 100)),
        "action": st.one_of(st.just(0.0), st.floats(5, 100)),
    }
)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    seed=st.integers(0, 2**31),
    rates=rates_st,
    jitter=st.floats(0, 0.3),
    drop=st.floats(0, 0.3),
    dup=st.floats(0, 0.1),
)
def test_bag_order_matches_reference(
    seed: int, rates: dict[str, float], jitter: float, drop: float, dup: float
) -> None:
    """Fed in stamp order: windows have the spec length and end at the frame stamp, presence is exactly
    what was fed, frames come out strictly increasing."""
    streams = make_streams(seed, rates, 2.5, jitter, drop, dup, 0.0)
    cfg = AlignerConfig(spec=SPEC)
    obs, aligner = run(cfg, interleave(streams, seed, 0.0))
    stamps = [o.stamp_ns for o in obs]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert_matches(obs, reference(streams, cfg))
    assert aligner.pending == 0 and aligner.resets == 0
    assert not any(k.startswith("future:") for k in aligner.counters), aligner.counters


@FAST
@given(
    seed=st.integers(0, 2**31),
    rates=rates_st,
    jitter=st.floats(0, 0.3),
    drop=st.floats(0, 0.3),
    dup=st.floats(0, 0.1),
    reorder_s=st.one_of(st.just(0.0), st.floats(0.0, 0.05)),
    delay_a=st.floats(0, 0.09),
    delay_b=st.floats(0, 0.09),
)
def test_interleavings_give_identical_observations(
    seed: int,
    rates: dict[str, float],
    jitter: float,
    drop: float,
    dup: float,
    reorder_s: float,
    delay_a: float,
    delay_b: float,
) -> None:
    """The determinism requirement: the same per-topic streams delivered in two different interleavings
    (topics lagging each other by up to max_wait - tolerance, reordered within reorder_s) give the same
    Observations, equal to the all-data reference."""
    streams = make_streams(seed, rates, 2.5, jitter, drop, dup, reorder_s)
    cfg = AlignerConfig(spec=SPEC, reorder_s=reorder_s)
    obs_a, aligner_a = run(cfg, interleave(streams, seed + 1, delay_a))
    obs_b, aligner_b = run(cfg, interleave(streams, seed + 2, delay_b))
    assert_same(obs_a, obs_b)
    assert_matches(obs_a, reference(streams, cfg))
    # In-contract data never trips the bad-clock rule, so the reference needs no such rule.
    for aligner in (aligner_a, aligner_b):
        assert not any(k.startswith("future:") for k in aligner.counters), aligner.counters


def bad_reading(kind: str, stamp: int) -> Event:
    if kind == "audio":
        return ("audio", stamp - stamp % DT, np.full(800, 9.0, np.float32))
    shape = (5, 5) if kind == "tactile" else (6,)
    return (kind, stamp, np.full(shape, 9.0, np.float32))


@FAST
@given(
    seed=st.integers(0, 2**31),
    rates=rates_st,
    kind=st.sampled_from(["audio", *STATE]),
    ahead_s=st.sampled_from([2.5, 60.0, 3600.0, 1e6]),
    where=st.floats(0, 1),
    delay_a=st.floats(0, 0.09),
    delay_b=st.floats(0, 0.09),
)
def test_one_bad_clock_reading_changes_nothing(
    seed: int, rates: dict[str, float], kind: str, ahead_s: float, where: float, delay_a: float,
    delay_b: float,
) -> None:  # fmt: skip
    """One reading stamped far ahead (bad sensor clock), delivered anywhere after the first frame: it is
    counted ``future:<kind>`` and the Observations are exactly the reference without it, whatever the
    interleaving (it moves no clock, so no in-time reading becomes too_old or is evicted)."""
    streams = make_streams(seed, rates, 2.5, 0.1, 0.1, 0.0, 0.0)
    cfg = AlignerConfig(spec=SPEC)
    ref = reference(streams, cfg)
    for delay, sub in ((delay_a, 1), (delay_b, 2)):
        events = interleave(streams, seed + sub, delay)
        first = next(i for i, e in enumerate(events) if e[0] == "image")
        at = first + 1 + int(where * (len(events) - first - 1))
        # ahead of the newest stamp any stream (max 2.5 s of data) can have
        events.insert(at, bad_reading(kind, round((2.5 + ahead_s) * NS_PER_S)))
        obs, aligner = run(cfg, events)
        assert_matches(obs, ref)
        assert aligner.counters[f"future:{kind}"] == 1
        assert not any(k.startswith(("too_old:", "evicted:", "stale:")) for k in aligner.counters)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31), max_items=st.sampled_from([16, 64, 4096]))
def test_buffers_bounded_under_flood(seed: int, max_items: int) -> None:
    """10x the fastest rate on every topic: no buffer ever exceeds its cap."""
    cfg = AlignerConfig(spec=SPEC, max_items=max_items, max_pending=32)
    streams = make_streams(
        seed,
        dict.fromkeys(("image", "audio", "tactile", "proprio", "action"), 1000.0),
        1.5,
        0.3,
        0.0,
        0.0,
        0.0,
    )
    aligner = Aligner(cfg)
    audio_cap = aligner._max_audio_samples
    for kind, stamp, payload in interleave(streams, seed, 0.05):
        add(aligner, kind, stamp, payload)
        sizes = aligner.buffer_sizes()
        assert max(sizes[m] for m in ("audio", "tactile", "proprio", "action")) <= max_items
        assert sizes["pending_images"] <= cfg.max_pending
        assert sizes["audio_samples"] <= audio_cap
    if max_items == 16:
        assert aligner.evicted > 0


def test_flood_default_caps() -> None:
    """A 10 kHz tactile flood for 3 s stays at max_items and counts evictions."""
    aligner = Aligner(AlignerConfig(spec=SPEC, max_items=4096))
    grid = np.zeros((5, 5), np.float32)
    for k in range(30000):
        aligner.add_tactile(k * 100_000, grid)
    assert aligner.buffer_sizes()["tactile"] <= 4096
    # the time horizon (about 2.4 s of 10 kHz) is above the cap, so the cap evicted
    assert aligner.counters["evicted:tactile"] > 0


# ------------------------------------------------------------------------------------------ edge cases
def img(v: int = 0) -> np.ndarray:
    return np.full((2, 2, 3), v, np.uint8)


def test_images_alone_are_not_held() -> None:
    aligner = Aligner(AlignerConfig(spec=SPEC))
    out = aligner.add_image(10 * MS, img())
    assert len(out) == 1 and out[0].missing == ["audio", "tactile", "proprio", "action"]
    assert out[0].frame_id == "cam" or out[0].frame_id == "camera_optical_frame"


def test_frame_waits_for_active_modality_then_times_out() -> None:
    aligner = Aligner(AlignerConfig(spec=SPEC))
    grid = np.ones((5, 5), np.float32)
    for k in range(50):  # tactile at 100 Hz for 0.5 s: active
        assert aligner.add_tactile(k * 10 * MS, grid) == []
    assert aligner.add_image(600 * MS, img()) == []  # tactile has nothing >= 0.6 s yet
    assert aligner.pending == 1
    out = aligner.add_tactile(600 * MS, grid * 2)
    assert len(out) == 1 and out[0].tactile is not None and out[0].tactile[0, 0] == 2
    # tactile goes silent: the next frame is released by the newest stamp passing t + max_wait
    assert aligner.add_image(700 * MS, img()) == []
    assert aligner.add_image(850 * MS, img()) == []
    out = aligner.add_image(901 * MS, img())
    assert [o.stamp_ns for o in out] == [700 * MS]
    assert out[0].tactile is None  # nearest reading (0.6 s) is beyond tolerance
    assert [o.stamp_ns for o in aligner.flush()] == [850 * MS, 901 * MS]


def test_reading_choice_prefers_causal() -> None:
    aligner = Aligner(AlignerConfig(spec=SPEC))
    for k in range(40):
        aligner.add_action(k * 10 * MS, np.full(6, k, np.float32))
    aligner.add_action(480 * MS, np.full(6, 100, np.float32))
    aligner.add_action(520 * MS, np.full(6, 200, np.float32))
    out = aligner.add_image(500 * MS, img())
    assert out[0].action is not None and out[0].action[0] == 100  # latest before t wins over nearer after
    out = aligner.add_image(510 * MS, img())
    assert out[0].action[0] == 100
    aligner.add_action(600 * MS, np.full(6, 300, np.float32))
    # at 0.58 s: nothing in [0.53, 0.58], the earliest after within tolerance is 0.60
    out = aligner.add_image(580 * MS, img())
    assert out[0].action[0] == 300


def test_audio_window_ends_at_frame_and_tolerates_subsample_gaps() -> None:
    aligner = Aligner(AlignerConfig(spec=SPEC))
    # 44.1 kHz chunks of 1000 samples resampled to 16 kHz: 362.8 samples per chunk -> stamps off-grid
    src_ns = 1000 / 44100 * NS_PER_S
    start = 0
    for k in range(40):
        stamp = round(k * src_ns)
        n = 363
        aligner.add_audio(stamp, np.full(n, k / 100, np.float32))
        start = stamp
    t = start - 5 * MS
    # (0.9 s of audio before the first frame: camera-less outage observations come first)
    out = [o for o in aligner.add_image(t, img()) if o.image is not None]
    assert len(out) == 1 and out[0].audio is not None and out[0].audio.shape == (WIN,)


def test_audio_hole_is_missing_not_zero() -> None:
    aligner = Aligner(AlignerConfig(spec=SPEC))
    chunk = 800  # 50 ms
    for k in range(20):
        if k == 12:
            continue  # hole over [0.60, 0.65) s
        aligner.add_audio(k * chunk * DT, np.full(chunk, 0.5, np.float32))
    got = {o.stamp_ns: o for o in aligner.add_image(640 * MS, img()) + aligner.add_image(760 * MS, img())}
    assert got[640 * MS].audio is None
    assert got[760 * MS].audio is not None and (got[760 * MS].audio == 0.5).all()


def test_duplicates_and_out_of_order_images() -> None:
    aligner = Aligner(AlignerConfig(spec=SPEC))
    assert len(aligner.add_image(100 * MS, img())) == 1
    assert aligner.add_image(100 * MS, img()) == []
    assert aligner.add_image(50 * MS, img()) == []
    assert aligner.counters["duplicate:image"] == 1 and aligner.out_of_order == 1
    aligner.add_tactile(10 * MS, np.zeros((5, 5), np.float32))
    aligner.add_tactile(10 * MS, np.zeros((5, 5), np.float32))
    assert aligner.counters["duplicate:tactile"] == 1 and aligner.duplicates == 2


def test_backwards_jump_resets(caplog: pytest.LogCaptureFixture) -> None:
    """A bag loop: new-epoch tactile arrives before the first new-epoch image; it survives the reset,
    old-epoch state does not leak into the new epoch."""
    aligner = Aligner(AlignerConfig(spec=SPEC))
    grid = np.ones((5, 5), np.float32)
    for k in range(300):
        aligner.add_tactile(k * 10 * MS, grid)
        if k % 3 == 0:
            aligner.add_image(k * 10 * MS, img())
    epoch = aligner.epoch
    for k in range(30):  # loop restarts at 0: tactile first
        aligner.add_tactile(k * 10 * MS, grid * 5)
    with caplog.at_level(logging.WARNING, logger="embodied_wm.sensing.aligner"):
        out = aligner.add_image(0, img())
    assert aligner.resets == 1 and aligner.epoch == epoch + 1
    assert len([r for r in caplog.records if "jumped back" in r.message]) == 1
    assert [o.stamp_ns for o in out] == [0]
    assert aligner.pending == 0
    # the tactile stream is active again from the stash; old readings near 2.9 s are gone
    out = aligner.add_image(290 * MS, img())
    assert out and out[-1].tactile is not None and out[-1].tactile[0, 0] == 5
    assert aligner.buffer_sizes()["tactile"] == 30
    # a straggler from the old epoch (far ahead of the images) is dropped, not buffered
    aligner2 = Aligner(AlignerConfig(spec=SPEC))
    for k in range(300):
        aligner2.add_image(k * 10 * MS, img())
    aligner2.add_image(0, img())
    aligner2.add_tactile(2995 * MS, grid)
    assert aligner2.counters["stale:tactile"] == 1 and aligner2.buffer_sizes()["tactile"] == 0


def test_small_backwards_jump_is_not_reset() -> None:
    aligner = Aligner(AlignerConfig(spec=SPEC))
    aligner.add_image(2000 * MS, img())
    assert aligner.add_image(1500 * MS, img()) == []
    assert aligner.resets == 0 and aligner.out_of_order == 1


def test_reset_and_config_validation() -> None:
    aligner = Aligner(AlignerConfig(spec=SPEC))
    aligner.add_tactile(0, np.zeros((5, 5), np.float32))
    aligner.reset()
    assert aligner.buffer_sizes()["tactile"] == 0 and aligner.epoch == 1 and aligner.resets == 0
    with pytest.raises(ValueError):
        AlignerConfig(buffer_s=0.1, max_wait_s=0.2)
    with pytest.raises(ValueError):
        AlignerConfig(tolerance_s=-1)
    with pytest.raises(ValueError):
        AlignerConfig(spec=ModalitySpec(audio_window_s=0.0))
    for future_s in (0.0, -1.0, 0.2, 0.25, float("nan")):  # must exceed max_wait_s + reorder_s
        with pytest.raises(ValueError, match="future_s"):
            AlignerConfig(future_s=future_s, max_wait_s=0.2, reorder_s=0.05)
    assert AlignerConfig(future_s=0.3, max_wait_s=0.2, reorder_s=0.05).future_s == 0.3


def tick(
    aligner: Aligner, t: int, kinds: tuple[str, ...] = ("tactile", "proprio", "image")
) -> list[Observation]:
    out: list[Observation] = []
    for kind in kinds:
        if kind == "image":
            out += aligner.add_image(t, img())
        elif kind == "tactile":
            out += aligner.add_tactile(t, np.full((5, 5), t / NS_PER_S, np.float32))
        else:
            out += aligner.add_proprio(t, np.full(6, t / NS_PER_S, np.float32))
    return out


def test_future_stamp_counted_and_moves_no_clock() -> None:
    """One proprio reading an hour ahead (bad sensor clock): dropped as "future:proprio", nothing else
    changes; every later frame still gets tactile and proprio. The bound is future_s past the newest
    stamp of the *other* streams, images included."""
    aligner = Aligner(AlignerConfig(spec=SPEC))
    period = 33 * MS
    out = []
    for k in range(60):
        out += tick(aligner, k * period)
    sizes = aligner.buffer_sizes()
    assert aligner.add_proprio(3600 * NS_PER_S, np.zeros(6, np.float32)) == []
    assert aligner.counters == {"future:proprio": 1}
    assert aligner.buffer_sizes() == sizes  # not buffered, nothing evicted, no frame released
    out = []
    for k in range(60, 120):
        out += tick(aligner, k * period)
    assert [o.stamp_ns for o in out] == [k * period for k in range(60, 120)]
    assert all(o.tactile is not None and o.proprio is not None for o in out)
    assert aligner.counters == {"future:proprio": 1}
    # The bound: future_s (2 s) past the newest other stamp (119 * 33 ms), not past proprio's own.
    newest = 119 * period
    aligner.add_tactile(newest + 2 * NS_PER_S + 1, np.zeros((5, 5), np.float32))
    assert aligner.counters["future:tactile"] == 1
    aligner.add_tactile(newest + 2 * NS_PER_S, np.zeros((5, 5), np.float32))
    assert aligner.counters["future:tactile"] == 1  # at the bound: taken
    # Within the bound the eviction horizon still lies behind the other streams' in-time readings.
    aligner.add_proprio(newest + period, np.zeros(6, np.float32))
    assert aligner.counters == {"future:proprio": 1, "future:tactile": 1}


def test_camera_outage_is_not_a_future_stamp() -> None:
    """The camera stops for 5 s while tactile and proprio go on: they vouch for each other, nothing is
    counted "future:", and the first frame after the outage has both. (With a single non-image stream
    there is nothing to vouch for it: its readings more than future_s past the last frame are dropped.)"""
    period = 33 * MS
    aligner = Aligner(AlignerConfig(spec=SPEC))
    for k in range(30):
        tick(aligner, k * period)
    for k in range(30, 180):
        tick(aligner, k * period, ("tactile", "proprio"))
    out = tick(aligner, 180 * period)
    assert not any(k.startswith(("future:", "too_old:")) for k in aligner.counters), aligner.counters
    # the frame completes the outage ticks before it (5.8 and 5.9 s), then itself
    assert [o.stamp_ns for o in out] == [5800 * MS, 5900 * MS, 180 * period]
    assert [o.image is None for o in out] == [True, True, False]
    assert all(o.tactile is not None and o.proprio is not None for o in out)
    alone = Aligner(AlignerConfig(spec=SPEC))
    for k in range(30):
        tick(alone, k * period, ("tactile", "image"))
    for k in range(30, 180):
        tick(alone, k * period, ("tactile",))
    # last frame at 29 * 33 ms = 0.957 s: readings after 2.957 s (from k = 90) are dropped
    assert alone.counters == {"future:tactile": 180 - 90}


def test_future_stamp_before_the_first_frame_is_dropped_when_it_arrives() -> None:
    """The very first message is an hour ahead: nothing can show it wrong yet, so it is taken (and
    blinds the other streams for now), but the first frame drops it as "future:action" and later
    frames have every stream again."""
    aligner = Aligner(AlignerConfig(spec=SPEC))
    aligner.add_action(3600 * NS_PER_S, np.zeros(6, np.float32))
    assert aligner.counters == {}
    period = 33 * MS
    out: list[Observation] = []
    for k in range(10):
        out += tick(aligner, k * period, ("tactile", "proprio"))
        out += aligner.add_action(k * period, np.ones(6, np.float32))
    out += tick(aligner, 10 * period, ("image",))
    assert aligner.counters["future:action"] == 1
    assert aligner.buffer_sizes()["action"] == 0
    for k in range(11, 40):
        out += tick(aligner, k * period)
        out += aligner.add_action(k * period, np.ones(6, np.float32))
    assert out[-1].missing == ["audio"]
    assert aligner.counters["future:action"] == 1


def test_future_image_costs_one_reset() -> None:
    """Images are the reference clock, so a frame an hour ahead is not rejected: it is emitted (with no
    stream active that far ahead), the next in-time frame is a backwards jump (one reset), and the
    streams are back max_wait_s of data later."""
    period = 33 * MS
    aligner = Aligner(AlignerConfig(spec=SPEC))
    for k in range(60):
        tick(aligner, k * period)
    out = aligner.add_image(3600 * NS_PER_S, img())
    assert [o.stamp_ns for o in out] == [3600 * NS_PER_S] and out[0].tactile is None
    out = []
    for k in range(60, 120):
        out += tick(aligner, k * period)
    assert aligner.resets == 1 and not any(k.startswith("future:") for k in aligner.counters)
    assert [o.stamp_ns for o in out] == [k * period for k in range(60, 120)]
    back = next(i for i, o in enumerate(out) if o.tactile is not None)
    assert back * period <= aligner.config.max_wait_s * NS_PER_S + 2 * period
    assert all(o.tactile is not None and o.proprio is not None for o in out[back:])


def test_max_pending_forces_oldest_out() -> None:
    cfg = AlignerConfig(spec=SPEC, max_pending=4)
    aligner = Aligner(cfg)
    for k in range(100):
        aligner.add_tactile(k * MS, np.zeros((5, 5), np.float32))
    out = []
    for k in range(10):  # tactile is active but silent past 99 ms; frames within max_wait pile up
        out += aligner.add_image((300 + k) * MS, img())
    assert aligner.pending <= 4 and aligner.counters["forced:image"] == 6
    assert [o.stamp_ns for o in out] == [(300 + k) * MS for k in range(6)]


# ------------------------------------------------------------------------------------- camera outage
def robot(
    aligner: Aligner, t0: int, t1: int, camera: bool, step: int = 10 * MS, cam_every: int = 3
) -> list[Observation]:
    """100 Hz tactile, proprio, action and 10 ms audio chunks over [t0, t1), and (if ``camera``) a frame
    every ``cam_every`` steps; each stream carries its stamp in its values."""
    out: list[Observation] = []
    for k, t in enumerate(range(t0, t1, step)):
        out += aligner.add_audio(t - t % DT, np.full(step // DT, t / NS_PER_S, np.float32))
        out += aligner.add_tactile(t, np.full((5, 5), t / NS_PER_S, np.float32))
        out += aligner.add_proprio(t, np.full(6, t / NS_PER_S, np.float32))
        out += aligner.add_action(t, np.full(6, t / NS_PER_S, np.float32))
        if camera and (t // step) % cam_every == 0:
            out += aligner.add_image(t, img(k % 256), "cam")
    return out


def test_camera_outage_ticks_at_the_period_then_frames_again() -> None:
    """Frames for 1 s, the camera stops for 3 s while everything else goes on, then comes back:
    camera-less Observations at every multiple of the period more than camera_timeout_s after the last
    frame, max_wait_s behind the newest data, each with the readings a frame there would get and the
    camera's frame_id; then frames again and no more ticks."""
    cfg = AlignerConfig(spec=SPEC, camera_timeout_s=0.5, outage_period_s=0.05)
    aligner = Aligner(cfg)
    out = robot(aligner, 0, 1000 * MS, camera=True)
    assert out and all(o.image is not None for o in out)
    last_frame = max(o.stamp_ns for o in out)
    assert last_frame == 990 * MS
    out = robot(aligner, 1000 * MS, 4000 * MS, camera=False)
    # ticks: 1.5 s (first multiple of 50 ms after 0.99 + 0.5) .. 3.75 s (newest 3.99 s - max_wait 0.2)
    assert [o.stamp_ns for o in out] == list(range(1500 * MS, 3751 * MS, 50 * MS))
    for o in out:
        assert o.image is None and o.frame_id == "cam" and o.missing == ["image"]
        t = o.stamp_ns / NS_PER_S
        assert o.tactile is not None and o.tactile[0, 0] == np.float32(t)
        assert o.action is not None and o.action[0] == np.float32(t)
        assert o.audio is not None and o.audio.shape == (WIN,) and o.audio[-1] == np.float32(t)
    assert aligner.camera_missing == len(out)
    back = robot(aligner, 4000 * MS, 5000 * MS, camera=True)
    stamps = [o.stamp_ns for o in back]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    # the ticks up to the first frame back (4.02 s), then only frames
    first = next(i for i, o in enumerate(back) if o.image is not None)
    assert stamps[:first] == list(range(3800 * MS, 4001 * MS, 50 * MS))
    assert stamps[first] == 4020 * MS and all(o.image is not None for o in back[first:])
    assert not any(k.startswith(("future:", "too_old:", "out_of_order:")) for k in aligner.counters)


def test_camera_outage_off_and_never_seen() -> None:
    """camera_timeout_s = 0: no camera-less Observations at all. A camera that never delivered: ticks
    from camera_timeout_s after the first stamp taken."""
    off = Aligner(AlignerConfig(spec=SPEC, camera_timeout_s=0))
    assert robot(off, 0, 3000 * MS, camera=False) == [] and off.flush() == []
    never = Aligner(AlignerConfig(spec=SPEC, camera_timeout_s=0.5))  # period: 0.1 s without a model
    out = robot(never, 0, 3000 * MS, camera=False) + never.flush()
    assert [o.stamp_ns for o in out] == list(range(600 * MS, 2991 * MS, 100 * MS))
    assert all(o.image is None and o.tactile is not None for o in out)
    # the flush emitted the ticks up to the newest stamp (2.99 s) without waiting for max_wait_s
    with pytest.raises(ValueError, match="camera_timeout_s"):
        AlignerConfig(camera_timeout_s=-1)
    with pytest.raises(ValueError, match="outage_period_s"):
        AlignerConfig(outage_period_s=0.0)


@FAST
@given(
    seed=st.integers(0, 2**31),
    rates=rates_st,
    gap=st.tuples(st.floats(0.3, 1.5), st.floats(0.4, 2.0)),
    period=st.sampled_from([0.033, 0.05, 0.1, 0.25]),
    timeout=st.sampled_from([0.3, 0.5, 1.0]),
    reorder_s=st.one_of(st.just(0.0), st.floats(0.0, 0.05)),
    delay_a=st.floats(0, 0.09),
    delay_b=st.floats(0, 0.09),
)
def test_camera_outage_identical_across_interleavings(
    seed: int,
    rates: dict[str, float],
    gap: tuple[float, float],
    period: float,
    timeout: float,
    reorder_s: float,
    delay_a: float,
    delay_b: float,
) -> None:  # fmt: skip
    """A camera outage of up to 2 s inside 4 s of data: two interleavings give the same Observations,
    frames and outage ticks alike, equal to the brute-force reference (ticks at the multiples of the
    period more than camera_timeout_s after the last frame before them)."""
    # (no duplicates: one delivered after a gap over reset_jump_s would read as a bag loop)
    streams = make_streams(seed, rates, 4.0, 0.2, 0.1, 0.0, reorder_s, (gap[0], gap[0] + gap[1]))
    # future_s above the longest outage: with a single non-image stream nothing vouches for its readings
    # once they are future_s past the last frame (test_camera_outage_is_not_a_future_stamp)
    cfg = AlignerConfig(
        spec=SPEC, reorder_s=reorder_s, camera_timeout_s=timeout, outage_period_s=period, future_s=3.0
    )
    obs_a, aligner_a = run(cfg, interleave(streams, seed + 1, delay_a))
    obs_b, _ = run(cfg, interleave(streams, seed + 2, delay_b))
    assert_same(obs_a, obs_b)
    ref = reference(streams, cfg)
    assert_matches(obs_a, ref)
    if any(rates[k] for k in ("audio", *STATE)) and gap[1] > timeout + period + 0.3:
        assert any(not r["image"] for r in ref)  # the test does exercise outages
    assert aligner_a.camera_missing == sum(1 for o in obs_a if o.image is None)


def test_long_outage_memory_bounded() -> None:
    """A 60 s outage with a 1 kHz tactile flood, audio and proprio: buffers stay within their caps,
    nothing is held, and one tick per period comes out."""
    cfg = AlignerConfig(spec=SPEC, max_items=512, outage_period_s=0.1)
    aligner = Aligner(cfg)
    robot(aligner, 0, 500 * MS, camera=True)
    n = 0
    grid = np.zeros((5, 5), np.float32)
    for k in range(500, 60_500):  # 1 ms steps
        t = k * MS
        n += len(aligner.add_tactile(t, grid))
        if k % 10 == 0:
            n += len(aligner.add_proprio(t, np.zeros(6, np.float32)))
            n += len(aligner.add_audio(t, np.zeros(160, np.float32)))
        if k % 1000 == 0:
            sizes = aligner.buffer_sizes()
            assert sizes["tactile"] <= 512 and sizes["pending_images"] == 0
            assert sizes["audio_samples"] <= aligner._max_audio_samples
    # last frame 0.48 s: ticks 1.0 .. 60.2 s (newest 60.499 s - max_wait)
    assert n == aligner.camera_missing == 593
    assert aligner.counters["evicted:tactile"] > 0
