"""Model hyper-parameters as data: a frozen dataclass read from / written to JSON.

Named configs live in ``model/configs/<name>.json``; a checkpoint directory carries its own
``config.json`` (which also holds the input normalisation statistics measured on the training data),
so a trained model never depends on the package's defaults.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embodied_wm.errors import ConfigError
from embodied_wm.sensing.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


#: Sane bounds of every size in a config, checked before a model is built from it: a config from a file
#: must not be able to ask for gigabytes (latent_dim 60000 is a 40 GB GRU) or crash PyTorch with a
#: negative width. The shipped configs are well inside (base: 128 px, latent 512).
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "image_size": (8, 512),
    "horizon": (1, 128),
    "audio_sample_rate": (MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
    "n_mels": (1, 256),
    "n_fft": (1, 65536),
    "hop_length": (1, 65536),
    "proprio_dim": (1, 256),
    "action_dim": (1, 256),
    "embed_dim": (1, 1024),
    "latent_dim": (1, 2048),
}
#: Bounds of each entry of the tuple-valued sizes (and their lengths).
TUPLE_BOUNDS: dict[str, tuple[int, int, int]] = {
    # name: (length, min, max)
    "tactile_shape": (2, 1, 256),
    "enc_channels": (3, 1, 512),
    "dec_channels": (3, 1, 512),
}
MAX_AFFORDANCE_CHANNELS = 32
#: dt_s and audio_window_s in (0, this]; horizon * dt_s stays far below the day of stamp headroom
#: sensing keeps (sensing.common.MAX_STAMP_SEC).
MAX_SECONDS = 10.0


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass(frozen=True)
class ModelConfig:
    name: str = "tiny"
    #: Square image side the model sees and predicts (pixels).
    image_size: int = 64
    #: Number of predicted future frames K and their spacing.
    horizon: int = 8
    dt_s: float = 0.1
    # --- sensing contract (must match observation.ModalitySpec) ---
    audio_sample_rate: int = 16000
    audio_window_s: float = 0.1
    n_mels: int = 32
    n_fft: int = 400
    hop_length: int = 160
    tactile_shape: tuple[int, int] = (5, 5)
    proprio_dim: int = 6
    action_dim: int = 6
    affordance_channels: tuple[str, ...] = ("contact", "movable")
    # --- widths ---
    #: Channels of the image encoder at 1/2, 1/4, 1/8 resolution (the first two are skip features).
    enc_channels: tuple[int, int, int] = (16, 32, 64)
    #: Channels of the frame decoder at 1/8, 1/4, 1/2 resolution.
    dec_channels: tuple[int, int, int] = (64, 32, 16)
    #: Embedding width of each non-image modality.
    embed_dim: int = 64
    #: World-state latent D (also the GRU hidden size of the dynamics).
    latent_dim: int = 256
    # --- input normalisation (set from training data; x_norm = (x - mean) / std) ---
    proprio_mean: tuple[float, ...] = (0.0,) * 6
    proprio_std: tuple[float, ...] = (1.0,) * 6
    action_mean: tuple[float, ...] = (0.0,) * 6
    action_std: tuple[float, ...] = (1.0,) * 6
    #: Tactile readings are compressed with log1p(x / tactile_scale) (contact forces are heavy-tailed).
    tactile_scale: float = 1.0
    #: Log-mel normalisation (dB-like log values are shifted/scaled to roughly unit range).
    mel_mean: float = -10.0
    mel_std: float = 4.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def audio_window_samples(self) -> int:
        return round(self.audio_sample_rate * self.audio_window_s)

    @property
    def mel_frames(self) -> int:
        """Number of STFT frames over one audio window (no centre padding)."""
        return 1 + (self.audio_window_samples - self.n_fft) // self.hop_length

    @property
    def dt_ns(self) -> int:
        return round(self.dt_s * 1e9)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        # JSON has no tuples; lists round-trip through from_dict.
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"a model config is a JSON object, got {type(d).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(map(str, unknown))}")
        kwargs: dict[str, Any] = {}
        for k, v in d.items():
            default = getattr(cls, k, None) if k != "extra" else None
            kwargs[k] = tuple(v) if isinstance(v, list) and isinstance(default, tuple) else v
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def replace(self, **changes: Any) -> ModelConfig:
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """ConfigError unless every field has the right type and lies within its bounds (INT_BOUNDS,
        TUPLE_BOUNDS, ...). Types and bounds come first, so nothing below computes with garbage."""
        if not isinstance(self.name, str):
            raise ConfigError(f"name must be a string, got {self.name!r}")
        for key, (lo, hi) in INT_BOUNDS.items():
            v = getattr(self, key)
            if not _is_int(v) or not lo <= v <= hi:
                raise ConfigError(f"{key} must be an integer in {lo}..{hi}, got {v!r}")
        for key, (length, lo, hi) in TUPLE_BOUNDS.items():
            v = getattr(self, key)
            if not (
                isinstance(v, tuple) and len(v) == length and all(_is_int(x) and lo <= x <= hi for x in v)
            ):
                raise ConfigError(f"{key} must be {length} integers in {lo}..{hi}, got {v!r}")
        for key in ("dt_s", "audio_window_s"):
            v = getattr(self, key)
            if not _is_real(v) or not 0 < v <= MAX_SECONDS:
                raise ConfigError(f"{key} must be a number in (0, {MAX_SECONDS:g}], got {v!r}")
        for key in ("tactile_scale", "mel_std"):
            v = getattr(self, key)
            if not _is_real(v) or v <= 0:
                raise ConfigError(f"{key} must be a finite number > 0, got {v!r}")
        if not _is_real(self.mel_mean):
            raise ConfigError(f"mel_mean must be a finite number, got {self.mel_mean!r}")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a JSON object, got {self.extra!r}")
        channels = self.affordance_channels
        if not (isinstance(channels, tuple) and all(isinstance(c, str) and c for c in channels)):
            raise ConfigError(f"affordance_channels must be a list of names, got {channels!r}")
        if not 1 <= len(channels) <= MAX_AFFORDANCE_CHANNELS:
            raise ConfigError(
                f"affordance_channels must have 1..{MAX_AFFORDANCE_CHANNELS} names, got {len(channels)}"
            )
        if self.image_size % 8:
            raise ConfigError(f"image_size must be a multiple of 8, got {self.image_size}")
        if self.n_fft > self.audio_window_samples:
            raise ConfigError(
                f"n_fft ({self.n_fft}) longer than the audio window ({self.audio_window_samples} samples)"
            )
        if self.hop_length > self.n_fft:
            raise ConfigError(f"hop_length ({self.hop_length}) must not exceed n_fft ({self.n_fft})")
        for name, n in (("proprio", self.proprio_dim), ("action", self.action_dim)):
            for part in ("mean", "std"):
                v = getattr(self, f"{name}_{part}")
                if not (isinstance(v, tuple) and len(v) == n and all(_is_real(x) for x in v)):
                    raise ConfigError(f"{name}_{part} must be {n} finite numbers, got {v!r}")
            if any(x <= 0 for x in getattr(self, f"{name}_std")):
                raise ConfigError(f"{name}_std entries must be > 0")


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str | Path) -> ModelConfig:
    """A config by name ('tiny', 'base'), a JSON file, or a checkpoint directory holding config.json
    (whose 'config' key holds the model config)."""
    p = Path(name_or_path)
    if p.is_dir():
        p = p / "config.json"
    elif not p.suffix and not p.exists():
        p = CONFIG_DIR / f"{name_or_path}.json"
        if not p.is_file():
            raise FileNotFoundError(
                f"unknown model config {str(name_or_path)!r}; available: {', '.join(available_configs())}"
            )
    try:
        data = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: not a JSON model config: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    try:
        return ModelConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
