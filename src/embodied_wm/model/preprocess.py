"""Observation -> model input tensors, in numpy (no torch needed at runtime).

Two stages so training can cache the expensive, statistics-independent part:
  1. ``raw_frame``: resize the image, log-mel the audio window, flatten tactile/proprio/action, presence
     mask. Cached per frame by the dataset.
  2. ``normalize`` + ``assemble``: apply the config's normalisation statistics and stack the current and
     previous frame into the batch-1 dict keyed by ``ENCODER_INPUTS``.
``encoder_inputs`` runs both and is what the runtime backends call for every observation, so training
and inference share one code path.

A missing modality is zero in its input tensor AND 0 in ``mask``; the encoder ignores the tensor then and
substitutes a learned "missing" embedding (zeros are never presented as a real reading).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from embodied_wm.errors import InvalidDataError
from embodied_wm.model.config import ModelConfig
from embodied_wm.observation import MODALITIES, ModalitySpec, Observation
from embodied_wm.sensing.image import resize_rgb

#: Input names of the encoder graph, in argument order (re-exported by world_model).
ENCODER_INPUTS: tuple[str, ...] = ("image", "prev_image", "audio_mel", "tactile", "proprio", "action", "mask")

#: Per-frame raw arrays the dataset caches (no batch dimension).
RAW_KEYS: tuple[str, ...] = ("image", "audio_mel", "tactile", "proprio", "action", "mask")


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.ascontiguousarray(resize_rgb(image, (size, size)))


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1], area-normalised (Slaney style)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_pts = np.linspace(hz_to_mel(np.array(20.0)), hz_to_mel(np.array(sample_rate / 2)), n_mels + 2)
    hz_pts = mel_to_hz(mel_pts)
    fb = np.zeros((n_mels, fft_freqs.size), np.float64)
    for i in range(n_mels):
        lo, mid, hi = hz_pts[i], hz_pts[i + 1], hz_pts[i + 2]
        up = (fft_freqs - lo) / (mid - lo)
        down = (hi - fft_freqs) / (hi - mid)
        fb[i] = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return fb.astype(np.float32)


def log_mel(audio: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Log-mel spectrogram [n_mels, mel_frames] of the window ending at the frame stamp.

    The window is taken from the END of ``audio`` (the newest samples); a short buffer is zero-padded at
    the front (silence before the sensor started)."""
    n = cfg.audio_window_samples
    x = np.asarray(audio, np.float32).reshape(-1)[-n:]
    if x.size < n:
        x = np.concatenate([np.zeros(n - x.size, np.float32), x])
    frames = np.lib.stride_tricks.sliding_window_view(x, cfg.n_fft)[:: cfg.hop_length][: cfg.mel_frames]
    window = np.hanning(cfg.n_fft).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # [T, F]
    mel = mel_filterbank(cfg.audio_sample_rate, cfg.n_fft, cfg.n_mels) @ power.T  # [M, T]
    return np.log(mel + 1e-8).astype(np.float32)


def raw_frame(obs: Observation, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Statistics-independent per-frame arrays (see module doc). Missing modalities are zeros + mask 0."""
    s = cfg.image_size
    present = obs.present
    out: dict[str, np.ndarray] = {
        "image": np.zeros((s, s, 3), np.uint8),
        "audio_mel": np.zeros((cfg.n_mels, cfg.mel_frames), np.float32),
        "tactile": np.zeros(cfg.tactile_shape, np.float32),
        "proprio": np.zeros(cfg.proprio_dim, np.float32),
        "action": np.zeros(cfg.action_dim, np.float32),
        "mask": np.array([1.0 if present[m] else 0.0 for m in MODALITIES], np.float32),
    }
    if obs.image is not None:
        img = np.asarray(obs.image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise InvalidDataError(f"Observation.image must be HxWx3 uint8, got {img.shape} {img.dtype}")
        out["image"] = _resize(img, s)
    if obs.audio is not None:
        out["audio_mel"] = log_mel(obs.audio, cfg)
    if obs.tactile is not None:
        out["tactile"] = np.asarray(obs.tactile, np.float32).reshape(cfg.tactile_shape)
    if obs.proprio is not None:
        out["proprio"] = _fit(obs.proprio, cfg.proprio_dim)
    if obs.action is not None:
        out["action"] = _fit(obs.action, cfg.action_dim)
    return out


def _fit(v: np.ndarray, n: int) -> np.ndarray:
    """Vector of length n: longer ones are cut, shorter ones zero-padded (e.g. a robot with fewer joints)."""
    v = np.asarray(v, np.float32).reshape(-1)[:n]
    return np.pad(v, (0, n - v.size)) if v.size < n else v


def normalize(raw: dict[str, np.ndarray], cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Apply the config's statistics. Works on one frame or on stacked frames (leading axes kept).
    Masked entries stay exactly zero so the (ignored) input is deterministic."""
    mask = raw["mask"]
    m = {name: mask[..., i : i + 1] for i, name in enumerate(MODALITIES)}
    tact = np.log1p(np.maximum(raw["tactile"], 0.0) / cfg.tactile_scale)
    return {
        "image": raw["image"],
        "audio_mel": ((raw["audio_mel"] - cfg.mel_mean) / cfg.mel_std * m["audio"][..., None]).astype(
            np.float32
        ),
        "tactile": (tact * m["tactile"][..., None]).astype(np.float32),
        "proprio": _standardize(raw["proprio"], cfg.proprio_mean, cfg.proprio_std, m["proprio"]),
        "action": _standardize(raw["action"], cfg.action_mean, cfg.action_std, m["action"]),
        "mask": mask.astype(np.float32),
    }


def _standardize(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], m: np.ndarray) -> np.ndarray:
    return ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32) * m).astype(np.float32)


def _chw(image_u8: np.ndarray) -> np.ndarray:
    return np.moveaxis(image_u8, -1, -3).astype(np.float32) / np.float32(255.0)


def assemble(norm: dict[str, np.ndarray], prev_image_u8: np.ndarray | None) -> dict[str, np.ndarray]:
    """Unbatched normalised frame (+ previous frame's uint8 image) -> batch-1 encoder inputs."""
    prev = norm["image"] if prev_image_u8 is None else prev_image_u8
    out = {
        "image": _chw(norm["image"]),
        "prev_image": _chw(prev),
        "audio_mel": norm["audio_mel"][None],
        "tactile": norm["tactile"][None],
        "proprio": norm["proprio"],
        "action": norm["action"],
        "mask": norm["mask"],
    }
    return {k: np.ascontiguousarray(out[k][None], dtype=np.float32) for k in ENCODER_INPUTS}


def encoder_inputs(obs: Observation, prev: Observation | None, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Batch-1 float32 encoder inputs for ``obs``. ``prev`` is the previous camera frame's observation
    (None at start / after a reset: the current image is used, i.e. "no motion seen yet")."""
    norm = normalize(raw_frame(obs, cfg), cfg)
    prev_img = None
    if prev is not None and prev.image is not None and obs.image is not None:
        prev_img = _resize(np.asarray(prev.image), cfg.image_size)
    return assemble(norm, prev_img)


def batch_encoder_inputs(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate batch-1 dicts along the batch axis."""
    if not items:
        raise InvalidDataError("batch_encoder_inputs: empty list")
    return {k: np.concatenate([d[k] for d in items], axis=0) for k in ENCODER_INPUTS}


def normalize_stats(raw: dict[str, np.ndarray]) -> dict[str, Any]:
    """Normalisation statistics from stacked raw frames (training data), present entries only."""
    mask = raw["mask"].reshape(-1, len(MODALITIES)).astype(bool)
    stats: dict[str, Any] = {}
    for i, name in ((3, "proprio"), (4, "action")):
        vals = raw[name].reshape(mask.shape[0], -1)[mask[:, i]]
        if len(vals):
            stats[f"{name}_mean"] = tuple(float(x) for x in vals.mean(0))
            stats[f"{name}_std"] = tuple(float(max(x, 1e-3)) for x in vals.std(0))
    mel = raw["audio_mel"][mask[:, 1]]
    if len(mel):
        stats["mel_mean"], stats["mel_std"] = float(mel.mean()), float(max(mel.std(), 1e-3))
    tac = raw["tactile"].reshape(mask.shape[0], -1)[mask[:, 2]]
    if len(tac) and (tac > 0).any():
        # Scale so a typical contact reading maps to log1p(1): median of the non-zero taxels.
        stats["tactile_scale"] = float(max(np.median(tac[tac > 0]), 1e-6))
    return stats


def modality_spec(cfg: ModelConfig) -> ModalitySpec:
    """The inputs a model with config ``cfg`` consumes (what the Aligner must produce for it)."""
    return ModalitySpec(
        audio_sample_rate=cfg.audio_sample_rate,
        audio_window_s=cfg.audio_window_s,
        tactile_shape=(int(cfg.tactile_shape[0]), int(cfg.tactile_shape[1])),
        proprio_dim=cfg.proprio_dim,
        action_dim=cfg.action_dim,
    )
