"""report.html with PNG plots and contact sheets for an evaluation run.

Everything the page references is written next to it (relative paths), so the output directory can be
copied or archived as a whole. Plots use matplotlib's Agg backend (no display needed); contact sheets come
from viz.comparison_sheet (the renderer make demo and perception_node's preview use) and are written with
OpenCV. Times are seconds from each bag's first camera frame; its wall time is given once per bag.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from embodied_wm.eval.replay import BagResult, ModelInfo, Sample
from embodied_wm.eval.scoring import FRAME_METRICS, StatsTable
from embodied_wm.observation import NS_PER_S
from embodied_wm.viz import comparison_sheet

METRIC_LABELS = {"psnr": "PSNR (dB)", "psnr_moving": "PSNR on moving pixels (dB)", "ssim": "SSIM"}


def _plt() -> Any:
    # lazy: matplotlib is heavy and only needed for plots
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib is heavy and only needed for plots
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(summary: dict[str, Any], path: Path) -> None:
    """Metric vs horizon, one line per method, one panel per metric."""
    plt = _plt()
    hs = summary["horizon_s"]
    fig, axes = plt.subplots(1, len(FRAME_METRICS), figsize=(4.2 * len(FRAME_METRICS), 3.4))
    for ax, metric in zip(axes, FRAME_METRICS):
        for method, vals in summary["methods"].items():
            ys = [np.nan if v is None else v for v in vals[metric]]
            ax.plot(hs, ys, marker="o", label=method)
        ax.set_xlabel("horizon (s)")
        ax.set_title(METRIC_LABELS[metric])
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _total_latency(stats: StatsTable, method: str) -> list[float]:
    lat = stats.get("clean", method).latency
    if "total" in lat:
        return lat["total"]
    stages = [v for v in lat.values() if v]
    if not stages:
        return []
    n = min(len(v) for v in stages)
    return [sum(v[i] for v in stages) for i in range(n)]


def plot_latency(stats: StatsTable, methods: Sequence[str], path: Path) -> None:
    """Histogram of per-prediction latency (the "total" stage, else the sum of stages) per method."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    data = {m: _total_latency(stats, m) for m in methods}
    allv = [v for vals in data.values() for v in vals if v > 0]
    if allv:
        lo, hi = max(min(allv), 1e-3), max(allv)
        bins = np.logspace(math.log10(lo), math.log10(hi * 1.01 if hi > lo else lo * 10), 40)
        for m, vals in data.items():
            if vals:
                ax.hist([max(v, lo) for v in vals], bins=bins, alpha=0.5, label=m)
        ax.set_xscale("log")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no latency samples", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency per prediction (ms)")
    ax.set_ylabel("predictions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_robustness(summary: dict[str, Any], path: Path) -> None:
    """Mean (over horizon) PSNR change per perturbation and method."""
    plt = _plt()
    conds = list(summary["robustness"]["conditions"])
    methods = list(summary["methods"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric in zip(axes, ("psnr", "psnr_moving")):
        width = 0.8 / max(1, len(methods))
        for i, m in enumerate(methods):
            vals = []
            for c in conds:
                d = summary["robustness"]["conditions"][c]["delta"][m][metric]
                good = [v for v in d if v is not None]
                vals.append(sum(good) / len(good) if good else np.nan)
            ax.bar(np.arange(len(conds)) + i * width, vals, width, label=m)
        ax.set_xticks(np.arange(len(conds)) + 0.4 - width / 2)
        ax.set_xticklabels(conds, rotation=30, ha="right")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(f"Δ {METRIC_LABELS[metric]} vs clean")
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------ contact sheets
def contact_sheet(
    sample: Sample, methods: Sequence[str], horizon_s: Sequence[float], title: str = ""
) -> np.ndarray:
    """Actual frames, each method's predictions with their per-frame error maps, and the model's
    affordance maps with ground truth as contours (viz.comparison_sheet). RGB uint8."""
    preds = {m: sample.predictions[m] for m in methods if m in sample.predictions}
    notes = {}
    for m in preds:
        ps = [v for v in sample.psnr.get(m, []) if v is not None]
        if ps:
            notes[m] = f"{sum(ps) / len(ps):.1f} dB mean"
    aff = None
    if sample.affordance is not None and sample.affordance_channels:
        aff = (list(sample.affordance_channels), sample.affordance)
    truth = None
    if sample.gt_affordance is not None and sample.affordance_channels:
        truth = (list(sample.affordance_channels), sample.gt_affordance)
    return comparison_sheet(
        sample.observation, sample.targets, preds, horizon_s, notes, aff, truth, title=title
    )


def seconds_from(stamp_ns: int, origin_ns: int | None) -> float:
    return (stamp_ns - (origin_ns if origin_ns is not None else stamp_ns)) / NS_PER_S


_RAW_NS = re.compile(r"\b(\d{12,})\s*ns\b")


def human_text(text: str, origin_ns: int | None) -> str:
    """``text`` with raw nanosecond stamps ("1700000001900000000 ns") as seconds from ``origin_ns``."""
    return _RAW_NS.sub(lambda m: f"t = {seconds_from(int(m.group(1)), origin_ns):.3f} s", text)


# ----------------------------------------------------------------------------------- HTML
def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return html.escape(str(v))


def _metric_table(summary: dict[str, Any]) -> str:
    hs = summary["horizon_s"]
    out = ["<table><tr><th>method</th><th>metric</th><th>mean</th>"]
    out += [f"<th>+{h:g}s</th>" for h in hs]
    out.append("</tr>")
    for m, vals in summary["methods"].items():
        for metric in FRAME_METRICS:
            row = vals[metric]
            good = [v for v in row if v is not None]
            mean = sum(good) / len(good) if good else None
            nd = 4 if metric == "ssim" else 2
            out.append(
                f"<tr><td>{html.escape(m)}</td><td>{metric}</td><td><b>{_fmt(mean, nd)}</b></td>"
                + "".join(f"<td>{_fmt(v, nd)}</td>" for v in row)
                + "</tr>"
            )
    out.append("</table>")
    return "\n".join(out)


def _latency_table(summary: dict[str, Any]) -> str:
    rows = ["<table><tr><th>method</th><th>stage</th><th>p50 (ms)</th><th>p99 (ms)</th></tr>"]
    for m, det in summary.get("methods_detail", {}).items():
        for stage, v in det.get("latency_ms", {}).items():
            rows.append(
                f"<tr><td>{html.escape(m)}</td><td>{html.escape(stage)}</td>"
                f"<td>{_fmt(v['p50'], 3)}</td><td>{_fmt(v['p99'], 3)}</td></tr>"
            )
    rows.append("</table>")
    return "\n".join(rows)


def _camera_rates(summary: dict[str, Any]) -> str:
    rates = sorted({b["camera_rate_hz"] for b in summary["bags"] if b.get("camera_rate_hz")})
    if not rates:
        return "rate unknown"
    if len(rates) == 1:
        return f"{rates[0]:.3g} Hz"
    return f"{rates[0]:.3g}–{rates[-1]:.3g} Hz over the bags"


def _start_times(summary: dict[str, Any]) -> str:
    starts = [b["start_time"] for b in summary["bags"] if b.get("start_time")]
    if not starts:
        return "wall time unknown"
    if len(starts) == 1:
        return f"{starts[0]} UTC"
    return f"{min(starts)} UTC for the first of {len(starts)} bags; per bag below"


def write_report(
    out_dir: str | Path,
    summary: dict[str, Any],
    results: Sequence[BagResult],
    ref: ModelInfo,
    stats: StatsTable | None = None,
    max_sheets: int = 12,
) -> Path:
    """Write report.html and its images into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    img_dir = out / "report_files"
    img_dir.mkdir(parents=True, exist_ok=True)
    if stats is None:
        stats = StatsTable(ref.horizon)
        for r in results:
            stats.merge(r.stats)
    images: list[tuple[str, str]] = []
    plot_metrics(summary, img_dir / "metrics_vs_horizon.png")
    images.append(("Metrics vs horizon", "report_files/metrics_vs_horizon.png"))
    plot_latency(stats, ref.methods, img_dir / "latency_hist.png")
    images.append(("Latency per prediction", "report_files/latency_hist.png"))
    if summary.get("robustness"):
        plot_robustness(summary, img_dir / "robustness.png")
        images.append(("Robustness: change from the clean run", "report_files/robustness.png"))

    sheets: list[tuple[str, str]] = []
    for bi, r in enumerate(results):
        for si, s in enumerate(sorted(r.samples, key=lambda x: x.stamp_ns)):
            if len(sheets) >= max_sheets:
                break
            name = f"sheet_{bi:03d}_{si:02d}.png"
            when = f"t = {seconds_from(s.stamp_ns, r.first_stamp_ns):.2f} s"
            img = contact_sheet(s, ref.methods, summary["horizon_s"], f"{Path(r.bag).name}, {when}")
            if not cv2.imwrite(str(img_dir / name), img[..., ::-1]):
                raise OSError(f"cannot write {img_dir / name}")
            sheets.append((f"{Path(r.bag).name} at {when}", f"report_files/{name}"))
    origins = {r.bag: r.first_stamp_ns for r in results}

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>embodied_wm evaluation</title>",
        "<style>body{font-family:sans-serif;margin:20px;max-width:1400px}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 7px;"
        "text-align:right}th{background:#eee}.warn{color:#a00}img{max-width:100%;image-rendering:pixelated}</style></head><body>",
        "<h1>embodied_wm evaluation</h1>",
        f"<p>model <code>{_fmt(summary.get('model_id') or 'none')}</code>, backend "
        f"<code>{_fmt(summary.get('backend') or 'none')}</code>; {summary['frames']} frames from "
        f"{len(results)} bag(s); image {summary['image_size'][0]}x{summary['image_size'][1]}, "
        f"model dt {summary['dt_s']:g} s ({1 / summary['dt_s']:.3g} Hz), horizon "
        f"{len(summary['horizon_s'])} steps ({summary['horizon_s'][-1]:g} s); camera "
        f"{_camera_rates(summary)}. Times are seconds from each bag's first camera frame ("
        f"{_start_times(summary)}). Moving pixels: |target − observation| &gt; "
        f"{summary['settings']['moving_threshold']:g}/255 in any channel; PSNR capped at "
        f"{summary['settings']['psnr_cap_db']:g} dB.</p>",
    ]
    for st in summary.get("stopped", []):
        at = human_text(str(st["at"]), origins.get(st["bag"]))
        parts.append(f"<p class='warn'>Bag {_fmt(st['bag'])} stopped early: {_fmt(at)}</p>")
    parts.append("<h2>Frame prediction</h2>")
    parts.append(_metric_table(summary))
    if summary.get("affordance"):
        parts.append(
            "<h2>Affordance (model vs ground truth)</h2><table><tr><th>channel</th><th>AUROC</th>"
            "<th>AP</th></tr>"
        )
        for ch, v in summary["affordance"].items():
            parts.append(
                f"<tr><td>{html.escape(ch)}</td><td>{_fmt(v['auroc'], 4)}</td>"
                f"<td>{_fmt(v['ap'], 4)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Latency</h2>")
    parts.append(_latency_table(summary))
    for title, src in images:
        parts.append(f"<h3>{html.escape(title)}</h3><img src='{src}' alt='{html.escape(title)}'>")
    if summary.get("robustness"):
        parts.append(
            "<h2>Robustness</h2><table><tr><th>condition</th><th>description</th>"
            + "".join(f"<th>Δ PSNR {html.escape(m)}</th>" for m in summary["methods"])
            + "</tr>"
        )
        for cond, entry in summary["robustness"]["conditions"].items():
            cells = []
            for m in summary["methods"]:
                good = [v for v in entry["delta"][m]["psnr"] if v is not None]
                cells.append(_fmt(sum(good) / len(good) if good else None))
            parts.append(
                f"<tr><td>{html.escape(cond)}</td><td>{html.escape(entry['description'])}</td>"
                + "".join(f"<td>{c}</td>" for c in cells)
                + "</tr>"
            )
        parts.append("</table>")
    if sheets:
        parts.append(
            "<h2>Contact sheets</h2><p>Rows: the actual frames (the observation, then the frames "
            "that came at each horizon step; grey with a cross: no frame at that time), each "
            "method's predicted frames with its per-frame error |predicted − actual| below (mean over "
            "RGB, 0–96 of 255, inferno), and the model's affordance maps: the probability over the "
            "observation (turbo, opacity proportional to p) and alone, ground truth as white "
            "contours.</p>"
        )
        for i, (title, src) in enumerate(sheets):
            parts.append(
                f"<h3 id='sheet-{i}'>{html.escape(title)}</h3><img src='{src}' alt='{html.escape(title)}'>"
            )
    parts.append(
        "<h2>Bags</h2><table><tr><th>bag</th><th>camera</th><th>rate (Hz)</th><th>first frame "
        "(UTC)</th><th>frames</th><th>predictions</th><th>stopped</th><th>MCAP</th></tr>"
    )
    for b in summary["bags"]:
        stopped = human_text(str(b["stopped"]), origins.get(b["path"])) if b["stopped"] else None
        parts.append(
            f"<tr><td>{_fmt(b['path'])}</td><td>{_fmt(b['camera_topic'])}</td>"
            f"<td>{_fmt(b.get('camera_rate_hz'), 2)}</td><td>{_fmt(b.get('start_time'))}</td>"
            f"<td>{b['frames']}</td><td>{b['predictions']}</td><td>{_fmt(stopped)}</td>"
            f"<td>{_fmt(b.get('mcap'))}</td></tr>"
        )
    parts.append("</table>")
    parts.append(
        "<p>All numbers: <a href='summary.json'>summary.json</a>; per prediction: "
        "<a href='results.jsonl'>results.jsonl</a> (schema: docs/eval_schema.md).</p>"
    )
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
