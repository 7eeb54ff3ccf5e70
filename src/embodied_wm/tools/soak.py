"""Soak test: run the end-to-end setup for minutes or hours and watch for leaks, drift and drops.

``embodied-wm soak --minutes M --out DIR [--model DIR] [--backend B] [--rate 30]`` starts the same three
processes as the end-to-end benchmark (synthetic sensors -> perception_node, plus the pass-through floor)
and, per window (5 s by default), records perception_node's RSS (from /proc), its CPU use, the latency of
predictions (sensor stamp -> PredictedFrames receipt, p50/p99), the floor latency, the prediction rate and
the fraction of camera frames without a prediction. Results go to DIR/soak.json (rewritten after every
window, so an interrupted soak still leaves its data) and DIR/soak.png.

Verdict (one line on stdout): after the warm-up (first 20 % of the run, when caches, allocator arenas and
DDS history fill up), RSS must not grow by more than ``--max-rss-growth-pct`` and the p50 latency slope must
stay under ``--max-drift-ms-per-min``; the node must not die and must keep predicting.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from embodied_wm.tools.bench_e2e import (
    add_arguments,
    default_backend,
    device_info,
    last_diagnostics,
    latency_summary,
    parse_params,
    publisher_rate,
    write_json,
)
from embodied_wm.tools.e2e_setup import NS_PER_S, BenchError, E2EConfig, E2ESetup, proc_cpu_s, proc_rss_kb

#: A window's latencies are read this long after it ends, so late predictions of its frames count.
RESULT_LAG_S = 1.0
#: Samples older than this (receipt time, before the current window) are dropped from memory.
KEEP_S = 10.0


def _prune(store: list[tuple[int, int]], cutoff_ns: int) -> None:
    """Drop leading samples received before ``cutoff_ns`` (memory stays flat over an hours-long soak).
    ``del lst[:n]`` is one atomic list operation under the GIL, safe against the spin thread's appends."""
    n = 0
    for _, recv in store:
        if recv >= cutoff_ns:
            break
        n += 1
    if n:
        del store[:n]


def _slope_per_min(t_s: np.ndarray, y: np.ndarray) -> float | None:
    """Least-squares slope of y over time, in y units per minute (None with fewer than 3 finite points)."""
    ok = np.isfinite(y)
    if ok.sum() < 3:
        return None
    return float(np.polyfit(t_s[ok] / 60.0, y[ok], 1)[0])


def analyse(
    windows: list[dict[str, Any]],
    warmup_fraction: float,
    max_rss_growth_pct: float,
    max_drift_ms_per_min: float,
    crashed: str | None,
) -> dict[str, Any]:
    """RSS growth and latency drift after warm-up, and the verdict with its reasons."""
    n = len(windows)
    n_warm = min(max(math.ceil(n * warmup_fraction), 1), max(n - 1, 0)) if n else 0
    post = windows[n_warm:]
    t = np.array([w["t_s"] for w in post], dtype=np.float64)
    rss = np.array([np.nan if w["rss_mb"] is None else w["rss_mb"] for w in post], dtype=np.float64)
    p50 = np.array([np.nan if w["node_p50_ms"] is None else w["node_p50_ms"] for w in post], dtype=np.float64)
    p99 = np.array([np.nan if w["node_p99_ms"] is None else w["node_p99_ms"] for w in post], dtype=np.float64)
    out: dict[str, Any] = {"windows": n, "warmup_windows": n_warm}
    reasons: list[str] = []
    if crashed:
        reasons.append(f"crashed: {crashed.splitlines()[0]}")
    finite_rss = rss[np.isfinite(rss)]
    if finite_rss.size >= 2:
        base = float(finite_rss[0])
        # The end value is a median of the last few windows so one allocator spike is not a "leak".
        end = float(np.median(finite_rss[-3:]))
        out.update(
            rss_mb_after_warmup=base,
            rss_mb_end=end,
            rss_mb_peak=float(finite_rss.max()),
            rss_growth_pct=100.0 * (end - base) / base if base > 0 else None,
            rss_slope_mb_per_min=_slope_per_min(t[np.isfinite(rss)], finite_rss),
        )
        if out["rss_growth_pct"] is not None and out["rss_growth_pct"] > max_rss_growth_pct:
            reasons.append(
                f"RSS grew {out['rss_growth_pct']:.1f} % after warm-up (max {max_rss_growth_pct} %)"
            )
    else:
        reasons.append("too few windows to judge memory")
    out["latency_p50_ms"] = float(np.nanmedian(p50)) if np.isfinite(p50).any() else None
    out["latency_p99_ms"] = float(np.nanmedian(p99)) if np.isfinite(p99).any() else None
    out["latency_p99_worst_window_ms"] = float(np.nanmax(p99)) if np.isfinite(p99).any() else None
    out["latency_drift_ms_per_min"] = _slope_per_min(t, p50)
    if out["latency_drift_ms_per_min"] is not None and out["latency_drift_ms_per_min"] > max_drift_ms_per_min:
        reasons.append(
            f"p50 latency drifts {out['latency_drift_ms_per_min']:.2f} ms/min (max {max_drift_ms_per_min})"
        )
    rates = [w["rate_hz"] for w in post]
    drops = [w["drop_fraction"] for w in post if w["drop_fraction"] is not None]
    out["rate_hz_mean"] = float(np.mean(rates)) if rates else None
    out["rate_hz_min_window"] = float(np.min(rates)) if rates else None
    out["drop_fraction_mean"] = float(np.mean(drops)) if drops else None
    if rates and min(rates) == 0:
        reasons.append("a window without any prediction (node stalled)")
    out["verdict"] = "FAIL" if reasons else "PASS"
    out["reasons"] = reasons
    return out


def plot(result: Mapping[str, Any], path: Path) -> None:
    """soak.png: RSS, latency (node p50/p99, floor p50) and rate/drops over time; warm-up shaded."""
    # lazy: matplotlib is heavy and only needed for plots
    import matplotlib

    matplotlib.use("Agg")  # headless: never try to open a display
    # lazy: matplotlib is heavy and only needed for plots
    import matplotlib.pyplot as plt

    ws = result["windows"]
    t = np.array([w["t_s"] / 60.0 for w in ws])

    def col(key: str) -> np.ndarray:
        return np.array([np.nan if w.get(key) is None else w[key] for w in ws], dtype=np.float64)

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(t, col("rss_mb"), color="tab:purple")
    axes[0].set_ylabel("perception_node RSS (MB)")
    axes[1].plot(t, col("node_p50_ms"), label="node p50")
    axes[1].plot(t, col("node_p99_ms"), label="node p99", alpha=0.7)
    axes[1].plot(t, col("floor_p50_ms"), label="pass-through floor p50", linestyle="--")
    axes[1].set_ylabel("stamp -> receipt (ms, log)")
    # Log scale: p99 spikes of hundreds of ms would otherwise flatten the p50 and floor lines.
    axes[1].set_yscale("log")
    axes[1].legend(loc="upper right", fontsize=8)
    axes[2].plot(t, col("rate_hz"), label="predictions/s", color="tab:green")
    axes[2].set_ylabel("predictions/s")
    ax2 = axes[2].twinx()
    ax2.plot(t, 100 * col("drop_fraction"), color="tab:red", alpha=0.6, label="frames without prediction (%)")
    ax2.set_ylabel("dropped (%)")
    axes[2].set_xlabel("minutes")
    a = result["analysis"]
    n_warm = a.get("warmup_windows", 0)
    if n_warm and len(t) > n_warm:
        for ax in axes:
            ax.axvspan(0, t[n_warm - 1], color="grey", alpha=0.15, lw=0)
    growth = a.get("rss_growth_pct")
    drift = a.get("latency_drift_ms_per_min")
    fig.suptitle(
        f"soak [{result['backend']}] {result['settings']['rate_hz']:g} Hz on "
        f"{result['device']['description']}: "
        f"{a['verdict']}, RSS {'n/a' if growth is None else f'{growth:+.1f} %'}, "
        f"drift {'n/a' if drift is None else f'{drift:+.2f} ms/min'}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_soak(
    minutes: float,
    out_dir: str | Path,
    model_dir: str | None = None,
    backend: str = "linear",
    rate_hz: float = 30.0,
    *,
    width: int = 640,
    height: int = 480,
    window_s: float = 5.0,
    warmup_fraction: float = 0.2,
    fastdds_profile: str | None = None,
    domain_id: int | None = None,
    node_params: Mapping[str, Any] | None = None,
    max_rss_growth_pct: float = 10.0,
    max_drift_ms_per_min: float = 1.0,
    startup_timeout_s: float = 180.0,
    node_cmd: list[str] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the soak, write ``out_dir``/soak.json and soak.png, print the verdict line; return the result.

    A node crash is recorded (verdict FAIL) rather than raised, so the data up to the crash is kept;
    BenchError is raised only if the setup never starts.
    """
    if minutes <= 0 or window_s <= 0:
        raise BenchError("minutes and window must be > 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = E2EConfig(
        model_dir=model_dir,
        backend=backend,
        rate_hz=rate_hz,
        width=width,
        height=height,
        fastdds_profile=fastdds_profile,
        domain_id=domain_id,
        log_dir=out / "logs",
        node_params=dict(node_params or {}),
        startup_timeout_s=startup_timeout_s,
        node_cmd=node_cmd,
    )
    result: dict[str, Any] = {
        "kind": "embodied_wm.tools.soak",
        "device": device_info(),
        "backend": backend,
        "model_dir": model_dir,
        "settings": {
            "minutes": minutes,
            "window_s": window_s,
            "rate_hz": rate_hz,
            "width": width,
            "height": height,
            "warmup_fraction": warmup_fraction,
            "fastdds_profile": cfg.fastdds_profile or "none (Fast DDS defaults)",
            "node_params": cfg.node_params,
            "max_rss_growth_pct": max_rss_growth_pct,
            "max_drift_ms_per_min": max_drift_ms_per_min,
        },
        "windows": [],
    }
    crashed: str | None = None
    with E2ESetup(cfg) as setup:
        setup.wait_ready()
        result["settings"]["domain_id"] = setup.domain_id
        result["settings"]["namespace"] = setup.namespace
        result["settings"]["node_command"] = setup.node_command()
        assert setup.collector is not None
        col = setup.collector
        pid = setup.node_pid
        n_windows = max(round(minutes * 60 / window_s), 1)
        start_ns = time.time_ns()
        start_mono = time.monotonic()
        prev_cpu = proc_cpu_s(pid)
        prev_stats = setup.publisher_stats() or {}
        for k in range(n_windows):
            w0 = start_ns + int(k * window_s * NS_PER_S)
            w1 = start_ns + int((k + 1) * window_s * NS_PER_S)
            # Sleep to the window's end (+ lag for its late predictions), watching the processes.
            wake = start_mono + (k + 1) * window_s + RESULT_LAG_S
            try:
                while time.monotonic() < wake:
                    setup.check_alive()
                    time.sleep(min(0.5, max(wake - time.monotonic(), 0.0)))
            except BenchError as exc:
                crashed = str(exc)
                break
            rss_kb = proc_rss_kb(pid)
            cpu = proc_cpu_s(pid)
            stats = setup.publisher_stats() or {}
            node_lat = setup.node_latencies_ms(w0, w1)
            floor_lat = setup.floor_latencies_ms(w0, w1)
            pub_rate = publisher_rate(prev_stats, stats, rate_hz)
            rate = node_lat.size / window_s
            ln, lf = latency_summary(node_lat), latency_summary(floor_lat)
            diags = setup.diagnostics_between(w0, w1 + int(RESULT_LAG_S * NS_PER_S))
            result["windows"].append(
                {
                    "t_s": (k + 1) * window_s,
                    "rss_mb": None if rss_kb is None else rss_kb / 1024,
                    "cpu_percent": None
                    if cpu is None or prev_cpu is None
                    else 100.0 * (cpu - prev_cpu) / window_s,
                    "predictions": int(node_lat.size),
                    "rate_hz": rate,
                    "publisher_rate_hz": pub_rate,
                    "drop_fraction": max(0.0, 1.0 - rate / pub_rate) if pub_rate > 0 else None,
                    "node_p50_ms": ln["p50"],
                    "node_p99_ms": ln["p99"],
                    "node_max_ms": ln["max"],
                    "floor_p50_ms": lf["p50"],
                    "floor_p99_ms": lf["p99"],
                    # Machine load beside each window: on a shared machine, spikes usually line up with it.
                    "load_avg_1m": os.getloadavg()[0],
                    "diagnostics": last_diagnostics(diags),
                }
            )
            prev_cpu, prev_stats = cpu, stats
            for store in (col.predictions, col.floor):
                _prune(store, w1 - int(KEEP_S * NS_PER_S))
            _prune_diags(col.diagnostics, w1 - int(KEEP_S * NS_PER_S))
            result["analysis"] = analyse(
                result["windows"], warmup_fraction, max_rss_growth_pct, max_drift_ms_per_min, crashed
            )
            write_json(out / "soak.json", result)
        result["elapsed_s"] = time.monotonic() - start_mono
    result["crashed"] = crashed
    result["analysis"] = analyse(
        result["windows"], warmup_fraction, max_rss_growth_pct, max_drift_ms_per_min, crashed
    )
    write_json(out / "soak.json", result)
    if result["windows"]:
        plot(result, out / "soak.png")
    if not quiet:
        print(verdict_line(result), flush=True)
    return result


def _prune_diags(store: list[tuple[int, str, dict[str, str]]], cutoff_ns: int) -> None:
    n = 0
    for recv, _, _ in store:
        if recv >= cutoff_ns:
            break
        n += 1
    if n:
        del store[:n]


def verdict_line(r: Mapping[str, Any]) -> str:
    a = r["analysis"]

    def f(v: float | None, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    why = f" ({'; '.join(a['reasons'])})" if a["reasons"] else ""
    dropped = 100 * (a.get("drop_fraction_mean") or 0.0)
    return (
        f"soak {a['verdict']}{why}: [{r['backend']}] {r['settings']['minutes']:g} min at "
        f"{r['settings']['rate_hz']:g} Hz on {r['device']['description']}: RSS growth after warm-up "
        f"{f(a.get('rss_growth_pct'), '+.1f')} % ({f(a.get('rss_mb_after_warmup'), '.0f')} -> "
        f"{f(a.get('rss_mb_end'), '.0f')} MB), latency p50 {f(a.get('latency_p50_ms'), '.1f')} ms "
        f"p99 {f(a.get('latency_p99_ms'), '.1f')} ms, "
        f"drift {f(a.get('latency_drift_ms_per_min'), '+.2f')} ms/min, "
        f"{f(a.get('rate_hz_mean'), '.1f')} predictions/s, dropped {dropped:.1f} %"
    )


def _run_from_args(args: argparse.Namespace) -> int:
    result = run_soak(
        args.minutes,
        args.out,
        args.model,
        default_backend(args.model, args.backend),
        args.rate,
        width=args.width,
        height=args.height,
        window_s=args.window,
        warmup_fraction=args.warmup_fraction,
        fastdds_profile=args.fastdds_profile,
        domain_id=args.domain_id,
        node_params=parse_params(args.param),
        max_rss_growth_pct=args.max_rss_growth_pct,
        max_drift_ms_per_min=args.max_drift_ms_per_min,
        node_cmd=args.node_cmd.split() if args.node_cmd else None,
    )
    return 0 if result["analysis"]["verdict"] == "PASS" else 1


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, required=True, help="how long to run")
    p.add_argument("--out", required=True, help="output folder (soak.json, soak.png, logs/)")
    add_arguments(p)
    p.add_argument("--window", type=float, default=5.0, help="seconds per measurement window (default 5)")
    p.add_argument("--warmup-fraction", type=float, default=0.2, help="leading part not judged (default 0.2)")
    p.add_argument("--max-rss-growth-pct", type=float, default=10.0)
    p.add_argument("--max-drift-ms-per-min", type=float, default=1.0)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``soak`` to the ``embodied-wm`` subcommands (called by embodied_wm.cli)."""
    p = subparsers.add_parser(
        "soak",
        help="run sensors -> perception_node for M minutes; record RSS, latency, drops",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    _configure(p)

    def _func(args: argparse.Namespace) -> int:
        try:
            return _run_from_args(args)
        except BenchError as exc:
            print(f"embodied-wm soak: error: {exc}", file=sys.stderr)
            return 1

    p.set_defaults(func=_func)
    return p


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m embodied_wm.tools.soak", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    _configure(p)
    args = p.parse_args(argv)
    try:
        return _run_from_args(args)
    except BenchError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
