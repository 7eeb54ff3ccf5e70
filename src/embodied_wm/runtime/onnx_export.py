"""Export a checkpoint to two ONNX graphs and prove they reproduce PyTorch.

  encoder.onnx  ENCODER_INPUTS (batch 1)               -> ENCODER_OUTPUTS (the state; "latent" first)
  rollout.onnx  ENCODER_OUTPUTS (batch 1) + actions [N,K,A] -> frames [N,K,3,H,W], affordance [N,C,H,W]
  score.onnx    ENCODER_OUTPUTS (batch 1) + actions [N,K,A] + designated_pixels, goal_pixels [P,2]
                -> pixel_positions [N,K,P,2], pixel_distances [N,K,P], latents [N,K,D]
                (the scores-only rollout: pixel goals and latent goals without decoding frames)

The rollout graph has the dynamics and heads unrolled over the K steps (K is static) and one dynamic axis,
the candidate count N, so one encode serves any number of MPC queries. Opset 17 is what TensorRT >= 8.6's
ONNX parser and every current ONNX Runtime accept.

Beside the graphs the export directory holds a copy of the checkpoint's ``config.json`` (backends need the
preprocessing statistics, horizon and channel names without loading PyTorch) and ``export.json``: model id,
opset, input/output names and shapes, file hashes, tolerances and the parity results measured at export.
``export.json`` is written last and only when parity holds, so a directory with one is a usable export.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embodied_wm.runtime.base import ExportError, ModelFileError
from embodied_wm.runtime.learned import (
    CONFIG_FILE,
    EXPORT_MANIFEST,
    default_cache_dir,
    is_checkpoint_dir,
    is_export_dir,
    read_config,
    require_model_dir,
)

log = logging.getLogger(__name__)

#: 2: adds score.onnx (exports of format 1 are re-exported by ``ensure_onnx``).
FORMAT_VERSION = 2
ENCODER_FILE = "encoder.onnx"
ROLLOUT_FILE = "rollout.onnx"
SCORE_FILE = "score.onnx"
CANDIDATE_AXIS = "N"
PIXEL_AXIS = "P"
#: TensorRT optimisation profile for the candidate axis: (min, opt, max).
CANDIDATE_PROFILE = (1, 64, 256)
#: Max |ONNX Runtime fp32 - PyTorch fp32| accepted at export (frames/affordance are in [0, 1]; the state
#: is LayerNorm-scaled). Measured on tiny: ~5e-6 on the state, ~3e-7 on the outputs.
FP32_TOLERANCES: dict[str, float] = {
    "state": 1e-4,
    "frames": 1e-4,
    "affordance": 1e-4,
    # score.onnx: pixels at the model resolution, and the rolled latents (tanh range).
    "pixel_positions": 1e-3,
    "pixel_distances": 1e-3,
    "latents": 1e-4,
}
#: What to expect from reduced-precision engines (TensorRT fp16), for users comparing against PyTorch;
#: not enforced at export (the ONNX graphs are fp32).
FP16_TOLERANCES: dict[str, float] = {"frames": 2e-2, "affordance": 2e-2}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pin_shapes(path: Path, shapes: dict[str, Sequence[int | str]]) -> None:
    """Write the known static dims into the graph's output value-infos. The legacy exporter leaves names
    like 'Sigmoidaffordance_dim_2' for dims it could not infer through Resize; TensorRT and ORT infer
    them anyway, but export.json and tools reading the graph should see real shapes."""
    # lazy: onnx loads only for export and parity checks
    import onnx

    model = onnx.load(str(path))
    for vi in model.graph.output:
        if vi.name not in shapes:
            continue
        dims = vi.type.tensor_type.shape.dim
        want = shapes[vi.name]
        if len(dims) != len(want):
            raise ExportError(f"{path.name}: output {vi.name} has rank {len(dims)}, PyTorch gave {len(want)}")
        for d, w in zip(dims, want):
            if isinstance(w, str):
                d.dim_param = w
            else:
                d.dim_value = int(w)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _graph_io(path: Path) -> dict[str, list[dict[str, Any]]]:
    # lazy: onnx loads only for export and parity checks
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def info(vi: Any) -> dict[str, Any]:
        t = vi.type.tensor_type
        shape: list[int | str] = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        return {
            "name": vi.name,
            "shape": shape,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
        }

    inits = {i.name for i in model.graph.initializer}
    return {
        "inputs": [info(vi) for vi in model.graph.input if vi.name not in inits],
        "outputs": [info(vi) for vi in model.graph.output],
    }


def _torch_export(module: Any, args: tuple[Any, ...], path: Path, **kw: Any) -> None:
    # lazy: torch is heavy and optional here: loaded only when this path runs
    import torch

    # dynamo=False: the TorchScript-based exporter emits opset 17 directly and needs no onnxscript; the
    # dynamo exporter targets opset >= 18 (down-converting is lossy for GroupNorm/LayerNorm).
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(buf):
        warnings.simplefilter("ignore")  # deprecation notices about the legacy exporter
        try:
            torch.onnx.export(module, args, str(path), dynamo=False, do_constant_folding=True, **kw)
        except Exception as exc:  # the exporter raises many unrelated types (tracing, symbolic, checker)
            raise ExportError(f"ONNX export of {path.name} failed: {exc}") from exc


def parity_check(
    model: Any, out_dir: Path, candidates: Sequence[int] = (1, 4), seed: int = 0
) -> dict[str, Any]:
    """Run both graphs in ONNX Runtime (CPU, fp32) and PyTorch on the same inputs; max abs diffs."""
    # lazy: torch is heavy and optional here: loaded only when this path runs
    import torch

    try:
        # lazy: optional: absent here is handled below
        import onnxruntime as ort
    except ImportError as exc:
        raise ExportError("parity check needs onnxruntime (pip install onnxruntime)") from exc
    # lazy: torch is heavy and optional here: loaded only when this path runs
    from embodied_wm.model.world_model import ENCODER_INPUTS, ENCODER_OUTPUTS

    so = ort.SessionOptions()
    so.log_severity_level = 3
    enc = ort.InferenceSession(str(out_dir / ENCODER_FILE), so, providers=["CPUExecutionProvider"])
    roll = ort.InferenceSession(str(out_dir / ROLLOUT_FILE), so, providers=["CPUExecutionProvider"])
    score = ort.InferenceSession(str(out_dir / SCORE_FILE), so, providers=["CPUExecutionProvider"])
    from embodied_wm.model.world_model import SCORE_OUTPUTS

    s = model.cfg.image_size
    # Designated pixels across the image (one at a corner) and goals elsewhere.
    designated = torch.tensor([[s * 0.4, s * 0.55], [0.0, s - 1.0], [s * 0.7, s * 0.2]])
    goals = torch.tensor([[s * 0.6, s * 0.5], [s * 0.5, s * 0.5], [1.0, 2.0]])
    ex = model.example_inputs(n_candidates=1)
    # Drop two modalities in the second case so the "missing sensor" path is compared too.
    masks = [ex["mask"], ex["mask"] * torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0]])]
    gen = torch.Generator().manual_seed(seed)
    report: dict[str, Any] = {
        "provider": "CPUExecutionProvider",
        "encoder": {},
        "rollout": {},
        "score": {},
    }
    worst_state: dict[str, float] = {}
    with torch.no_grad():
        for case, mask in enumerate(masks):
            inputs = {k: (mask if k == "mask" else ex[k]) for k in ENCODER_INPUTS}
            ref_state = model.encoder(*(inputs[k] for k in ENCODER_INPUTS))
            got_state = enc.run(None, {k: v.numpy() for k, v in inputs.items()})
            for name, r, g in zip(ENCODER_OUTPUTS, ref_state, got_state):
                worst_state[name] = max(worst_state.get(name, 0.0), float(np.abs(r.numpy() - g).max()))
            if case:
                continue
            for n in candidates:
                # Actions a few std wide so the dynamics leave the "hold still" regime.
                std = torch.tensor(model.cfg.action_std).float()
                acts = torch.randn(n, model.cfg.horizon, model.cfg.action_dim, generator=gen) * std * 2
                ref_f, ref_a = model.rollout_net(*ref_state, acts)
                feeds = {k: v.numpy() for k, v in zip(ENCODER_OUTPUTS, ref_state)}
                got_f, got_a = roll.run(None, {**feeds, "actions": acts.numpy()})
                if got_f.shape != tuple(ref_f.shape) or got_a.shape != tuple(ref_a.shape):
                    raise ExportError(
                        f"rollout.onnx at N={n}: shapes {got_f.shape}/{got_a.shape}, PyTorch "
                        f"{tuple(ref_f.shape)}/{tuple(ref_a.shape)}"
                    )
                report["rollout"][str(n)] = {
                    "frames": float(np.abs(ref_f.numpy() - got_f).max()),
                    "affordance": float(np.abs(ref_a.numpy() - got_a).max()),
                }
                for p in (1, len(designated)):
                    d, g = designated[:p], goals[:p]
                    ref_s = model.rollout_net.score(*ref_state, acts, d, g)
                    got_s = score.run(
                        None, {**feeds, "actions": acts.numpy(), "designated_pixels": d.numpy(),
                               "goal_pixels": g.numpy()}
                    )
                    report["score"][f"{n}x{p}"] = {
                        name: float(np.abs(r.numpy() - o).max()) if r.shape == o.shape else math.inf
                        for name, r, o in zip(SCORE_OUTPUTS, ref_s, got_s)
                    }
    report["encoder"] = worst_state
    bad = [f"encoder {k}: {v:.3g}" for k, v in worst_state.items() if v > FP32_TOLERANCES["state"]]
    for n, diffs in report["rollout"].items():
        bad += [f"rollout N={n} {k}: {v:.3g}" for k, v in diffs.items() if v > FP32_TOLERANCES[k]]
    for n, diffs in report["score"].items():
        bad += [f"score NxP={n} {k}: {v:.3g}" for k, v in diffs.items() if not v <= FP32_TOLERANCES[k]]
    report["ok"] = not bad
    report["failures"] = bad
    return report


def export_onnx(
    model_dir: str | Path,
    out_dir: str | Path,
    opset: int = 17,
    dynamic_candidates: bool = True,
    static_candidates: int = 1,
    parity_candidates: Sequence[int] = (1, 4),
) -> dict[str, Any]:
    """Export ``model_dir`` (a checkpoint) into ``out_dir``; returns the manifest written to export.json.

    Raises ExportError if export fails or parity with PyTorch exceeds ``FP32_TOLERANCES`` (the ONNX files
    are then left in ``out_dir`` for inspection, without export.json). ``dynamic_candidates=False`` fixes
    N to ``static_candidates`` (for runtimes without dynamic shapes)."""
    # lazy: onnx loads only for export and parity checks
    import onnx

    # lazy: torch is heavy and optional here: loaded only when this path runs
    import torch

    # lazy: torch is heavy and optional here: loaded only when this path runs
    from embodied_wm.model.checkpoint import CheckpointError, load_checkpoint

    # lazy: torch is heavy and optional here: loaded only when this path runs
    from embodied_wm.model.world_model import (
        ENCODER_INPUTS,
        ENCODER_OUTPUTS,
        ROLLOUT_INPUTS,
        ROLLOUT_OUTPUTS,
        SCORE_INPUTS,
        SCORE_OUTPUTS,
        PixelScorer,
    )

    src = require_model_dir(model_dir)
    if not is_checkpoint_dir(src):
        raise ModelFileError(f"{src}: export needs a checkpoint (model.safetensors + config.json)")
    if opset < 16:
        raise ExportError(f"opset {opset} too old: GridSample needs opset >= 16 (use 17)")
    try:
        loaded = load_checkpoint(src, device="cpu")
    except CheckpointError as exc:
        raise ModelFileError(str(exc)) from exc
    model, cfg = loaded.model.float().eval(), loaded.cfg
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / EXPORT_MANIFEST).unlink(missing_ok=True)  # the directory is not a valid export until the end

    # Trace with N=2 so nothing candidate-dependent gets folded as the special case N=1.
    trace_n = 2 if dynamic_candidates else static_candidates
    ex = model.example_inputs(n_candidates=trace_n)
    enc_args = tuple(ex[k] for k in ENCODER_INPUTS)
    with torch.no_grad():
        state = model.encoder(*enc_args)
        frames, aff = model.rollout_net(*state, ex["actions"])
    _torch_export(
        model.encoder,
        enc_args,
        out / ENCODER_FILE,
        input_names=list(ENCODER_INPUTS),
        output_names=list(ENCODER_OUTPUTS),
        opset_version=opset,
    )
    dyn = {n: {0: CANDIDATE_AXIS} for n in ("actions", *ROLLOUT_OUTPUTS)} if dynamic_candidates else None
    _torch_export(
        model.rollout_net,
        (*state, ex["actions"]),
        out / ROLLOUT_FILE,
        input_names=list(ROLLOUT_INPUTS),
        output_names=list(ROLLOUT_OUTPUTS),
        opset_version=opset,
        dynamic_axes=dyn,
    )
    s = cfg.image_size
    pix = torch.tensor([[s / 3, s / 2], [s / 2, s / 4]])  # P=2 so the pixel axis is not folded as 1
    goal_pix = torch.tensor([[s / 2, s / 2], [s / 4, s / 3]])
    with torch.no_grad():
        scored = PixelScorer(model.rollout_net)(*state, ex["actions"], pix, goal_pix)
    score_dyn: dict[str, dict[int, str]] = {
        "designated_pixels": {0: PIXEL_AXIS},
        "goal_pixels": {0: PIXEL_AXIS},
    }
    for name in SCORE_OUTPUTS:
        score_dyn[name] = {0: CANDIDATE_AXIS} if dynamic_candidates else {}
    score_dyn["actions"] = {0: CANDIDATE_AXIS} if dynamic_candidates else {}
    score_dyn["pixel_positions"][2] = PIXEL_AXIS
    score_dyn["pixel_distances"][2] = PIXEL_AXIS
    _torch_export(
        PixelScorer(model.rollout_net),
        (*state, ex["actions"], pix, goal_pix),
        out / SCORE_FILE,
        input_names=list(SCORE_INPUTS),
        output_names=list(SCORE_OUTPUTS),
        opset_version=opset,
        dynamic_axes={k: v for k, v in score_dyn.items() if v},
    )
    lead: int | str = CANDIDATE_AXIS if dynamic_candidates else static_candidates
    _pin_shapes(
        out / SCORE_FILE,
        {
            "pixel_positions": (lead, scored[0].shape[1], PIXEL_AXIS, 2),
            "pixel_distances": (lead, scored[1].shape[1], PIXEL_AXIS),
            "latents": (lead, *scored[2].shape[1:]),
        },
    )
    _pin_shapes(out / ENCODER_FILE, {k: tuple(v.shape) for k, v in zip(ENCODER_OUTPUTS, state)})
    _pin_shapes(
        out / ROLLOUT_FILE,
        {"frames": (lead, *frames.shape[1:]), "affordance": (lead, *aff.shape[1:])},
    )
    shutil.copyfile(src / CONFIG_FILE, out / CONFIG_FILE)

    parity_n = tuple(parity_candidates) if dynamic_candidates else (static_candidates,)
    parity = parity_check(model, out, parity_n)
    if not parity["ok"]:
        raise ExportError(
            f"{out}: ONNX graphs differ from PyTorch beyond tolerance ({'; '.join(parity['failures'])}); "
            "files left for inspection, no export.json written"
        )

    # lazy: onnxruntime loads only with the backend that uses it
    import onnxruntime

    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model_id": loaded.model_id,
        "config_name": cfg.name,
        "opset": opset,
        "dynamic_candidates": dynamic_candidates,
        "candidate_axis": {
            "name": CANDIDATE_AXIS if dynamic_candidates else None,
            "input": "actions",
            "tensorrt_profile": list(CANDIDATE_PROFILE) if dynamic_candidates else [static_candidates] * 3,
        },
        "horizon": cfg.horizon,
        "dt_ns": cfg.dt_ns,
        "image_size": cfg.image_size,
        "action_dim": cfg.action_dim,
        "affordance_channels": list(cfg.affordance_channels),
        "graphs": {
            "encoder": {
                "file": ENCODER_FILE,
                "sha256": sha256_file(out / ENCODER_FILE),
                **_graph_io(out / ENCODER_FILE),
            },
            "rollout": {
                "file": ROLLOUT_FILE,
                "sha256": sha256_file(out / ROLLOUT_FILE),
                **_graph_io(out / ROLLOUT_FILE),
            },
            "score": {
                "file": SCORE_FILE,
                "sha256": sha256_file(out / SCORE_FILE),
                **_graph_io(out / SCORE_FILE),
            },
        },
        "tolerances": {"fp32": FP32_TOLERANCES, "fp16_expected": FP16_TOLERANCES},
        "parity": parity,
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = out / (EXPORT_MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / EXPORT_MANIFEST)
    worst = max(v for d in parity["rollout"].values() for v in d.values())
    log.info(
        "exported %s (model %s, opset %d) to %s; parity max abs diff %.2e",
        cfg.name,
        loaded.model_id,
        opset,
        out,
        worst,
    )
    return manifest


def load_manifest(export_dir: str | Path, verify_hashes: bool = True) -> dict[str, Any]:
    """export.json of ``export_dir`` after checking that its graphs exist and are the files it describes.
    Raises ModelFileError naming the file when anything is missing or altered."""
    d = Path(export_dir)
    path = d / EXPORT_MANIFEST
    if not path.is_file():
        raise ModelFileError(f"{d}: missing {EXPORT_MANIFEST} (not an ONNX export, or an export that failed)")
    try:
        manifest = json.loads(path.read_text())
        graphs = manifest["graphs"]
        # score.onnx is optional: exports of format 1 predate it (the backends then say so when asked).
        files = {name: graphs[name]["file"] for name in ("encoder", "rollout", "score") if name in graphs}
        if not all(isinstance(f, str) and f for f in files.values()):
            raise TypeError(f"graph file names must be strings, got {files}")
        if not manifest.get("dynamic_candidates", True):
            int(manifest["candidate_axis"]["tensorrt_profile"][0])  # a static export states its N
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ModelFileError(f"{path}: unreadable export manifest: {exc}") from exc
    for name, fname in files.items():
        f = d / fname
        if not f.is_file():
            raise ModelFileError(
                f"{d}: missing {fname} (listed in {EXPORT_MANIFEST}); re-run `embodied-wm export`"
            )
        if verify_hashes and sha256_file(f) != graphs[name].get("sha256"):
            raise ModelFileError(
                f"{f}: file does not match {EXPORT_MANIFEST} (sha256 differs: corrupt, truncated or "
                "replaced); re-run `embodied-wm export`"
            )
    _, model_id = read_config(d)
    if model_id != manifest.get("model_id"):
        raise ModelFileError(
            f"{d}: {CONFIG_FILE} is model {model_id} but {EXPORT_MANIFEST} says {manifest.get('model_id')}"
        )
    return dict(manifest)


def checkpoint_model_id(model_dir: Path) -> str:
    """The model_id the checkpoint's files hash to (not merely the one config.json claims), so an edited
    checkpoint never reuses an export of the old one."""
    # lazy: torch is heavy and optional here: loaded only when this path runs
    from embodied_wm.model.checkpoint import WEIGHTS_FILE, compute_model_id

    cfg, _ = read_config(model_dir)
    return compute_model_id(model_dir / WEIGHTS_FILE, cfg)


def ensure_onnx(model_dir: str | Path, cache_dir: str | Path | None = None, opset: int = 17) -> Path:
    """A directory holding a verified ONNX export of ``model_dir``: the directory itself if it is an
    export, else ``<cache>/onnx/<model_id>-opset<opset>`` (exported there on first use)."""
    d = require_model_dir(model_dir)
    if is_export_dir(d):
        load_manifest(d)
        return d
    model_id = checkpoint_model_id(d)
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = target / "onnx" / f"{model_id}-opset{opset}"
    if is_export_dir(target):
        try:
            manifest = load_manifest(target)
            if (
                manifest.get("model_id") == model_id
                and manifest.get("opset") == opset
                and int(manifest.get("format_version", 1)) >= FORMAT_VERSION
            ):
                return target
        except ModelFileError as exc:
            log.warning("cached ONNX export unusable, exporting again: %s", exc)
    log.info("exporting %s to ONNX (cache %s)", d, target)
    export_onnx(d, target, opset=opset)
    return target
