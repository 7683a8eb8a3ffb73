"""ResNet encoder of the photo: RGB (N, 3, H, W) in [-1, 1] -> (N, C_cond, H/f, W/f) features.

The features sit at the latent resolution (f = 4 by default, the VAE's factor) and are concatenated
with the noisy latent of every frequency slice inside the denoiser (paper section 4.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ImageEncoderConfig
from .layers import Downsample, ResBlock, group_norm

__all__ = ["ImageEncoder"]


class ImageEncoder(nn.Module):
    def __init__(self, cfg: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        chs = [cfg.base_channels * m for m in cfg.channel_mults]
        self.conv_in = nn.Conv2d(cfg.in_channels, chs[0], 3, padding=1)
        self.levels = nn.ModuleList()
        c = chs[0]
        for i, c_out in enumerate(chs):
            level = nn.Module()
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(c, c_out, groups=cfg.norm_groups))
                c = c_out
            level.blocks = nn.ModuleList(blocks)
            level.down = Downsample(c) if i < len(chs) - 1 else None
            self.levels.append(level)
        self.norm_out = group_norm(c, cfg.norm_groups)
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, padding=1)

    @property
    def downsample_factor(self) -> int:
        return self.config.downsample_factor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f = self.downsample_factor
        if image.ndim != 4 or image.shape[1] != self.config.in_channels:
            raise ValueError(f"expected (N, {self.config.in_channels}, H, W) images, got {tuple(image.shape)}")
        if image.shape[-1] % f or image.shape[-2] % f:
            raise ValueError(f"H and W must be multiples of {f}, got {tuple(image.shape[-2:])}")
        h = self.conv_in(image)
        for level in self.levels:
            for block in level.blocks:
                h = block(h)
            if level.down is not None:
                h = level.down(h)
        return self.conv_out(F.silu(self.norm_out(h)))
