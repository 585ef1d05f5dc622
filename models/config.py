"""Configuration of the fusion DiT: one tower config per modality, shared by every size of the model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TowerConfig:
    """One WanModel-style tower (video or audio). Defaults are the real Ovi video tower."""

    patch_size: tuple[int, ...] = (1, 2, 2)
    in_dim: int = 48
    out_dim: int = 48
    dim: int = 3072
    ffn_dim: int = 14336
    freq_dim: int = 256
    num_heads: int = 24
    num_layers: int = 30
    text_len: int = 512
    text_dim: int = 4096
    eps: float = 1e-6
    # Audio positions are scaled so that audio token i lines up with video latent frame ~0.19676*i.
    temporal_rope_scaling_factor: float = 1.0

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def is_video(self) -> bool:
        return len(self.patch_size) == 3

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TowerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "patch_size" in kw:
            kw["patch_size"] = tuple(kw["patch_size"])
        return cls(**kw)


def _ovi_audio_tower() -> TowerConfig:
    return TowerConfig(patch_size=(1,), in_dim=20, out_dim=20, temporal_rope_scaling_factor=0.19676)


@dataclass(frozen=True)
class FusionConfig:
    """The joint model: a video tower and an audio tower of equal depth joined in every block."""

    video: TowerConfig = field(default_factory=TowerConfig)
    audio: TowerConfig = field(default_factory=_ovi_audio_tower)

    def __post_init__(self):
        if self.video.num_layers != self.audio.num_layers:
            raise ValueError(
                f"FusionConfig: video and audio towers must have the same num_layers, "
                f"found video={self.video.num_layers} audio={self.audio.num_layers}"
            )

    @property
    def num_layers(self) -> int:
        return self.video.num_layers

    def to_dict(self) -> dict:
        return {"video": self.video.to_dict(), "audio": self.audio.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "FusionConfig":
        return cls(video=TowerConfig.from_dict(d["video"]), audio=TowerConfig.from_dict(d["audio"]))

    @classmethod
    def ovi(cls) -> "FusionConfig":
        """Ovi 1.0 / 1.1 (both releases share the architecture; they differ in training and clip length)."""
        return cls()
