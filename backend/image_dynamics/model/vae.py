"""KL-VAE over ONE frequency slice of a normalized spectral volume (paper section 4.1).

A slice is the 4 real channels (x_re, y_re, x_im, y_im) of one frequency k after
``motion.normalize``; the K slices of a volume go through the same VAE as a batch of K images.
Encoder: (N, 4, H, W) -> DiagonalGaussian over (N, latent_channels, H/f, W/f), f = 4 with the
default three levels. Decoder: latent -> (N, 4, H, W).

Latent whitening: after the VAE is trained, ``fit_latent_stats`` measures the per-channel mean and
standard deviation of the latents over data, stored as buffers (so they are saved with the
weights). The diffusion model lives in the whitened space: ``to_latent`` / ``from_latent``.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .config import VAEConfig
from .layers import Downsample, ResBlock, SpatialSelfAttention, Upsample, group_norm

__all__ = ["DiagonalGaussian", "KLVAE"]


class DiagonalGaussian:
    """N(mean, exp(logvar)) per latent element."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mean = mean
        self.logvar = logvar
        self.std = torch.exp(0.5 * logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else self.mean.device
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=device)
        return self.mean + self.std * noise.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) summed over each sample's elements: shape (N,)."""
        kl = 0.5 * (self.mean.pow(2) + torch.exp(self.logvar) - 1.0 - self.logvar)
        return kl.flatten(1).sum(dim=1)


class _Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
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
        self.mid1 = ResBlock(c, c, groups=cfg.norm_groups)
        self.mid_attn = SpatialSelfAttention(c, 1, cfg.norm_groups) if cfg.mid_attention else nn.Identity()
        self.mid2 = ResBlock(c, c, groups=cfg.norm_groups)
        self.norm_out = group_norm(c, cfg.norm_groups)
        self.conv_out = nn.Conv2d(c, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.levels:
            for block in level.blocks:
                h = block(h)
            if level.down is not None:
                h = level.down(h)
        h = self.mid2(self.mid_attn(self.mid1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class _Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.channel_mults]
        c = chs[-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, c, 3, padding=1)
        self.mid1 = ResBlock(c, c, groups=cfg.norm_groups)
        self.mid_attn = SpatialSelfAttention(c, 1, cfg.norm_groups) if cfg.mid_attention else nn.Identity()
        self.mid2 = ResBlock(c, c, groups=cfg.norm_groups)
        self.levels = nn.ModuleList()
        for i in reversed(range(len(chs))):
            level = nn.Module()
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(c, chs[i], groups=cfg.norm_groups))
                c = chs[i]
            level.blocks = nn.ModuleList(blocks)
            level.up = Upsample(c) if i > 0 else None
            self.levels.append(level)
        self.norm_out = group_norm(c, cfg.norm_groups)
        self.conv_out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid2(self.mid_attn(self.mid1(self.conv_in(z))))
        for level in self.levels:
            for block in level.blocks:
                h = block(h)
            if level.up is not None:
                h = level.up(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class KLVAE(nn.Module):
    """KL-regularised autoencoder of one 4-channel frequency slice, with latent whitening buffers."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = _Encoder(cfg)
        self.decoder = _Decoder(cfg)
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))

    @property
    def downsample_factor(self) -> int:
        return self.config.downsample_factor

    def _check_input(self, x: torch.Tensor) -> None:
        f = self.downsample_factor
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected (N, {self.config.in_channels}, H, W) slices, got {tuple(x.shape)}")
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"H and W must be multiples of {f}, got {tuple(x.shape[-2:])}")

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        self._check_input(x)
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        lo, hi = self.config.logvar_clamp
        return DiagonalGaussian(mean, logvar.clamp(lo, hi))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, *, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Reconstruction and posterior (training): decode a posterior sample (or its mean)."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample else posterior.mode()
        return self.decode(z), posterior

    # -- latent whitening ------------------------------------------------------------------
    def _stats_shape(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.latent_mean.view(1, -1, 1, 1).to(z.dtype), self.latent_std.view(1, -1, 1, 1).to(z.dtype)

    @torch.no_grad()
    def fit_latent_stats(
        self, batches: Iterable[torch.Tensor], *, use_samples: bool = False, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Set ``latent_mean`` / ``latent_std`` (per channel) from batches of normalized slices.

        By default the posterior means are measured (what ``to_latent`` returns by default);
        ``use_samples=True`` measures posterior samples instead. Accumulates in float64.
        """
        n = 0
        s1 = s2 = None
        for x in batches:
            x = x.to(self.latent_mean.device, torch.float32)
            post = self.encode(x)
            z = post.sample(generator) if use_samples else post.mode()
            z = z.double().transpose(0, 1).reshape(z.shape[1], -1)
            s1 = z.sum(1) if s1 is None else s1 + z.sum(1)
            s2 = (z * z).sum(1) if s2 is None else s2 + (z * z).sum(1)
            n += z.shape[1]
        if n < 2:
            raise ValueError("fit_latent_stats needs data")
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0.0) * n / (n - 1)
        self.latent_mean.copy_(mean.float())
        self.latent_std.copy_(var.sqrt().clamp_min(1e-6).float())
        return self.latent_mean.clone(), self.latent_std.clone()

    def to_latent(self, x: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalized slices (N, 4, H, W) -> whitened latents (N, C, H/f, W/f)."""
        post = self.encode(x)
        z = post.sample(generator) if sample else post.mode()
        mean, std = self._stats_shape(z)
        return (z - mean) / std

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Whitened latents -> decoded normalized slices (differentiable)."""
        mean, std = self._stats_shape(z)
        return self.decode(z * std + mean)
