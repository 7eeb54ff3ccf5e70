"""Offline replay evaluation: bags -> the node's own Pipeline -> model and baselines -> metrics.

For each bag, messages are read in log-time order and fed to one ``Pipeline`` (the same decode and
Aligner the live perception node runs). Every Observation it emits is given, unchanged (or perturbed,
for the robustness conditions), to one Pipeline per method, whose ``predict`` runs that method's
backend, so the model and the baselines see identical observations and report latency the same way.
The Observations' camera images are also the targets: the frame actually seen at t + k·dt (see
eval/scoring.py for the matching rule).

Bags run in parallel worker processes (``workers``); each writes its result lines to a part file and
returns its accumulated statistics, which the caller merges in bag order.

Length (~600 lines): options, per-bag replay, worker processes and the summary of one evaluation.
"""

from __future__ import annotations

import datetime
import json
import logging
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from embodied_wm.errors import EmbodiedWMError
from embodied_wm.eval.ablation import AFTER_CONTACT, AFTER_CONTACT_S, CONTACT_THRESHOLD, build_ablation
from embodied_wm.eval.mcap_export import PredictionExport
from embodied_wm.eval.metrics import MOVING_THRESHOLD, PSNR_CAP_DB
from embodied_wm.eval.robustness import (
    ABLATION_CONDITIONS,
    ABLATION_MASKS,
    COMPOSITE_SEP,
    PERTURBATIONS,
    ablation_condition,
    deltas,
    describe,
    perturb,
)
from embodied_wm.eval.scoring import HorizonScorer, PendingPrediction, ScoredPrediction, StatsTable
from embodied_wm.io.bag import (
    GROUND_TRUTH_PREFIX,
    BagError,
    BagInfo,
    BagReadReport,
    bag_info,
    choose_camera_topic,
)
from embodied_wm.io.stamps import to_ns
from embodied_wm.observation import NS_PER_S, Observation, Prediction
from embodied_wm.pipeline import Pipeline
from embodied_wm.pipeline.sources import feed_bag, select_inputs
from embodied_wm.runtime.base import Backend
from embodied_wm.runtime.baselines import CopyLastBackend, LinearBackend
from embodied_wm.runtime.select import create_backend
from embodied_wm.sensing.rate import StampRate, measure_rate, pooled_period_ns

log = logging.getLogger(__name__)

BASELINES: tuple[str, ...] = ("copy_last", "linear")
AFFORDANCE_TYPE = "embodied_wm/msg/AffordanceMap"


class EvalError(EmbodiedWMError, RuntimeError):
    """The evaluation cannot run (bad options, no usable data); reported as one line by the CLI."""


@dataclass
class EvalOptions:
    model_dir: str | None = None
    backend: str = "auto"
    device: str = "auto"
    camera_topics: Sequence[str] = ()
    gt_topic: str | None = None
    max_frames: int | None = None
    robustness: bool = False
    #: Perturbations to run with ``robustness`` (default: all of robustness.PERTURBATIONS).
    perturbations: Sequence[str] = ()
    seed: int = 0
    #: Modality ablation: every ABLATION_CONDITIONS entry with audio, touch and both masked (model only).
    ablate: bool = False
    #: Predictions per bag kept (all methods, clean) for the report's contact sheets.
    samples_per_bag: int = 3
    #: Baseline geometry when no model is given.
    image_size: tuple[int, int] = (64, 64)
    horizon: int = 8
    dt_ns: int = NS_PER_S // 10
    #: Inference threads per model instance (None: the runtime's default). Set for parallel workers so
    #: N processes do not each start a thread per core.
    threads: int | None = None
    #: Write the clean run as an MCAP here (eval/mcap_export.py); "{bag}" is replaced per bag.
    mcap: str | None = None

    @property
    def conditions(self) -> list[str]:
        if not self.robustness:
            return ["clean"]
        out = ["clean", *(self.perturbations or list(PERTURBATIONS))]
        if self.ablate:
            for cond in ABLATION_CONDITIONS:
                for mask in ABLATION_MASKS:
                    name = ablation_condition(cond, mask)
                    if name not in out:
                        out.append(name)
        return out

    def methods_for(self, condition: str, methods: Sequence[str]) -> list[str]:
        """Methods run under ``condition``: the baselines use neither audio nor touch, so the masked
        ablation conditions run the model only."""
        if COMPOSITE_SEP in condition:
            return [m for m in methods if m == "model"]
        return list(methods)


@dataclass
class ModelInfo:
    """What every method is compared at: the model's geometry (or the baseline defaults)."""

    methods: list[str]
    model_id: str
    backend: str
    horizon: int
    dt_ns: int
    image_size: tuple[int, int]
    affordance_channels: tuple[str, ...]
    describe: dict[str, Any] = field(default_factory=dict)

    @property
    def horizon_s(self) -> list[float]:
        return [round((k + 1) * self.dt_ns / NS_PER_S, 9) for k in range(self.horizon)]


@dataclass
class Sample:
    """One observation's predictions for the contact sheet (clean condition, model resolution)."""

    bag: str
    stamp_ns: int
    observation: np.ndarray | None = None
    targets: list[np.ndarray | None] = field(default_factory=list)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    psnr: dict[str, list[float | None]] = field(default_factory=dict)
    affordance: np.ndarray | None = None
    affordance_channels: tuple[str, ...] = ()
    gt_affordance: np.ndarray | None = None


@dataclass
class BagResult:
    bag: str
    camera_topic: str
    frames: int
    stats: StatsTable
    records_path: str
    records: int
    stopped: str | None = None
    undecodable: int = 0
    pipeline_stats: dict[str, Any] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    gt_topic: str | None = None
    #: Stamp of the bag's first camera frame (the origin of report times) and the camera's mean rate.
    first_stamp_ns: int | None = None
    camera_rate_hz: float | None = None
    mcap: str | None = None
    #: The camera's median-period rate and stamp regularity (None with fewer than two frames).
    camera_rate: StampRate | None = None


# ------------------------------------------------------------------------------------------ backends
def create_method_backend(method: str, opts: EvalOptions, ref: ModelInfo | None = None) -> Backend:
    """The backend of ``method`` ("model" or a baseline name); baselines take the model's geometry."""
    if method == "model":
        extra: dict[str, Any] = {}
        if opts.threads and opts.backend in ("auto", "onnxruntime", "pytorch"):
            extra["threads"] = opts.threads  # TensorRT takes no thread option
        return create_backend(name=opts.backend, model_dir=opts.model_dir, device=opts.device, **extra)
    if ref is None:
        raise EvalError("baselines need the reference geometry")

    cls = {"copy_last": CopyLastBackend, "linear": LinearBackend}[method]
    return cls(image_size=ref.image_size, horizon=ref.horizon, dt_ns=ref.dt_ns)


def model_info(opts: EvalOptions) -> ModelInfo:
    """Create the model's backend once (in the parent, so a bad model fails before any worker starts)
    and read its geometry; without a model, the baselines' defaults from ``opts``."""
    if opts.model_dir is None:
        return ModelInfo(
            methods=list(BASELINES),
            model_id="",
            backend="",
            horizon=opts.horizon,
            dt_ns=opts.dt_ns,
            image_size=(int(opts.image_size[0]), int(opts.image_size[1])),
            affordance_channels=(),
        )
    backend = create_method_backend("model", opts)
    try:
        describe = backend.describe()
    except Exception as exc:
        describe = {"error": str(exc)}
    return ModelInfo(
        methods=["model", *BASELINES],
        model_id=str(backend.model_id),
        backend=str(backend.name),
        horizon=int(backend.horizon),
        dt_ns=int(backend.dt_ns),
        image_size=(int(backend.image_size[0]), int(backend.image_size[1])),
        affordance_channels=tuple(backend.affordance_channels),
        describe=_jsonable(describe),
    )


def _jsonable(obj: Any) -> Any:
    try:
        return json.loads(json.dumps(obj, default=str))
    except (TypeError, ValueError):
        return str(obj)


# ------------------------------------------------------------------------------------------- topics
def choose_gt_topic(info: BagInfo, requested: str | None) -> str | None:
    """The ground-truth AffordanceMap topic: the requested one, or an AffordanceMap topic under
    /ground_truth/ (a recorded model output is not ground truth)."""
    if requested:
        if info.topics.get(requested) != AFFORDANCE_TYPE:
            return None
        return requested
    cands = [
        t for t, mt in info.topics.items() if mt == AFFORDANCE_TYPE and t.startswith(GROUND_TRUTH_PREFIX)
    ]
    return sorted(cands)[0] if cands else None


def header_stamp_ns(msg: Any) -> int | None:
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return None
    return to_ns(stamp)


def affordance_gt(msg: Any) -> tuple[list[str], np.ndarray] | None:
    """(channels, C x H x W float32) of an AffordanceMap, None if its sizes do not add up."""
    channels = [str(c) for c in msg.channels]
    h, w = int(msg.height), int(msg.width)
    data = np.asarray(msg.data, dtype=np.float32)
    if not channels or h <= 0 or w <= 0 or data.size != len(channels) * h * w:
        return None
    return channels, data.reshape(len(channels), h, w)


# --------------------------------------------------------------------------------------- per bag
class _ProgressSink:
    """Counts observations and forwards them to the parent in batches (a queue in workers)."""

    def __init__(self, bag_index: int, q: Any | None, callback: Callable[[int], None] | None) -> None:
        self.bag_index = bag_index
        self.q = q
        self.callback = callback
        self.pending = 0

    def tick(self, n: int = 1, force: bool = False) -> None:
        self.pending += n
        if self.pending and (force or self.pending >= 5):
            if self.q is not None:
                self.q.put((self.bag_index, self.pending))
            if self.callback is not None:
                self.callback(self.pending)
            self.pending = 0


def evaluate_bag(
    bag: str | Path,
    opts: EvalOptions,
    ref: ModelInfo,
    records_path: str | Path,
    bag_index: int = 0,
    progress_queue: Any | None = None,
    progress: Callable[[int], None] | None = None,
) -> BagResult:
    """Replay one bag through the Pipeline, predict with every method under every condition, score
    against the frames that followed, and write one JSON line per prediction to ``records_path``."""
    t_start = time.perf_counter()
    bag = Path(bag)
    info = bag_info(bag)
    camera = choose_camera_topic(info, opts.camera_topics)
    inputs = select_inputs(info, [camera])
    gt_topic = choose_gt_topic(info, opts.gt_topic)
    conditions = opts.conditions

    # One Pipeline per (condition, method): each holds its own backend state (previous frames, latent).
    pipes: dict[tuple[str, str], Any] = {}
    for cond in conditions:
        for method in opts.methods_for(cond, ref.methods):
            pipes[(cond, method)] = Pipeline(create_method_backend(method, opts, ref))
    # The feeder builds the Observations every method gets (decode + Aligner run once per message).
    feeder = pipes[("clean", ref.methods[0])]

    scorer = HorizonScorer(keep_frames=True)
    stats = StatsTable(ref.horizon)
    n_cam = info.counts.get(camera, 0)
    if opts.max_frames:
        n_cam = min(n_cam, opts.max_frames)
    sample_idx = _sample_indices(n_cam, ref.horizon, opts.samples_per_bag)
    sample_stamps: dict[int, Sample] = {}
    sink = _ProgressSink(bag_index, progress_queue, progress)
    report = BagReadReport()
    frames = 0
    records = 0
    last_stamp: int | None = None
    last_contact: int | None = None
    camera_stamps: list[int] = []
    bag_name = str(bag)
    Path(records_path).parent.mkdir(parents=True, exist_ok=True)
    camera_span: list[int] = []  # first stamp, last stamp, frame count
    export = _mcap_export(opts, ref, bag, bag_index)

    with open(records_path, "w") as out:

        def handle_scored(scored: list[ScoredPrediction]) -> None:
            nonlocal records
            for s in scored:
                stats.add(s)
                if s.pending.tags.get("after_contact"):
                    stats.get(s.pending.condition + AFTER_CONTACT, s.pending.method).add(s, latency=False)
                out.write(json.dumps(s.record(), allow_nan=False) + "\n")
                records += 1
                if s.pending.condition == "clean" and s.pending.stamp_ns in sample_stamps:
                    _fill_sample(sample_stamps[s.pending.stamp_ns], s)
                if export is not None and s.pending.condition == "clean":
                    export.scored(s)

        def handle_obs(obs: Observation) -> bool:
            """Predict from one observation with every method. Returns False when the read can stop:
            max_frames predictions made and every one of them has its targets."""
            nonlocal frames, last_stamp, last_contact
            if obs.image is None:
                return True  # no camera frame in it: nothing to predict or score
            if not camera_span:
                camera_span.extend([obs.stamp_ns, obs.stamp_ns, 0])
            camera_span[1] = max(camera_span[1], obs.stamp_ns)
            camera_span[2] += 1
            if obs.tactile is not None and float(np.max(np.abs(obs.tactile))) > CONTACT_THRESHOLD:
                last_contact = obs.stamp_ns
            after_contact = last_contact is not None and 0 <= obs.stamp_ns - last_contact <= round(
                AFTER_CONTACT_S * NS_PER_S
            )
            camera_stamps.append(int(obs.stamp_ns))
            if last_stamp is not None and obs.stamp_ns <= last_stamp:
                # Time went backwards (bag loop, simulator reset): score what is pending against the old
                # timeline, forget its frames, and reset the methods' histories. (The feeder's Pipeline
                # resets its own backend; the other Pipelines never see messages, so reset theirs here.)
                handle_scored(scorer.flush())
                scorer.frames.prune_before(obs.stamp_ns + 1)
                for pipe in pipes.values():
                    if pipe is not feeder and pipe.backend is not None:
                        pipe.backend.reset()
            if opts.max_frames is not None and frames >= opts.max_frames:
                # Enough predictions: keep reading frames only as targets for the ones still pending.
                if not scorer.pending:
                    return False
                scorer.add_frame(obs.stamp_ns, np.asarray(obs.image))
                if export is not None:
                    export.camera(obs.stamp_ns, np.asarray(obs.image))
                last_stamp = obs.stamp_ns
                handle_scored(scorer.poll())
                return bool(scorer.pending)
            scorer.add_frame(obs.stamp_ns, np.asarray(obs.image))
            if export is not None:
                export.camera(obs.stamp_ns, np.asarray(obs.image))
            if frames in sample_idx:
                sample_stamps[obs.stamp_ns] = Sample(bag=bag_name, stamp_ns=obs.stamp_ns)
            frames += 1
            last_stamp = obs.stamp_ns
            shared_ms: dict[str, float] = {}
            for cond in conditions:
                seen = perturb(obs, cond, opts.seed)
                if seen is None:
                    continue  # dropped frame: no prediction from it
                for method in opts.methods_for(cond, ref.methods):
                    pipe = pipes[(cond, method)]
                    pred: Prediction = pipe.predict(seen)
                    if export is not None and cond == "clean":
                        export.expect(method, int(pred.stamp_ns))
                    if pipe is feeder:
                        # Decode and align ran once, in the feeder, for every method: each method's
                        # latency includes them, as it would in a live node running that method.
                        shared_ms = {k: pred.timings_ms.get(k, 0.0) for k in ("decode", "align")}
                    elif cond == "clean":
                        pred.timings_ms.update(shared_ms)
                    scorer.add_prediction(
                        PendingPrediction(
                            method=method,
                            stamp_ns=int(pred.stamp_ns),
                            frame_stamps_ns=np.asarray(pred.frame_stamps_ns, np.int64),
                            frames=np.asarray(pred.frames),
                            condition=cond,
                            affordance=np.asarray(pred.affordance) if pred.affordance.size else None,
                            affordance_channels=tuple(pred.affordance_channels),
                            timings_ms=_with_total(pred.timings_ms),
                            tags={"bag": bag_name, "after_contact": after_contact},
                        )
                    )
            handle_scored(scorer.poll())
            sink.tick()
            return True

        also = [gt_topic] if gt_topic else []
        for item in feed_bag(bag, inputs, feeder, also=also, report=report):
            if isinstance(item, Observation):
                if not handle_obs(item):
                    break
                continue
            stamp = header_stamp_ns(item.msg)
            gt = affordance_gt(item.msg)
            if stamp is not None and gt is not None:
                scorer.add_ground_truth(stamp, gt[0], gt[1])
        handle_scored(scorer.flush())
    if export is not None:
        export.close()
    sink.tick(0, force=True)
    pstats = feeder.stats.as_dict() if hasattr(feeder.stats, "as_dict") else {}
    return BagResult(
        bag=bag_name,
        camera_topic=camera,
        frames=frames,
        stats=stats,
        records_path=str(records_path),
        records=records,
        stopped=report.stopped_at,
        undecodable=report.undecodable,
        pipeline_stats=_jsonable(pstats),
        samples=[s for s in sample_stamps.values() if s.predictions],
        inputs=inputs,
        wall_s=time.perf_counter() - t_start,
        gt_topic=gt_topic,
        first_stamp_ns=camera_span[0] if camera_span else None,
        camera_rate_hz=_rate(camera_span),
        mcap=str(export.file.path) if export is not None else None,
        camera_rate=measure_rate(camera_stamps),
    )


def mcap_path(template: str, bag: str | Path, bag_index: int) -> Path:
    """The MCAP of one bag: ``template`` as given, or with "{bag}" replaced by index and bag name."""
    if "{bag}" not in template:
        return Path(template)
    return Path(template.replace("{bag}", f"{bag_index:03d}_{Path(bag).stem}"))


def _mcap_export(opts: EvalOptions, ref: ModelInfo, bag: Path, bag_index: int) -> Any:
    if not opts.mcap:
        return None
    meta = {
        "model_id": ref.model_id,
        "backend": ref.backend,
        "methods": ",".join(ref.methods),
        "horizon": str(ref.horizon),
        "dt_s": f"{ref.dt_ns / NS_PER_S:g}",
        "bag": str(bag),
    }
    return PredictionExport(mcap_path(opts.mcap, bag, bag_index), ref.horizon, ref.methods[0], meta)


def _rate(span: list[int]) -> float | None:
    """Mean camera frame rate (Hz) from [first stamp, last stamp, frames]."""
    if len(span) < 3 or span[2] < 2 or span[1] <= span[0]:
        return None
    return round((span[2] - 1) * NS_PER_S / (span[1] - span[0]), 3)


def _with_total(timings: dict[str, float]) -> dict[str, float]:
    """Stage timings plus "total" (their sum) unless the backend reports its own total."""
    out = {k: float(v) for k, v in timings.items()}
    out.setdefault("total", sum(out.values()))
    return out


def _sample_indices(n: int, horizon: int, count: int) -> set[int]:
    """Up to ``count`` observation indices spread over the bag, leaving room for a full horizon after."""
    if count <= 0 or n <= 1:
        return set()
    usable = max(1, n - horizon)
    return {int(i) for i in np.linspace(0, usable - 1, num=min(count, usable)).round()}


def _fill_sample(sample: Sample, s: ScoredPrediction) -> None:
    p = s.pending
    sample.predictions[p.method] = p.frames
    sample.psnr[p.method] = s.psnr
    if s.observation_frame is not None:
        sample.observation = s.observation_frame
    if s.target_frames:
        sample.targets = s.target_frames
    if p.affordance is not None and p.method == "model":
        sample.affordance = p.affordance
        sample.affordance_channels = p.affordance_channels
        sample.gt_affordance = s.gt_affordance


# ------------------------------------------------------------------------------------ many bags
_WORKER_QUEUE: Any = None


def _worker_init(q: Any, threads: int) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = q
    # Before torch / onnxruntime load (the model backend imports them later), so their pools are sized.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        # lazy: optional: absent here is handled below
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass


def _worker_run(args: tuple[int, str, EvalOptions, ModelInfo, str]) -> BagResult:
    index, bag, opts, ref, records_path = args
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The parent reports damaged bags once (summary "stopped" and a warning line).
    logging.getLogger("embodied_wm.io.bag").setLevel(logging.ERROR)
    return evaluate_bag(bag, opts, ref, records_path, bag_index=index, progress_queue=_WORKER_QUEUE)


def evaluate_bags(
    bags: Sequence[str | Path],
    opts: EvalOptions,
    ref: ModelInfo,
    parts_dir: str | Path,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[BagResult]:
    """Evaluate every bag (in ``workers`` processes when > 1); results in the order of ``bags``."""
    parts_dir = Path(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    if workers <= 1 or len(bags) <= 1:
        return [
            evaluate_bag(b, opts, ref, parts_dir / f"{i:04d}.jsonl", bag_index=i, progress=progress)
            for i, b in enumerate(bags)
        ]
    # spawn, not fork: the parent has imported torch/OpenCV thread pools that do not survive a fork.
    ctx = mp.get_context("spawn")
    n = min(workers, len(bags))
    threads = max(1, (os.cpu_count() or 1) // n)
    if opts.threads is None:
        opts = replace(opts, threads=threads)
    jobs = [(i, str(b), opts, ref, str(parts_dir / f"{i:04d}.jsonl")) for i, b in enumerate(bags)]
    q = ctx.Queue()
    results: dict[int, BagResult] = {}
    with ctx.Pool(n, initializer=_worker_init, initargs=(q, threads)) as pool:
        pending = [pool.apply_async(_worker_run, (job,)) for job in jobs]
        while True:
            try:
                _, count = q.get(timeout=0.2)
                if progress is not None:
                    progress(count)
            except queue.Empty:
                pass
            if all(p.ready() for p in pending):
                break
        while True:  # drain the last progress ticks
            try:
                _, count = q.get_nowait()
                if progress is not None:
                    progress(count)
            except queue.Empty:
                break
        for i, p in enumerate(pending):
            results[i] = p.get()  # re-raises a worker's exception here
    return [results[i] for i in range(len(bags))]


# ------------------------------------------------------------------------------------- summary
def build_summary(
    results: Sequence[BagResult], ref: ModelInfo, opts: EvalOptions, wall_s: float | None = None
) -> dict[str, Any]:
    """summary.json (schema: docs/eval_schema.md)."""

    table = StatsTable(ref.horizon)
    for r in results:
        table.merge(r.stats)
    frames = sum(r.frames for r in results)
    methods: dict[str, Any] = {}
    for m in ref.methods:
        methods[m] = table.get("clean", m).summary()
    summary: dict[str, Any] = {
        "schema_version": 1,
        "frames": frames,
        "horizon_s": ref.horizon_s,
        "dt_s": ref.dt_ns / NS_PER_S,
        "image_size": list(ref.image_size),
        "model_id": ref.model_id,
        "backend": ref.backend,
        "backend_info": ref.describe,
        "methods": {m: {k: methods[m].get(k) for k in ("psnr", "psnr_moving", "ssim")} for m in ref.methods},
        "methods_detail": {
            m: {k: v for k, v in methods[m].items() if k not in ("psnr", "psnr_moving", "ssim", "affordance")}
            for m in ref.methods
        },
        "settings": {
            "moving_threshold": MOVING_THRESHOLD,
            "moving_threshold_normalized": round(MOVING_THRESHOLD / 255.0, 6),
            "psnr_cap_db": PSNR_CAP_DB,
            "target_tolerance": "|stamp - (t + k*dt)| < dt/2 (half-open)",
            "ssim": "gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, per RGB channel, mean",
            "max_frames_per_bag": opts.max_frames,
            "seed": opts.seed,
        },
        "bags": [
            {
                "path": r.bag,
                "camera_topic": r.camera_topic,
                "inputs": r.inputs,
                "ground_truth_topic": r.gt_topic,
                "frames": r.frames,
                "predictions": r.records,
                "undecodable": r.undecodable,
                "stopped": r.stopped,
                "wall_s": round(r.wall_s, 3),
                "pipeline": r.pipeline_stats,
                "start_time": _iso(r.first_stamp_ns),
                "camera_rate_hz": r.camera_rate_hz,
                "mcap": r.mcap,
            }
            for r in results
        ],
        "stopped": [{"bag": r.bag, "at": r.stopped} for r in results if r.stopped],
    }
    summary.update(camera_timing(results, ref.dt_ns))
    summary["warnings"].extend(invalid_message_warnings(results))
    model_aff = methods.get("model", {}).get("affordance")
    if model_aff:
        summary["affordance"] = {ch: {"auroc": v["auroc"], "ap": v["ap"]} for ch, v in model_aff.items()}
        summary["affordance_detail"] = model_aff
    lat_method = "model" if "model" in methods else ref.methods[0]
    summary["latency_ms"] = methods[lat_method].get("latency_ms", {})
    summary["latency_method"] = lat_method
    if wall_s is not None:
        summary["wall_s"] = round(wall_s, 3)
        summary["frames_per_s"] = round(frames / wall_s, 3) if wall_s > 0 else None
    if opts.robustness:
        rob: dict[str, Any] = {"seed": opts.seed, "conditions": {}}
        for cond in opts.conditions[1:]:
            entry: dict[str, Any] = {
                "description": describe(cond),
                "delta": {},
                "absolute": {},
            }
            for m in opts.methods_for(cond, ref.methods):
                pert = table.get(cond, m).summary()
                entry["delta"][m] = deltas(methods[m], pert)
                entry["absolute"][m] = {k: pert.get(k) for k in ("psnr", "psnr_moving", "ssim")}
                entry.setdefault("predictions", {})[m] = pert["predictions"]
                if pert.get("affordance"):
                    entry["absolute"][m]["affordance"] = {
                        ch: {"auroc": v["auroc"], "ap": v["ap"]} for ch, v in pert["affordance"].items()
                    }
            rob["conditions"][cond] = entry
        summary["robustness"] = rob
    if opts.robustness and opts.ablate:
        summary["ablation"] = build_ablation(table, opts.seed)
    return summary


def _iso(stamp_ns: int | None) -> str | None:
    """UTC wall time of a stamp, ISO 8601 with milliseconds."""
    if stamp_ns is None:
        return None
    t = datetime.datetime.fromtimestamp(stamp_ns / NS_PER_S, tz=datetime.timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
def camera_timing(results: Sequence[BagResult], dt_ns: int) -> dict[str, Any]:
    """The data's camera rate next to the model's dt, and a warning when they differ (summary keys
    ``camera_rate_hz``, ``camera_period_s``, ``camera_periods_per_dt`` and ``warnings``)."""
    rates = [r.camera_rate for r in results if r.camera_rate is not None]
    out: dict[str, Any] = {"camera_rate_hz": None, "camera_period_s": None, "camera_periods_per_dt": None}
    warnings: list[str] = []
    if rates:
        period = pooled_period_ns(rates)
        ratio = dt_ns / period
        out.update(
            camera_rate_hz=round(NS_PER_S / period, 4),
            camera_period_s=period / NS_PER_S,
            camera_periods_per_dt=round(ratio, 4),
        )
        if abs(ratio - 1.0) > 0.05:
            how = (
                f"steps are scored against one camera frame in {round(ratio)}"
                if ratio > 1 and abs(ratio - round(ratio)) <= 0.25
                else "predicted stamps fall between camera frames, so steps without a frame less than "
                "dt/2 away are left out"
            )
            warnings.append(
                f"the data's camera runs at {NS_PER_S / period:.4g} Hz (period {period / 1e6:.4g} ms) "
                f"but the model predicts at dt {dt_ns / NS_PER_S:.4g} s ({NS_PER_S / dt_ns:.4g} Hz): {how}; "
                "train --dt auto trains a model at the camera's own period"
            )
        hz = sorted({round(r.hz, 1) for r in rates})
        if len(hz) > 1:
            warnings.append(f"the bags' cameras run at different rates: {', '.join(f'{h:g}' for h in hz)} Hz")
    out["warnings"] = warnings
    return out


def invalid_message_warnings(results: Sequence[BagResult]) -> list[str]:
    """One warning per rejection reason over all bags (e.g. taxel arrays that do not fit the model),
    with the count and the newest reason text, so a mismatch is not only a number in summary.json."""
    counts: dict[str, int] = {}
    detail: dict[str, str] = {}
    for r in results:
        counts.update({k: counts.get(k, 0) + int(v) for k, v in r.pipeline_stats.get("invalid", {}).items()})
        detail.update(r.pipeline_stats.get("invalid_detail", {}))
    return [
        f"{n} {key} messages were rejected" + (f": {detail[key]}" if key in detail else "")
        for key, n in sorted(counts.items())
    ]


def merge_records(results: Sequence[BagResult], out_path: str | Path) -> int:
    """Concatenate the bags' part files into ``out_path`` in bag order; remove the parts."""
    n = 0
    with open(out_path, "w") as out:
        for r in results:
            part = Path(r.records_path)
            if not part.exists():
                continue
            with open(part) as f:
                for line in f:
                    out.write(line)
                    n += 1
            part.unlink()
    return n


__all__ = [
    "BASELINES",
    "BagError",
    "BagResult",
    "EvalError",
    "EvalOptions",
    "ModelInfo",
    "Sample",
    "build_summary",
    "evaluate_bag",
    "evaluate_bags",
    "merge_records",
    "model_info",
]
