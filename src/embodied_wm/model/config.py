"""Model hyper-parameters as data: a frozen dataclass read from / written to JSON.

Named configs live in ``model/configs/<name>.json``; a checkpoint directory carries its own
``config.json`` (which also holds the input normalisation statistics measured on the training data),
so a trained model never depends on the package's defaults.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embodied_wm.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


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
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(unknown)}")
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
        if self.image_size % 8:
            raise ConfigError(f"image_size must be a multiple of 8, got {self.image_size}")
        if self.n_fft > self.audio_window_samples:
            raise ConfigError("n_fft longer than the audio window")
        for name, n in (("proprio", self.proprio_dim), ("action", self.action_dim)):
            if len(getattr(self, f"{name}_mean")) != n or len(getattr(self, f"{name}_std")) != n:
                raise ConfigError(f"{name}_mean/{name}_std must have {n} entries")
        if not self.affordance_channels:
            raise ConfigError("affordance_channels must not be empty")


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
    data = json.loads(p.read_text())
    if "config" in data and isinstance(data["config"], dict):
        data = data["config"]
    return ModelConfig.from_dict(data)
