"""`python -m embodied_wm.tools.demo --out DIR`: the whole live path on one simulated episode, with a report.

1. record a short episode with the simulator (reused when DIR/bag already holds one with the same
   settings);
2. start perception_node as its own process over DDS (``autostart``, ``use_sim_time``);
3. replay the bag with bag_player (log-time order, /clock) while this process collects
   ``~/predicted_frames``, ``~/affordance`` and ``/diagnostics``;
4. write DIR/predictions.npz, contact sheets (actual future frames from the bag beside the predicted and
   copy-last frames, per-frame error maps, affordance overlays with ground truth as contours; the
   renderer of viz/), summary.json (per-horizon PSNR against copy-last, node latency per stage),
   index.html and DIR/predictions.mcap for Foxglove (eval/mcap_export.py, config/foxglove_layout.json).

Everything runs in data time: predictions are matched to the bag's future frames by stamp. Report times
are seconds from the bag's first camera frame.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor

from embodied_wm.errors import EmbodiedWMError
from embodied_wm.eval import metrics
from embodied_wm.eval.mcap_export import export_predictions
from embodied_wm.eval.scoring import PendingPrediction
from embodied_wm.io.bag import iter_bag_messages
from embodied_wm.msg import AffordanceMap, PredictedFrames
from embodied_wm.ros.conversions import (
    affordance_msg_to_numpy,
    frames_msg_to_numpy,
    time_to_ns,
)
from embodied_wm.ros.qos import diagnostics_qos, make_qos
from embodied_wm.sensing.image import image_to_rgb, resize_rgb
from embodied_wm.tools.harness import Processes, node_command
from embodied_wm.viz import comparison_sheet

NS_PER_S = 1_000_000_000
CAMERA_TOPIC = "/camera/image_raw"
GT_AFFORDANCE_TOPIC = "/ground_truth/affordance"
NODE_NAME = "perception_node"
#: Contact sheets and overlays written (evenly spaced over the predictions).
N_SHEETS = 4


class DemoError(EmbodiedWMError, RuntimeError):
    """The demo could not produce its report (node did not start, no predictions, player failed)."""


def log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


# ------------------------------------------------------------------------------------- steps
def record_episode(out: Path, frames: int, seed: int, res: int) -> Path:
    """The bag directory; recorded with the simulator unless one with the same settings exists."""
    bag_root = out / "bag"
    bag = bag_root / "episode_00000"
    settings = {"frames": frames, "seed": seed, "res": res}
    stamp = bag_root / "demo_settings.json"
    if (bag / "metadata.yaml").is_file() and stamp.is_file() and json.loads(stamp.read_text()) == settings:
        log(f"reusing recorded episode {bag}")
        return bag
    log(f"recording a {frames}-frame episode at {res}x{res} (seed {seed}) ...")
    if bag_root.exists():
        shutil.rmtree(bag_root)
    cmd = [
        sys.executable,
        "-m",
        "embodied_wm.sim.cli",
        "record",
        "--episodes",
        "1",
        "--frames",
        str(frames),
        "--seed",
        str(seed),
        "--res",
        str(res),
        "--out",
        str(bag_root),
        "--quiet",
    ]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    stamp.write_text(json.dumps(settings))
    log(f"recorded {bag} in {time.monotonic() - t0:.1f} s")
    return bag


@dataclass
class Collected:
    frames: dict[int, Any] = field(default_factory=dict)  # stamp -> PredictedFrames
    affordance: dict[int, Any] = field(default_factory=dict)  # stamp -> AffordanceMap
    diagnostics: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Collector:
    """An rclpy node in this process, spun in a thread, keeping every prediction by stamp."""

    def __init__(self, node_name: str) -> None:
        rclpy.init(args=[])
        self.node = rclpy.create_node("demo_collector")
        self.data = Collected()
        self._t2ns = time_to_ns
        qos = make_qos("reliable", 100)
        self.frames_topic = f"/{node_name}/predicted_frames"
        self.node.create_subscription(PredictedFrames, self.frames_topic, self._on_frames, qos)
        self.node.create_subscription(AffordanceMap, f"/{node_name}/affordance", self._on_aff, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, diagnostics_qos())
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def _on_frames(self, msg: Any) -> None:
        with self.data.lock:
            self.data.frames[self._t2ns(msg.header.stamp)] = msg

    def _on_aff(self, msg: Any) -> None:
        with self.data.lock:
            self.data.affordance[self._t2ns(msg.header.stamp)] = msg

    def _on_diag(self, msg: Any) -> None:
        if any(st.name.startswith(NODE_NAME) for st in msg.status):
            with self.data.lock:
                self.data.diagnostics = msg

    def publishers_ready(self) -> bool:
        return self.node.count_publishers(self.frames_topic) > 0

    def count(self) -> int:
        with self.data.lock:
            return len(self.data.frames)

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown()


def start_node(args: argparse.Namespace, env: dict[str, str], processes: Processes) -> subprocess.Popen:
    params = {
        "autostart": "true",
        "backend": args.backend,
        "use_sim_time": "true",
        "diagnostics.period_s": "0.5",
    }
    if args.model:  # an empty "-p model:=" is a parse error for rcl; the node's default is already ""
        params["model"] = str(Path(args.model).resolve())
    # Reliable inputs: the demo wants every frame predicted (best effort may thin a loopback stream).
    for inp in ("camera", "audio", "tactile", "joint_states", "action"):
        params[f"qos.{inp}.reliability"] = "reliable"
        params[f"qos.{inp}.depth"] = "20"
    return processes.spawn("perception_node", node_command("embodied_wm.ros.perception_node", params), env)


# ------------------------------------------------------------------------------------ report
def load_bag_frames(bag: Path) -> tuple[dict[int, np.ndarray], dict[int, tuple[list[str], np.ndarray]]]:
    """Camera frames by header stamp, and ground-truth affordance maps by stamp."""

    frames: dict[int, np.ndarray] = {}
    gt: dict[int, tuple[list[str], np.ndarray]] = {}
    for m in iter_bag_messages(bag, [CAMERA_TOPIC, GT_AFFORDANCE_TOPIC]):
        stamp = time_to_ns(m.msg.header.stamp)
        if m.topic == CAMERA_TOPIC:
            frames[stamp] = image_to_rgb(m.msg)
        else:
            gt[stamp] = affordance_msg_to_numpy(m.msg)
    return frames, gt


def _png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"cannot write {path}")


def camera_rate_hz(stamps: Sequence[int]) -> float | None:
    """Mean frame rate of the camera stamps (Hz)."""
    st = sorted(stamps)
    if len(st) < 2 or st[-1] <= st[0]:
        return None
    return (len(st) - 1) * NS_PER_S / (st[-1] - st[0])


def iso_utc(stamp_ns: int) -> str:
    t = datetime.datetime.fromtimestamp(stamp_ns / NS_PER_S, tz=datetime.timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def evaluate(
    collected: Collected, bag_frames: dict[int, np.ndarray], gt_aff: dict[int, tuple[list[str], np.ndarray]]
) -> dict[str, Any]:
    """Per-horizon PSNR (whole frame and moving pixels) of the predictions and of copy-last, matched by
    stamp to the bag's frames; affordance AUROC per channel where ground truth has the channel."""

    stamps = sorted(collected.frames)
    per_k: dict[int, dict[str, list[float | None]]] = {}
    auroc: dict[str, list[float]] = {}
    for t in stamps:
        fstamps, pred = frames_msg_to_numpy(collected.frames[t])
        h, w = pred.shape[1:3]
        if t not in bag_frames:
            continue
        cur = resize_rgb(bag_frames[t], (h, w))
        ks = [k for k, ts in enumerate(fstamps) if int(ts) in bag_frames]
        if ks:
            targets = np.stack([resize_rgb(bag_frames[int(fstamps[k])], (h, w)) for k in ks])
            model = metrics.score_frames(pred[ks], targets, cur, with_ssim=False)
            copy = metrics.score_frames(np.broadcast_to(cur, targets.shape), targets, cur, with_ssim=False)
        for j, k in enumerate(ks):
            d = per_k.setdefault(
                k + 1, {"model": [], "copy_last": [], "model_moving": [], "copy_last_moving": []}
            )
            d["model"].append(model.psnr[j])
            d["copy_last"].append(copy.psnr[j])
            d["model_moving"].append(model.psnr_moving[j])
            d["copy_last_moving"].append(copy.psnr_moving[j])
        if t in collected.affordance and t in gt_aff:
            ch, aff = affordance_msg_to_numpy(collected.affordance[t])
            gch, gmap = gt_aff[t]
            for c, name in enumerate(ch):
                if name in gch and aff.shape[1:] == gmap.shape[1:]:
                    v = metrics.auroc(aff[c], gmap[gch.index(name)] > 0.5)
                    if v is not None:
                        auroc.setdefault(name, []).append(v)
    horizons = []
    for k in sorted(per_k):
        d = per_k[k]
        horizons.append(
            {
                "k": k,
                "n": len(d["model"]),
                "psnr_model": _mean(d["model"]),
                "psnr_copy_last": _mean(d["copy_last"]),
                "psnr_moving_model": _mean(d["model_moving"]),
                "psnr_moving_copy_last": _mean(d["copy_last_moving"]),
            }
        )
    return {"per_horizon": horizons, "affordance_auroc": {k: float(np.mean(v)) for k, v in auroc.items()}}


def latency_from_diagnostics(arr: Any) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """(stage -> {p50, p99} ms, all other key/values) from the node's last DiagnosticArray."""
    stages: dict[str, dict[str, float]] = {}
    other: dict[str, str] = {}
    if arr is None:
        return stages, other
    for st in arr.status:
        for kv in st.values:
            if kv.key.startswith("latency_ms/"):
                stage, _, q = kv.key[len("latency_ms/") :].rpartition("/")
                stages.setdefault(stage, {})[q] = float(kv.value)
            else:
                other[f"{st.name.split(': ')[-1]}/{kv.key}"] = kv.value
    return stages, other


def write_mcap(
    out: Path,
    collected: Collected,
    bag_frames: dict[int, np.ndarray],
    gt_aff: dict[int, tuple[list[str], np.ndarray]],
    bag: Path,
) -> Path:
    """DIR/predictions.mcap: the bag's camera, the node's predictions and copy-last, scored like eval."""
    preds = []
    for t, msg in collected.frames.items():
        fst, frames = frames_msg_to_numpy(msg)
        ch: list[str] = []
        aff = None
        if t in collected.affordance:
            ch, aff = affordance_msg_to_numpy(collected.affordance[t])
        stamps = np.asarray(fst, np.int64)
        preds.append(
            PendingPrediction("model", t, stamps, frames, affordance=aff, affordance_channels=tuple(ch))
        )
        if t in bag_frames:
            cur = resize_rgb(bag_frames[t], frames.shape[1:3])
            copy_last = np.repeat(cur[None], len(frames), axis=0)
            preds.append(PendingPrediction("copy_last", t, stamps, copy_last))
    path = out / "predictions.mcap"
    meta = {
        "model_id": next(iter(collected.frames.values())).model_id,
        "bag": str(bag),
        "source": "make demo",
    }
    n = export_predictions(path, bag_frames, preds, gt_aff, "model", meta)
    log(f"wrote {path} ({n} messages; open it in Foxglove with config/foxglove_layout.json)")
    return path


def write_report(
    out: Path, collected: Collected, bag: Path, meta: dict[str, Any], write_mcap_file: bool = True
) -> dict[str, Any]:
    bag_frames, gt_aff = load_bag_frames(bag)
    stamps = sorted(collected.frames)
    if not stamps:
        raise DemoError("no predictions were received; see logs/perception_node.log")
    # --- predictions.npz
    first_stamps, first = frames_msg_to_numpy(collected.frames[stamps[0]])
    all_frames = np.stack([frames_msg_to_numpy(collected.frames[t])[1] for t in stamps])
    affs: list[np.ndarray] = []
    channels: list[str] = []
    for t in stamps:
        if t in collected.affordance:
            channels, a = affordance_msg_to_numpy(collected.affordance[t])
            affs.append(a)
        else:
            affs.append(np.zeros((0, *first.shape[1:3]), np.float32))
    same = len({a.shape for a in affs}) == 1
    dt_ns = int(first_stamps[0] - stamps[0]) if len(first_stamps) else 0
    np.savez_compressed(
        out / "predictions.npz",
        stamps_ns=np.asarray(stamps, np.int64),
        frames=all_frames,
        affordance=np.stack(affs) if same else np.zeros(0, np.float32),
        affordance_channels=np.asarray(channels, dtype=str),
        dt_ns=np.int64(dt_ns),
        model_id=np.asarray(collected.frames[stamps[0]].model_id),
    )
    # --- metrics
    scores = evaluate(collected, bag_frames, gt_aff)
    stages, diag_values = latency_from_diagnostics(collected.diagnostics)
    # --- images
    sheets_dir = out / "sheets"
    sheets_dir.mkdir(exist_ok=True)
    picks = sorted({stamps[int(i)] for i in np.linspace(0, len(stamps) - 1, min(N_SHEETS, len(stamps)))})
    origin = min(bag_frames) if bag_frames else stamps[0]
    dt_s = dt_ns / NS_PER_S
    sheets = []
    for i, t in enumerate(picks):
        fst, pred = frames_msg_to_numpy(collected.frames[t])
        h, w = pred.shape[1:3]
        cur = resize_rgb(bag_frames[t], (h, w)) if t in bag_frames else pred[0]
        actual = [resize_rgb(bag_frames[int(s)], (h, w)) if int(s) in bag_frames else None for s in fst]
        copy_last = np.repeat(cur[None], len(pred), axis=0)
        notes = {}
        for label, frames in (("predicted", pred), ("copy_last", copy_last)):
            ps = [metrics.psnr(f, a) for f, a in zip(frames, actual) if a is not None]
            if ps:
                notes[label] = f"{float(np.mean(ps)):.1f} dB mean"
        aff = affordance_msg_to_numpy(collected.affordance[t]) if t in collected.affordance else None
        t_s = (t - origin) / NS_PER_S
        img = comparison_sheet(
            cur,
            actual,
            {"predicted": pred, "copy_last": copy_last},
            [(k + 1) * dt_s for k in range(len(pred))],
            notes,
            aff,
            gt_aff.get(t),
            title=f"t = {t_s:.2f} s",
        )
        name = f"sheet_{i:02d}.png"
        _png(sheets_dir / name, img)
        sheets.append({"t_s": round(t_s, 6), "sheet": f"sheets/{name}"})
    mcap = write_mcap(out, collected, bag_frames, gt_aff, bag) if write_mcap_file else None
    rate = camera_rate_hz(list(bag_frames))
    summary = {
        **meta,
        "predictions": len(stamps),
        "camera_frames_in_bag": len(bag_frames),
        "horizon": int(first.shape[0]),
        "dt_s": dt_s,
        "camera_rate_hz": None if rate is None else round(rate, 3),
        "start_time": iso_utc(origin),
        "mcap": None if mcap is None else str(mcap),
        "model_id": collected.frames[stamps[0]].model_id,
        "affordance_channels": channels,
        **scores,
        "node_latency_ms": stages,
        "node_diagnostics": diag_values,
        "sheets": sheets,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "index.html").write_text(render_html(summary))
    return summary


def _fmt(v: Any) -> str:
    return "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else html.escape(str(v)))


def skipped_html(s: dict[str, Any]) -> str:
    """Why the node did not run a faster / learned backend (e.g. models/tiny missing -> baseline)."""
    items = [
        f"<li>{html.escape(k.rsplit('/', 1)[-1])}: {html.escape(v)}</li>"
        for k, v in s.get("node_diagnostics", {}).items()
        if k.startswith("inference/skipped/")
    ]
    return f"<p>Backends not used:</p><ul>{''.join(items)}</ul>" if items else ""


def render_html(s: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{h['k']}</td><td>{h['n']}</td><td>{_fmt(h['psnr_model'])}</td><td>{_fmt(h['psnr_copy_last'])}</td>"
        f"<td>{_fmt(h['psnr_moving_model'])}</td><td>{_fmt(h['psnr_moving_copy_last'])}</td></tr>"
        for h in s["per_horizon"]
    )
    lat = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(v.get('p50'))}</td><td>{_fmt(v.get('p99'))}</td></tr>"
        for k, v in sorted(s["node_latency_ms"].items())
    )
    auroc = "".join(f"<li>{html.escape(k)}: {v:.3f}</li>" for k, v in s["affordance_auroc"].items()) or (
        "<li>no affordance output matched ground truth (baseline backends predict none)</li>"
    )
    imgs = (
        "<p>Rows: the actual frames from the bag (now, then the frames that came at each horizon step;"
        " grey with a cross: none at that time) · the node's predicted frames and, below them, the"
        " per-frame error |predicted − actual| (mean over RGB, 0–96 of 255) · the same for copy-last ·"
        " each affordance channel over the current frame (turbo, opacity proportional to p) and alone,"
        " simulator ground truth as white contours.</p>"
    )
    for i, e in enumerate(s["sheets"]):
        when = f"t = {e['t_s']:.2f} s"
        imgs += f"<h3 id='sheet-{i}'>{when}</h3><img src='{e['sheet']}' alt='contact sheet at {when}'>"
    rate = s.get("camera_rate_hz")
    mcap = s.get("mcap")
    mcap_html = (
        f"<p>Foxglove: open <code>{_fmt(mcap)}</code> with the layout "
        "<code>config/foxglove_layout.json</code> and scrub the timeline: the camera beside each "
        "predicted horizon step.</p>"
        if mcap
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>embodied_wm demo</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
img{{max-width:100%;image-rendering:pixelated}}</style></head>
<body><h1>embodied_wm demo</h1>
<p>backend <b>{_fmt(s["backend"])}</b> · model <b>{_fmt(s["model_id"])}</b> · {s["predictions"]} predictions
of {s["camera_frames_in_bag"]} camera frames · horizon K = {s["horizon"]} · model dt {s["dt_s"]:.3g} s ·
camera {"rate unknown" if rate is None else f"{rate:.3g} Hz"} · bag {_fmt(s["bag"])}, first frame
{_fmt(s["start_time"])} UTC (times below are seconds from it) · demo took {s["wall_s"]:.1f} s</p>
{skipped_html(s)}{mcap_html}
<h2>PSNR per horizon step (dB; higher is better)</h2>
<table><tr><th>k</th><th>n</th><th>model</th><th>copy-last</th><th>model, moving px</th>
<th>copy-last, moving px</th></tr>{rows}</table>
<h2>Affordance AUROC vs simulator ground truth</h2><ul>{auroc}</ul>
<h2>perception_node latency per stage (ms, from /diagnostics)</h2>
<table><tr><th>stage</th><th>p50</th><th>p99</th></tr>{lat}</table>
<h2>Predicted vs actual</h2>{imgs}
</body></html>
"""


# -------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m embodied_wm.tools.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/demo", help="report directory")
    p.add_argument("--frames", type=int, default=60, help="camera frames to simulate (10 Hz)")
    p.add_argument("--backend", default="auto", help="auto|tensorrt|onnxruntime|pytorch|copy_last|linear")
    p.add_argument("--model", default="", help="model directory ('' = the package's models/tiny)")
    p.add_argument("--res", type=int, default=64, help="simulated camera resolution")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    p.add_argument("--bag", default="", help="replay this bag instead of recording one")
    p.add_argument("--node-timeout", type=float, default=90.0, help="seconds to wait for perception_node")
    p.add_argument("--no-mcap", action="store_true", help="skip DIR/predictions.mcap (Foxglove)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t_start = time.monotonic()
    out = Path(args.out).resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # A private DDS domain unless the user chose one: the demo must not cross-talk with other runs.
    env.setdefault("ROS_DOMAIN_ID", str(random.Random().randint(1, 101)))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["PYTHONUNBUFFERED"] = "1"
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    log(f"ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, output {out}")

    bag = Path(args.bag).resolve() if args.bag else record_episode(out, args.frames, args.seed, args.res)
    collector = Collector(NODE_NAME)
    processes = Processes(logs)
    node = start_node(args, env, processes)
    player: subprocess.Popen | None = None
    try:
        log(f"starting perception_node (backend {args.backend}) ...")
        deadline = time.monotonic() + args.node_timeout
        while not collector.publishers_ready():
            if node.poll() is not None:
                raise DemoError(
                    f"perception_node exited with {node.returncode}; see {logs}/perception_node.log"
                )
            if time.monotonic() > deadline:
                raise DemoError(f"perception_node not up after {args.node_timeout} s")
            time.sleep(0.1)
        log(
            f"perception_node is up ({time.monotonic() - t_start:.1f} s); "
            f"replaying {bag.name} with /clock ..."
        )
        player = processes.spawn(
            "bag_player",
            [
                sys.executable,
                "-m",
                "embodied_wm.tools.bag_player",
                str(bag),
                "--clock",
                "--rate",
                str(args.rate),
                "--wait-for",
                CAMERA_TOPIC,
                "--wait-timeout",
                "60",
                "--delay",
                "0.5",
            ],
            env,
        )
        last_report = time.monotonic()
        while player.poll() is None:
            time.sleep(0.2)
            if time.monotonic() - last_report > 2.0:
                log(f"  {collector.count()} predictions so far")
                last_report = time.monotonic()
        if player.returncode != 0:
            raise DemoError(f"bag_player failed ({player.returncode}); see {logs}/bag_player.log")
        # Let the last predictions (and one more diagnostics message) arrive.
        settle = time.monotonic()
        n = collector.count()
        while time.monotonic() - settle < 1.5:
            time.sleep(0.25)
            if collector.count() != n:
                n, settle = collector.count(), time.monotonic()
        log(f"replay done: {collector.count()} predictions received")
    finally:
        processes.stop(first=("bag_player", "perception_node"))
        collector.close()
    meta = {"backend": args.backend, "bag": str(bag), "wall_s": time.monotonic() - t_start}
    summary = write_report(out, collector.data, bag, meta, write_mcap_file=not args.no_mcap)
    for h in summary["per_horizon"]:
        log(
            f"  k={h['k']}: PSNR model {_fmt(h['psnr_model'])} dB vs copy-last {_fmt(h['psnr_copy_last'])} dB"
            f" (moving pixels {_fmt(h['psnr_moving_model'])} vs {_fmt(h['psnr_moving_copy_last'])})"
        )
    skipped = {k: v for k, v in summary["node_diagnostics"].items() if k.startswith("inference/skipped/")}
    for k, v in skipped.items():
        log(f"  note: backend {k.rsplit('/', 1)[-1]} not used: {v}")
    lat = summary["node_latency_ms"]
    for stage in ("predict", "receive_to_publish"):
        if stage in lat:
            log(
                f"  node {stage}: p50 {lat[stage].get('p50', 0):.2f} ms, "
                f"p99 {lat[stage].get('p99', 0):.2f} ms"
            )
    log(f"done in {time.monotonic() - t_start:.1f} s; report: {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
