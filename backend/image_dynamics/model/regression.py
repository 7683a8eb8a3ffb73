"""The direct-regression baseline: photo -> normalized spectral volume in one forward pass.

What it answers. The model card compares the latent diffusion predictor with the plainest model
that could do the job: a U-Net from the RGB photo straight to the 64 channels (K = 16 frequencies
x (x_re, y_re, x_im, y_im)) of the normalized spectral volume, trained with an L1 loss on the same
cache, the same augmentation and a similar parameter count (``RegressionConfig.matching`` sizes
it to the denoiser + image encoder of a preset). A regression to the L1-optimal answer predicts the
per-pixel *median* motion given the photo: where the phase of a sway is unpredictable from one
frame, that median shrinks towards zero, which is exactly what a generative model should avoid.

Architecture: conv -> levels of GroupNorm/SiLU ResBlocks with strided-conv downsampling (spatial
self-attention at the lowest levels) -> middle block -> mirrored up path with skip connections ->
conv to 64 channels, zero-initialised (the network starts by predicting "no motion", the most
common value). It runs at the preset's resolution, reaching the denoiser's lowest resolution
(VAE factor x U-Net factor, e.g. 128 x 80 -> 8 x 5 for "cpu").

Saved folder (``RegressionPredictor.save_pretrained``): ``config.json``
(format ``image_dynamics.regression_baseline``), ``model.safetensors``, ``scales.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..motion.normalize import FrequencyScales
from .layers import Downsample, ResBlock, SpatialSelfAttention, Upsample, group_norm
from .pipeline import photo_tensor, volume_from_slices

__all__ = ["RegressionConfig", "RegressionNet", "RegressionPredictor"]

FORMAT = "image_dynamics.regression_baseline"
VERSION = 1


@dataclass
class RegressionConfig:
    in_channels: int = 3
    num_freqs: int = 16
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4, 8, 8)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (3, 4)
    mid_attention: bool = True
    num_heads: int = 4
    norm_groups: int = 8
    resolution: tuple[int, int] = (128, 80)  # (W, H)
    preset: str = "custom"
    matched_to: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)
        self.attention_levels = tuple(self.attention_levels)
        self.resolution = tuple(self.resolution)  # type: ignore[assignment]
        f = 2 ** (len(self.channel_mults) - 1)
        W, H = self.resolution
        if W % f or H % f:
            raise ValueError(f"resolution {W}x{H} must be divisible by {f}")
        if any(not 0 <= a < len(self.channel_mults) for a in self.attention_levels):
            raise ValueError("attention_levels must index channel_mults")

    @property
    def out_channels(self) -> int:
        return 4 * self.num_freqs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(format=FORMAT, version=VERSION)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RegressionConfig":
        d = dict(d)
        if d.pop("format", FORMAT) != FORMAT or d.pop("version", VERSION) != VERSION:
            raise ValueError("not a regression-baseline config of this version")
        return cls(**d)

    @classmethod
    def matching(cls, model_config, target: int | None = None) -> "RegressionConfig":
        """Sized like ``model_config`` (a ``ModelConfig``): same resolution, same lowest grid, and
        base channels chosen so the parameter count is closest to denoiser + image encoder."""
        from .image_encoder import ImageEncoder
        from .unet import Denoiser

        levels = len(model_config.vae.channel_mults) + len(model_config.denoiser.channel_mults) - 1
        mults = tuple(min(2**i, 8) for i in range(levels))
        with torch.device("meta"):
            if target is None:
                den = Denoiser(model_config.denoiser, model_config.num_freqs)
                enc = ImageEncoder(model_config.image_encoder)
                target = sum(p.numel() for p in den.parameters()) + sum(p.numel() for p in enc.parameters())
        best = None
        for base in range(4, 257, 2):
            cfg = cls(num_freqs=model_config.num_freqs, base_channels=base, channel_mults=mults,
                      attention_levels=tuple(range(max(0, levels - 2), levels)),
                      num_heads=model_config.denoiser.num_heads, norm_groups=model_config.denoiser.norm_groups,
                      resolution=tuple(model_config.resolution), preset=model_config.preset)
            with torch.device("meta"):
                n = sum(p.numel() for p in RegressionNet(cfg).parameters())
            if best is None or abs(n - target) < abs(best[0] - target):
                best = (n, cfg)
            if n > target:
                break
        assert best is not None
        best[1].matched_to = {"parameters": int(target), "what": "denoiser + image encoder",
                              "preset": model_config.preset}
        return best[1]


class RegressionNet(nn.Module):
    """U-Net: image (N, 3, H, W) in [-1, 1] -> normalized volume (N, 4K, H, W)."""

    def __init__(self, cfg: RegressionConfig) -> None:
        super().__init__()
        self.config = cfg
        chs = [cfg.base_channels * m for m in cfg.channel_mults]
        g = cfg.norm_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, chs[0], 3, padding=1)
        skip_chs = [chs[0]]
        c = chs[0]
        self.down = nn.ModuleList()
        for i, c_out in enumerate(chs):
            level = nn.Module()
            level.blocks = nn.ModuleList()
            level.attns = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                level.blocks.append(ResBlock(c, c_out, groups=g))
                level.attns.append(SpatialSelfAttention(c_out, cfg.num_heads, g) if i in cfg.attention_levels
                                   else nn.Identity())
                c = c_out
                skip_chs.append(c)
            level.down = Downsample(c) if i < len(chs) - 1 else None
            if level.down is not None:
                skip_chs.append(c)
            self.down.append(level)
        self.mid1 = ResBlock(c, c, groups=g)
        self.mid_attn = SpatialSelfAttention(c, cfg.num_heads, g) if cfg.mid_attention else nn.Identity()
        self.mid2 = ResBlock(c, c, groups=g)
        self.up = nn.ModuleList()
        for i in reversed(range(len(chs))):
            level = nn.Module()
            level.blocks = nn.ModuleList()
            level.attns = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                level.blocks.append(ResBlock(c + skip_chs.pop(), chs[i], groups=g))
                level.attns.append(SpatialSelfAttention(chs[i], cfg.num_heads, g) if i in cfg.attention_levels
                                   else nn.Identity())
                c = chs[i]
            level.up = Upsample(c) if i > 0 else None
            self.up.append(level)
        assert not skip_chs
        self.norm_out = group_norm(c, g)
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f = 2 ** (len(self.config.channel_mults) - 1)
        if image.ndim != 4 or image.shape[1] != self.config.in_channels:
            raise ValueError(f"expected (N, {self.config.in_channels}, H, W) images, got {tuple(image.shape)}")
        if image.shape[-1] % f or image.shape[-2] % f:
            raise ValueError(f"H and W must be multiples of {f}, got {tuple(image.shape[-2:])}")
        h = self.conv_in(image)
        skips = [h]
        for level in self.down:
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(h))
                skips.append(h)
            if level.down is not None:
                h = level.down(h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h)))
        for level in self.up:
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(torch.cat([h, skips.pop()], dim=1)))
            if level.up is not None:
                h = level.up(h, size=tuple(skips[-1].shape[-2:]))
        return self.conv_out(F.silu(self.norm_out(h)))


class RegressionPredictor:
    """The baseline ready to use: ``predict(image) -> S (K, 2, H, W) complex64`` like ``MotionPredictor``."""

    def __init__(self, config: RegressionConfig, net: RegressionNet, scales: FrequencyScales) -> None:
        if scales.num_freqs != config.num_freqs:
            raise ValueError(f"scales have {scales.num_freqs} frequencies, the model {config.num_freqs}")
        self.config = config
        self.net = net.eval()
        self.scales = scales
        self.device = torch.device("cpu")

    def to(self, device) -> "RegressionPredictor":
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2, sort_keys=True))
        self.scales.save(folder / "scales.json")
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": FORMAT})
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device="cpu") -> "RegressionPredictor":
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in ("config.json", "model.safetensors", "scales.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} is not a saved regression baseline: {name} is missing")
        cfg = RegressionConfig.from_dict(json.loads((folder / "config.json").read_text()))
        net = RegressionNet(cfg)
        net.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        return cls(cfg, net, FrequencyScales.load(folder / "scales.json")).to(device)

    @torch.no_grad()
    def predict(self, image: np.ndarray, *, size: tuple[int, int] | None = None, **_ignored) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> spectral volume (K, 2, H_out, W_out) complex64 (deterministic)."""
        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
        W, H = self.config.resolution
        out = self.net(photo_tensor(img, (W, H)).to(self.device)).float().cpu().numpy()[0]
        return volume_from_slices(out.reshape(self.config.num_freqs, 4, H, W), self.scales, (W, H), size)
