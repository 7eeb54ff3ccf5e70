"""Choosing a backend: ``create_backend(name, model_dir, device, **opts)``.

``name="auto"`` walks the candidates fastest first and takes the first that really starts:

  1. tensorrt     (CUDA)   TensorRT engines
  2. onnxruntime  (CUDA)   ORT with the TensorRT / CUDA execution provider
  3. pytorch      (CUDA)   eager PyTorch, fp16 autocast
  4. onnxruntime  (CPU)    ORT's CPU kernels beat eager PyTorch on small convnets at batch 1
  5. pytorch      (CPU)

Each is first checked with a cheap probe of the real libraries (is the module importable, does the
build offer a GPU provider, is a CUDA device visible, is there a checkpoint for PyTorch); only a candidate
that passes is constructed. Why each earlier candidate was skipped is logged and kept in
``backend.selection`` / ``backend.describe()["skipped"]``, so "why am I on the CPU?" has an answer.

An explicit ``name`` is constructed directly; if it cannot run here it raises BackendUnavailableError
with one message saying why. Bad model files raise ModelFileError in both modes (falling back to another
backend cannot fix a corrupt model).
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embodied_wm.errors import ConfigError
from embodied_wm.model.preprocess import modality_spec
from embodied_wm.resources import package_file_candidates
from embodied_wm.runtime.base import Backend, BackendError, BackendUnavailableError, ModelFileError
from embodied_wm.runtime.baselines import CopyLastBackend, LinearBackend
from embodied_wm.runtime.learned import read_config, require_model_dir
from embodied_wm.runtime.onnxruntime_backend import GPU_PROVIDERS, OnnxRuntimeBackend, available_providers
from embodied_wm.runtime.registry import BACKENDS, BASELINE_BACKENDS, LEARNED_BACKENDS, device_problem
from embodied_wm.runtime.tensorrt_backend import NOT_FOUND_MSG, TensorRTBackend, tensorrt_flavour_present
from embodied_wm.runtime.torch_backend import TorchBackend, cuda_available

log = logging.getLogger(__name__)

NAMES = BACKENDS
LEARNED = LEARNED_BACKENDS
BASELINES = BASELINE_BACKENDS
#: (backend, device) in the order ``auto`` tries them.
AUTO_ORDER: tuple[tuple[str, str], ...] = (
    ("tensorrt", "cuda"),
    ("onnxruntime", "cuda"),
    ("pytorch", "cuda"),
    ("onnxruntime", "cpu"),
    ("pytorch", "cpu"),
)


def probe(name: str, device: str, model_dir: Path | None = None) -> str | None:
    """None when ``name`` on ``device`` looks runnable here, else the reason it is not. Uses the real
    libraries (importability, execution providers, CUDA visibility); constructing can still fail."""
    if name == "tensorrt":
        if tensorrt_flavour_present() is None:
            return NOT_FOUND_MSG

        ok, why = cuda_available()
        return None if ok else f"TensorRT needs a CUDA device through PyTorch: {why}"
    if name == "onnxruntime":
        if importlib.util.find_spec("onnxruntime") is None:
            return "ONNX Runtime: python module 'onnxruntime' not found"
        if device == "cuda":
            have = available_providers()
            if not any(p in have for p in GPU_PROVIDERS):
                return (
                    "ONNX Runtime: this build has no CUDA/TensorRT execution provider "
                    f"(available: {', '.join(have)}; install onnxruntime-gpu)"
                )
        return None
    if name == "pytorch":
        if importlib.util.find_spec("torch") is None:
            return "PyTorch: python module 'torch' not found"
        if model_dir is not None and not (model_dir / "model.safetensors").is_file():
            return f"PyTorch: {model_dir} has no model.safetensors (an ONNX-only export)"
        if device == "cuda":
            ok, why = cuda_available()
            return None if ok else f"PyTorch CUDA: {why}"
        return None
    if name in BASELINES:
        return None
    raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")


def _factory(name: str) -> Callable[..., Backend]:
    if name == "tensorrt":
        return TensorRTBackend
    if name == "onnxruntime":
        return OnnxRuntimeBackend
    if name == "pytorch":
        return TorchBackend

    return CopyLastBackend if name == "copy_last" else LinearBackend


#: Option spellings shared across backends -> each backend's own parameter name.
_ALIASES = {"onnxruntime": {"threads": "intra_op_threads"}}


def _kwargs_for(name: str, opts: dict[str, Any], strict: bool) -> dict[str, Any]:
    """The subset of ``opts`` that backend ``name`` accepts (after aliases). ``strict``: unknown options
    are an error (explicit choice); otherwise they are dropped (auto passes one option set to all)."""
    params = inspect.signature(_factory(name)).parameters
    out: dict[str, Any] = {}
    unknown = []
    for key, val in opts.items():
        key2 = _ALIASES.get(name, {}).get(key, key)
        if key2 in params and key2 not in ("model_dir", "device"):
            out[key2] = val
        else:
            unknown.append(key)
    if unknown and strict:
        accepted = sorted(k for k in params if k not in ("self", "model_dir", "device"))
        raise ConfigError(f"backend {name!r} does not take option(s) {unknown}; it accepts {accepted}")
    return out


def _baseline(name: str, model_dir: Path | None, opts: dict[str, Any]) -> Backend:
    """Baselines take image size / horizon / dt from the model's config when a model is given, so they
    are compared with the model at the same resolution and horizon."""
    kw = dict(opts)
    spec = None
    if model_dir is not None:
        cfg, _ = read_config(require_model_dir(model_dir))
        kw.setdefault("image_size", (cfg.image_size, cfg.image_size))
        kw.setdefault("horizon", cfg.horizon)
        kw.setdefault("dt_ns", cfg.dt_ns)
        kw.setdefault("action_dim", cfg.action_dim)
        spec = modality_spec(cfg)
    be = _factory(name)(**_kwargs_for(name, kw, strict=True))
    if spec is not None:
        be.spec = spec  # the fallback for a model gets the model's inputs, not the defaults
    return be


def create_backend(
    name: str = "auto",
    model_dir: str | Path | None = None,
    device: str = "auto",
    **opts: Any,
) -> Backend:
    """A ready Backend. ``name``: auto | tensorrt | onnxruntime | pytorch | copy_last | linear.
    ``device``: auto | cpu | cuda. ``opts`` go to the backend (e.g. precision, threads, cache_dir,
    force_engine_update, cuda_graph, compile)."""
    if name not in NAMES:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    problem = device_problem(device)
    if problem:
        raise ConfigError(f"device {problem}")
    mdir = Path(model_dir) if model_dir is not None else None

    if name in BASELINES:
        be = _baseline(name, mdir, opts)
        be.selection = {"requested": name, "chosen": name, "device": "cpu", "skipped": []}
        return be

    mdir = require_model_dir(mdir)  # a missing/invalid model is a ModelFileError whatever the backend
    if name != "auto":
        dev = "cuda" if name == "tensorrt" and device == "auto" else device
        be = _factory(name)(mdir, device=dev, **_kwargs_for(name, opts, strict=True))
        be.selection = {
            "requested": name,
            "chosen": name,
            "device": getattr(be, "device", dev),
            "skipped": [],
        }
        return be

    skipped: list[dict[str, str]] = []
    want_cuda = device not in ("cpu",)
    want_cpu = device in ("auto", "cpu")
    for cand, dev in AUTO_ORDER:
        label = f"{cand} ({dev})"
        if dev == "cuda" and not want_cuda:
            skipped.append({"backend": label, "reason": f"device={device!r} requested"})
            continue
        if dev == "cpu" and not want_cpu:
            skipped.append({"backend": label, "reason": f"device={device!r} requested"})
            continue
        reason = probe(cand, dev, mdir)
        if reason is not None:
            skipped.append({"backend": label, "reason": reason})
            continue
        cand_dev = device if (dev == "cuda" and device.startswith("cuda:")) else dev
        try:
            be = _factory(cand)(mdir, device=cand_dev, **_kwargs_for(cand, opts, strict=False))
        except ModelFileError:
            raise
        except BackendUnavailableError as exc:
            skipped.append({"backend": label, "reason": str(exc)})
            continue
        except BackendError as exc:  # e.g. a TensorRT build failure: a slower backend may still work
            log.warning("backend %s failed to start, trying the next: %s", label, exc)
            skipped.append({"backend": label, "reason": f"failed to start: {exc}"})
            continue
        be.selection = {"requested": "auto", "chosen": cand, "device": dev, "skipped": skipped}
        log.info(
            "backend auto: chose %s; skipped: %s",
            label,
            "; ".join(f"{s['backend']}: {s['reason']}" for s in skipped) or "none",
        )
        return be
    raise BackendUnavailableError(
        "no backend could run this model: " + "; ".join(f"{s['backend']}: {s['reason']}" for s in skipped)
    )


# ------------------------------------------------------------------ model lookup and fallback
def model_dir_candidates() -> list[Path]:
    """Where the package's shipped model may be: share/embodied_wm/models/tiny, then <repo>/models/tiny."""
    return package_file_candidates("models", "tiny")


def default_model_dir() -> Path | None:
    """The package's shipped model (first candidate holding files), or None."""
    return next((c for c in model_dir_candidates() if model_dir_present(c)), None)


def model_dir_present(path: Path) -> bool:
    """A model directory is usable only if it holds files (a symlink install can leave empty folders)."""
    return path.is_dir() and any(p.is_file() for p in path.iterdir())


def skipped_reasons(backend: Any) -> dict[str, str]:
    """Why ``auto`` passed over faster backends (runtime.select keeps a list of {backend, reason})."""
    info = getattr(backend, "selection", None) or backend.describe()
    raw = info.get("skipped", []) if isinstance(info, dict) else []
    out: dict[str, str] = {}
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    for item in raw or []:
        if isinstance(item, dict):
            out[str(item.get("backend", "?"))] = str(item.get("reason", ""))
    return out


def create_backend_with_fallback(
    name: str, model: str, fallback: str, device: str, warn: Callable[[str], None]
) -> tuple[Backend, dict[str, str]]:
    """(backend, skipped) where ``skipped`` says why each preferred option was not used (for diagnostics).

    A baseline name is used as is (sized like the model when one is present). Otherwise the model
    directory (``model`` or the package's models/tiny) must exist and the backend must start; if either
    fails we warn and run ``fallback`` so the robot still gets (baseline) predictions, and diagnostics
    say so.
    """
    model_dir: Path | None = Path(model).expanduser() if model else default_model_dir()
    present = model_dir is not None and model_dir_present(model_dir)
    if name in BASELINE_BACKENDS:
        return create_backend(name, model_dir=model_dir if present else None, device=device), {}
    skipped: dict[str, str] = {}
    if not present:
        where = (
            str(model_dir)
            if model_dir
            else "models/tiny has no model files (looked in "
            + ", ".join(map(str, model_dir_candidates()))
            + ")"
        )
        skipped[name] = f"model directory missing: {where}"
        warn(f"no model: {where}; using the {fallback} baseline")
    else:
        try:
            backend = create_backend(name, model_dir=model_dir, device=device)
            return backend, skipped_reasons(backend)
        except (BackendError, ImportError, OSError, ValueError) as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
            warn(f"backend {name!r} with model {model_dir} failed ({exc}); using the {fallback} baseline")
    try:
        # Sized like the model (resolution, horizon, dt) when its config is readable.
        return create_backend(fallback, model_dir=model_dir if present else None, device=device), skipped
    except (BackendError, OSError, ValueError):
        return create_backend(fallback, model_dir=None, device=device), skipped
