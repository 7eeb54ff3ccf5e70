"""report.html with PNG plots and contact sheets for an evaluation run.

Everything the page references is written next to it (relative paths), so the output directory can be
copied or archived as a whole. Plots use matplotlib's Agg backend (no display needed); contact sheets are
composed directly in numpy and written with OpenCV.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from embodied_wm.eval.replay import BagResult, ModelInfo, Sample
from embodied_wm.eval.scoring import FRAME_METRICS, StatsTable

METRIC_LABELS = {"psnr": "PSNR (dB)", "psnr_moving": "PSNR on moving pixels (dB)", "ssim": "SSIM"}
#: Contact sheet cell scale (64 px frames are too small to judge by eye).
SHEET_SCALE = 2
_GAP = 4
_LABEL_W = 110


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
def _cell(img: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if img is None:
        out = np.full((h, w, 3), 40, np.uint8)
        cv2.line(out, (0, 0), (w - 1, h - 1), (90, 90, 90), 1)
        cv2.line(out, (w - 1, 0), (0, h - 1), (90, 90, 90), 1)
        return out
    return np.asarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST))


def _label(text: str, height: int) -> np.ndarray:
    out = np.full((height, _LABEL_W, 3), 255, np.uint8)
    y = 14
    for line in text.split("\n"):
        cv2.putText(out, line, (3, y), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        y += 14
    return out


def overlay(base: np.ndarray, heat: np.ndarray, colour: tuple[int, int, int] = (255, 40, 0)) -> np.ndarray:
    """Blend a [0, 1] map over an RGB frame; the weight grows with the value so the scene stays visible."""
    a = np.clip(heat.astype(np.float32), 0.0, 1.0)[..., None] * 0.7
    col = np.asarray(colour, np.float32)[None, None, :]
    return np.asarray((base.astype(np.float32) * (1 - a) + col * a).clip(0, 255).astype(np.uint8))


def contact_sheet(sample: Sample, methods: Sequence[str], horizon_s: Sequence[float]) -> np.ndarray:
    """Rows: actual frames (observation then targets), each method's predictions, then per affordance
    channel the model's map and the ground truth over the observation frame. RGB uint8."""
    first = next(iter(sample.predictions.values()))
    h, w = first.shape[1] * SHEET_SCALE, first.shape[2] * SHEET_SCALE
    k = first.shape[0]
    size = (h, w)
    rows: list[np.ndarray] = []

    def row(label: str, cells: list[np.ndarray | None]) -> np.ndarray:
        parts = [_label(label, h)]
        for c in cells:
            parts.append(np.full((h, _GAP, 3), 255, np.uint8))
            parts.append(_cell(c, size))
        return np.concatenate(parts, axis=1)

    header = np.full((18, _LABEL_W + (k + 1) * (w + _GAP), 3), 255, np.uint8)
    cv2.putText(header, "t", (_LABEL_W + _GAP + w // 2 - 3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    for i in range(k):
        x = _LABEL_W + (i + 1) * (w + _GAP) + _GAP + 4
        cv2.putText(header, f"+{horizon_s[i]:.2g}s", (x, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    rows.append(header)
    targets = list(sample.targets) + [None] * (k - len(sample.targets))
    rows.append(row("actual", [sample.observation, *targets[:k]]))
    for m in methods:
        if m not in sample.predictions:
            continue
        ps = [v for v in sample.psnr.get(m, []) if v is not None]
        mean = f"\n{sum(ps) / len(ps):.1f} dB" if ps else ""
        rows.append(row(f"{m}{mean}", [sample.observation, *list(sample.predictions[m])]))
    if sample.affordance is not None and sample.observation is not None:
        base = sample.observation
        for ci, ch in enumerate(sample.affordance_channels):
            cells: list[np.ndarray | None] = [overlay(base, sample.affordance[ci])]
            if sample.gt_affordance is not None:
                cells.append(overlay(base, sample.gt_affordance[ci].astype(np.float32), (0, 200, 255)))
            rows.append(row(f"{ch}\npred | truth", cells))
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, _GAP), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)


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
        for s in r.samples:
            if len(sheets) >= max_sheets:
                break
            name = f"sheet_{bi:03d}_{s.stamp_ns}.png"
            img = contact_sheet(s, ref.methods, summary["horizon_s"])
            if not cv2.imwrite(str(img_dir / name), img[..., ::-1]):
                raise OSError(f"cannot write {img_dir / name}")
            sheets.append((f"{Path(r.bag).name} @ {s.stamp_ns} ns", f"report_files/{name}"))

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>embodied_wm evaluation</title>",
        "<style>body{font-family:sans-serif;margin:20px;max-width:1400px}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 7px;"
        "text-align:right}th{background:#eee}.warn{color:#a00}img{max-width:100%}</style></head><body>",
        "<h1>embodied_wm evaluation</h1>",
        f"<p>model <code>{_fmt(summary.get('model_id') or 'none')}</code>, backend "
        f"<code>{_fmt(summary.get('backend') or 'none')}</code>; {summary['frames']} frames from "
        f"{len(results)} bag(s); image {summary['image_size'][0]}x{summary['image_size'][1]}, "
        f"dt {summary['dt_s']:g} s. Moving pixels: |target − observation| &gt; "
        f"{summary['settings']['moving_threshold']:g}/255 in any channel; PSNR capped at "
        f"{summary['settings']['psnr_cap_db']:g} dB.</p>",
    ]
    for st in summary.get("stopped", []):
        parts.append(f"<p class='warn'>Bag {_fmt(st['bag'])} stopped early: {_fmt(st['at'])}</p>")
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
            "<h2>Contact sheets</h2><p>Rows: actual frames (observation, then the frames that "
            "came), each method's prediction, and affordance maps (prediction in red, ground truth "
            "in blue) over the observation.</p>"
        )
        for title, src in sheets:
            parts.append(f"<h3>{html.escape(title)}</h3><img src='{src}' alt='{html.escape(title)}'>")
    parts.append(
        "<h2>Bags</h2><table><tr><th>bag</th><th>camera</th><th>frames</th><th>predictions</th>"
        "<th>stopped</th></tr>"
    )
    for b in summary["bags"]:
        parts.append(
            f"<tr><td>{_fmt(b['path'])}</td><td>{_fmt(b['camera_topic'])}</td><td>{b['frames']}</td>"
            f"<td>{b['predictions']}</td><td>{_fmt(b['stopped'])}</td></tr>"
        )
    parts.append("</table>")
    parts.append("<h2>summary.json</h2><pre>" + html.escape(json.dumps(summary, indent=1)[:20000]) + "</pre>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
