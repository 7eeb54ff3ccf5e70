"""Render an evaluation MCAP at one moment as a Foxglove layout arranges it: a picture without Foxglove.

    python -m embodied_wm.eval.mcap_view OUT.mcap --layout config/foxglove_layout.json --at 2.6 \
        --out view.png

The file is read back with ``mcap`` and ``mcap-ros2-support`` (not with our writer's code). Each Image
panel of the layout shows its topic's latest message at or before ``--at`` (seconds from the file's first
message), each Plot panel its ``/topic.data[i]`` series over the whole file with a line at ``--at``.
Only Image and Plot panels and ``.data[i]`` plot paths are drawn (what config/foxglove_layout.json uses);
other panels are drawn as labelled boxes; titles come from ``foxglovePanelTitle``. This is not Foxglove's
rendering, only the same content and arrangement.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from embodied_wm.errors import EmbodiedWMError, InvalidDataError
from embodied_wm.observation import NS_PER_S
from embodied_wm.sensing.resize import resize_nearest
from embodied_wm.viz.overlay import put_text, text_size

_PATH = re.compile(r"^(?P<topic>/[^.\s]+)\.data\[(?P<index>\d+)\]$")
TITLE_H = 22


class McapContent:
    """Every message of an MCAP decoded: images as RGB arrays, Float32MultiArray data as float lists."""

    def __init__(self, path: str | Path) -> None:
        self.images: dict[str, list[tuple[int, np.ndarray]]] = {}
        self.arrays: dict[str, list[tuple[int, list[float]]]] = {}
        self.types: dict[str, str] = {}
        with open(path, "rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=True):
                name = schema.name if schema is not None else ""
                self.types[channel.topic] = name
                if name == "sensor_msgs/msg/Image":
                    rgb = image_to_rgb(decoded)
                    self.images.setdefault(channel.topic, []).append((message.log_time, rgb))
                elif name == "std_msgs/msg/Float32MultiArray":
                    vals = [float(v) for v in decoded.data]
                    self.arrays.setdefault(channel.topic, []).append((message.log_time, vals))
        times = [t for seq in self.images.values() for t, _ in seq]
        times += [t for seq in self.arrays.values() for t, _ in seq]
        if not times:
            raise InvalidDataError(f"{path}: no Image or Float32MultiArray messages")
        self.start_ns = min(times)
        self.end_ns = max(times)

    def image_at(self, topic: str, t_ns: int) -> np.ndarray | None:
        best = None
        for t, img in self.images.get(topic, []):
            if t > t_ns:
                break
            best = img
        return best

    def series(self, topic: str, index: int) -> tuple[np.ndarray, np.ndarray]:
        pts = [(t, v[index]) for t, v in self.arrays.get(topic, []) if index < len(v)]
        ts = np.asarray([(t - self.start_ns) / NS_PER_S for t, _ in pts], np.float64)
        return ts, np.asarray([v for _, v in pts], np.float64)


def image_to_rgb(msg: Any) -> np.ndarray:
    """rgb8 / bgr8 / mono8 sensor_msgs/Image (as decoded by mcap_ros2) -> H x W x 3 uint8."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    buf = np.frombuffer(bytes(msg.data), np.uint8)
    enc = str(msg.encoding)
    ch = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(enc)
    if ch is None:
        raise InvalidDataError(f"image encoding {enc!r} not drawn by mcap_view")
    rows = buf[: h * step].reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if enc == "mono8":
        return np.repeat(rows, 3, axis=2)
    return np.ascontiguousarray(rows[..., ::-1] if enc == "bgr8" else rows)


def _title(canvas: np.ndarray, x: int, y: int, w: int, text: str) -> None:
    canvas[y : y + TITLE_H, x : x + w] = (235, 235, 235)
    while text and text_size(text, 0.45)[0] > w - 8:
        text = text[:-2]
    put_text(canvas, text, (x + 5, y + 15), 0.45)


def _fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Largest nearest-neighbour scaling of ``img`` into w x h (aspect kept)."""
    s = min(w / img.shape[1], h / img.shape[0])
    if s >= 1:
        s = math.floor(s)  # integer factors keep pixels square and crisp
    nh, nw = max(1, int(img.shape[0] * s)), max(1, int(img.shape[1] * s))
    return resize_nearest(img, nh, nw)


def _plot(cfg: dict[str, Any], content: McapContent, at_s: float, w: int, h: int) -> np.ndarray:
    import matplotlib  # lazy: matplotlib takes ~1 s to import and only Plot panels need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi = 100
    fig, ax = plt.subplots(figsize=(w / dpi, h / dpi), dpi=dpi)
    for p in cfg.get("paths", []):
        m = _PATH.match(str(p.get("value", "")))
        if not m or not p.get("enabled", True):
            continue
        ts, vs = content.series(m["topic"], int(m["index"]))
        ax.plot(ts, vs, label=p.get("label") or p["value"], lw=1.4)
    ax.axvline(at_s, color="k", lw=1, ls="--")
    ax.set_xlabel("time from the first message (s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]
    plt.close(fig)
    return np.ascontiguousarray(rgba[..., :3])


def _panel(
    canvas: np.ndarray, pid: str, cfg: dict[str, Any], content: McapContent, at_ns: int, rect: tuple
) -> None:
    x, y, w, h = rect
    kind = pid.split("!", 1)[0]
    body_y, body_h = y + TITLE_H, h - TITLE_H
    if kind == "Image":
        topic = str(cfg.get("imageMode", {}).get("imageTopic", ""))
        _title(canvas, x, y, w, cfg.get("foxglovePanelTitle") or topic)
        img = content.image_at(topic, at_ns)
        if img is None:
            put_text(canvas, f"no message on {topic} yet", (x + 6, body_y + 20), 0.42)
            return
        fit = _fit(img, w - 4, body_h - 4)
        ox, oy = x + (w - fit.shape[1]) // 2, body_y + (body_h - fit.shape[0]) // 2
        canvas[oy : oy + fit.shape[0], ox : ox + fit.shape[1]] = fit
    elif kind == "Plot":
        _title(canvas, x, y, w, cfg.get("foxglovePanelTitle") or "Plot")
        img = _plot(cfg, content, (at_ns - content.start_ns) / NS_PER_S, w - 4, body_h - 4)
        canvas[body_y + 2 : body_y + 2 + img.shape[0], x + 2 : x + 2 + img.shape[1]] = img
    else:
        _title(canvas, x, y, w, f"{pid} (not drawn)")


def _walk(
    node: Any, rect: tuple[int, int, int, int], out: list[tuple[str, tuple[int, int, int, int]]]
) -> None:
    if isinstance(node, str):
        out.append((node, rect))
        return
    x, y, w, h = rect
    share = float(node.get("splitPercentage", 50)) / 100.0
    if node.get("direction") == "row":
        w1 = round(w * share)
        _walk(node["first"], (x, y, w1, h), out)
        _walk(node["second"], (x + w1, y, w - w1, h), out)
    else:
        h1 = round(h * share)
        _walk(node["first"], (x, y, w, h1), out)
        _walk(node["second"], (x, y + h1, w, h - h1), out)


def render(
    mcap: str | Path, layout: str | Path, at_s: float, size: tuple[int, int] = (1600, 1000)
) -> np.ndarray:
    """The layout's panels with the MCAP's content at ``at_s`` seconds from its first message. RGB."""
    content = McapContent(mcap)
    doc = json.loads(Path(layout).read_text())
    at_ns = content.start_ns + round(at_s * NS_PER_S)
    w, h = size
    canvas = np.full((h + 26, w, 3), 255, np.uint8)
    t_total = (content.end_ns - content.start_ns) / NS_PER_S
    put_text(canvas, f"{Path(mcap).name} at t = {at_s:.2f} s of {t_total:.2f} s", (6, 18), 0.5)
    panels: list[tuple[str, tuple[int, int, int, int]]] = []
    _walk(doc["layout"], (0, 26, w, h), panels)
    for pid, (x, y, pw, ph) in panels:
        _panel(canvas, pid, doc["configById"].get(pid, {}), content, at_ns, (x + 2, y + 2, pw - 4, ph - 4))
    return canvas


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m embodied_wm.eval.mcap_view", description=__doc__.splitlines()[0]
    )
    p.add_argument("mcap", help="an MCAP written by embodied-wm eval --mcap or make demo")
    p.add_argument("--layout", default="config/foxglove_layout.json", help="Foxglove layout JSON")
    p.add_argument("--at", type=float, default=0.0, help="seconds from the file's first message")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--size", type=int, nargs=2, default=[1600, 1000], metavar=("W", "H"))
    args = p.parse_args(argv)
    try:
        img = render(args.mcap, args.layout, args.at, (args.size[0], args.size[1]))
    except (OSError, KeyError, ValueError, EmbodiedWMError) as exc:
        print(f"mcap_view: error: {exc}", file=sys.stderr)
        return 1
    if not cv2.imwrite(args.out, img[..., ::-1]):
        print(f"mcap_view: error: cannot write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
