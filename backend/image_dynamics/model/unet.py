"""The denoiser: an LDM-style 2D U-Net over latent frequency slices, with frequency attention.

Layout. A batch of B spectral volumes is B*K latent slices, volume-major: row ``b * K + k`` is
frequency k of volume b. Every spatial layer treats the B*K slices independently; each slice gets
its own noise level embedding plus a learned embedding of its frequency index k. The photo's
features (B, C_cond, h, w) are repeated over the K slices and concatenated with the noisy latent
(input channels latent + C_cond).

Frequency coordination (paper section 4.2). After every ResNet(+spatial attention) unit, and in
the middle block, a ``FrequencyAttention`` layer reshapes (B*K, C, h, w) -> (B*h*w, K, C) and runs
multi-head self-attention across the K frequencies of each pixel (with a learned positional
embedding of k), like the temporal layers of video LDMs. Its output projection is zero-initialised
and it is residual, so inserting these layers into a trained single-slice (stage-1) model leaves
that model's output exactly unchanged; stage 2 freezes everything else and trains only
``frequency_attention_parameters()``. ``set_frequency_attention(False)`` turns them into identities
(stage 1, or the "no frequency attention" ablation); they are always constructed, so checkpoints of
both stages share one parameter layout.

Classifier-free guidance. A dropped condition is replaced by a *learned* null embedding, one vector
of C_cond values broadcast over the latent grid (initialised to zero, so it starts out equal to
"zero features" and training may move it away from anything the image encoder produces).
``forward(z_t, t, None)`` is the unconditional model; ``cond_mask`` drops the condition of chosen
volumes inside one batch (training dropout, or the cond/uncond halves of a CFG batch).
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import DenoiserConfig
from .layers import Downsample, ResBlock, SpatialSelfAttention, Upsample, group_norm, timestep_embedding

__all__ = ["FrequencyAttention", "Denoiser"]


class FrequencyAttention(nn.Module):
    """Self-attention across the K frequencies at every pixel; residual, zero-initialised output."""

    def __init__(self, channels: int, num_freqs: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels do not split into {num_heads} heads")
        self.num_freqs = num_freqs
        self.num_heads = num_heads
        self.enabled = True
        self.norm = nn.LayerNorm(channels)
        self.pos_embed = nn.Parameter(torch.randn(num_freqs, channels) * 0.02)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        bk, c, h, w = x.shape
        K = self.num_freqs
        if bk % K:
            raise ValueError(f"batch of {bk} slices is not a whole number of {K}-frequency volumes")
        b = bk // K
        tokens = x.reshape(b, K, c, h, w).permute(0, 3, 4, 1, 2).reshape(b * h * w, K, c)
        y = self.norm(tokens) + self.pos_embed.to(tokens.dtype)
        q, k, v = self.qkv(y).reshape(-1, K, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, K, d)
        out = self.proj(out.transpose(1, 2).reshape(-1, K, c))
        tokens = tokens + out
        return tokens.reshape(b, h, w, K, c).permute(0, 3, 4, 1, 2).reshape(bk, c, h, w)


class _Unit(nn.Module):
    """ResBlock -> optional spatial attention -> frequency attention."""

    def __init__(self, c_in: int, c_out: int, emb: int, cfg: DenoiserConfig, attention: bool, num_freqs: int) -> None:
        super().__init__()
        self.res = ResBlock(c_in, c_out, emb_channels=emb, groups=cfg.norm_groups, dropout=cfg.dropout)
        self.attn = SpatialSelfAttention(c_out, cfg.num_heads, cfg.norm_groups) if attention else None
        self.freq_attn = FrequencyAttention(c_out, num_freqs, cfg.frequency_heads)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.res(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        return self.freq_attn(h)


class Denoiser(nn.Module):
    """U-Net noise/velocity predictor ``forward(z_t, t, cond) -> (B*K, C_latent, h, w)``."""

    def __init__(self, cfg: DenoiserConfig, num_freqs: int = 16) -> None:
        super().__init__()
        self.config = cfg
        self.num_freqs = num_freqs
        ch = cfg.base_channels
        emb = 4 * ch
        chs = [ch * m for m in cfg.channel_mults]
        self.time_embed = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.freq_embed = nn.Embedding(num_freqs, emb)
        nn.init.normal_(self.freq_embed.weight, std=0.02)
        self.null_cond = nn.Parameter(torch.zeros(cfg.cond_channels))
        self.conv_in = nn.Conv2d(cfg.latent_channels + cfg.cond_channels, ch, 3, padding=1)

        skip_chs = [ch]
        c = ch
        self.down = nn.ModuleList()
        for i, c_out in enumerate(chs):
            level = nn.Module()
            level.units = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                level.units.append(_Unit(c, c_out, emb, cfg, i in cfg.attention_levels, num_freqs))
                c = c_out
                skip_chs.append(c)
            level.down = Downsample(c) if i < len(chs) - 1 else None
            if level.down is not None:
                skip_chs.append(c)
            self.down.append(level)

        self.mid1 = _Unit(c, c, emb, cfg, cfg.mid_attention, num_freqs)
        self.mid2 = ResBlock(c, c, emb_channels=emb, groups=cfg.norm_groups, dropout=cfg.dropout)

        self.up = nn.ModuleList()
        for i in reversed(range(len(chs))):
            level = nn.Module()
            level.units = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                level.units.append(_Unit(c + skip_chs.pop(), chs[i], emb, cfg, i in cfg.attention_levels, num_freqs))
                c = chs[i]
            level.up = Upsample(c) if i > 0 else None
            self.up.append(level)
        assert not skip_chs

        self.norm_out = group_norm(c, cfg.norm_groups)
        self.conv_out = nn.Conv2d(c, cfg.latent_channels, 3, padding=1)
        self.set_frequency_attention(cfg.frequency_attention)

    # -- frequency attention control -------------------------------------------------------
    def frequency_attention_layers(self) -> list[FrequencyAttention]:
        return [m for m in self.modules() if isinstance(m, FrequencyAttention)]

    def frequency_attention_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the frequency attention layers only (what stage 2 trains)."""
        for layer in self.frequency_attention_layers():
            yield from layer.parameters()

    def set_frequency_attention(self, enabled: bool) -> None:
        for layer in self.frequency_attention_layers():
            layer.enabled = bool(enabled)

    @property
    def frequency_attention_enabled(self) -> bool:
        return any(layer.enabled for layer in self.frequency_attention_layers())

    # -- forward ---------------------------------------------------------------------------
    def _condition(
        self, cond: torch.Tensor | None, cond_mask: torch.Tensor | None, n: int, h: int, w: int, dtype: torch.dtype
    ) -> torch.Tensor:
        null = self.null_cond.to(dtype).view(1, -1, 1, 1)
        if cond is None:
            return null.expand(n, -1, h, w)
        if cond.ndim != 4 or cond.shape[1] != self.config.cond_channels or tuple(cond.shape[-2:]) != (h, w):
            raise ValueError(
                f"cond features must be (B, {self.config.cond_channels}, {h}, {w}), got {tuple(cond.shape)}"
            )
        cond = cond.to(dtype)
        if cond_mask is not None:
            drop = cond_mask.to(device=cond.device, dtype=torch.bool).view(-1, 1, 1, 1)
            if drop.shape[0] != cond.shape[0]:
                raise ValueError("cond_mask needs one entry per conditioning row")
            cond = torch.where(drop, null, cond)
        if n % cond.shape[0]:
            raise ValueError(f"{n} slices cannot share {cond.shape[0]} conditions")
        return cond.repeat_interleave(n // cond.shape[0], dim=0)

    def forward(
        self,
        z_t: torch.Tensor,
        t: torch.Tensor | int | float,
        cond: torch.Tensor | None = None,
        *,
        cond_mask: torch.Tensor | None = None,
        freq_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict eps or v (per ``DiffusionConfig.prediction_type``) for noisy latent slices.

        z_t: (B*K, C_latent, h, w), volume-major. t: a scalar, (B,) per volume or (B*K,) per slice.
        cond: image features (B, C_cond, h, w) repeated over the K slices (or one row per slice),
        or None for the unconditional model. cond_mask: (B,) bool, True = replace that volume's
        condition by the null embedding. freq_index: (N,) frequency of each slice, for stage-1
        training on independent slices (frequency attention must then be disabled); by default
        rows are whole volumes in frequency order.
        """
        n, c, h, w = z_t.shape
        K = self.num_freqs
        if c != self.config.latent_channels:
            raise ValueError(f"expected {self.config.latent_channels} latent channels, got {c}")
        if freq_index is None:
            if n % K:
                raise ValueError(f"{n} slices are not whole volumes of {K} frequencies (pass freq_index)")
            freq_index = torch.arange(K, device=z_t.device).repeat(n // K)
        else:
            if self.frequency_attention_enabled:
                raise ValueError("freq_index (independent slices) needs frequency attention disabled")
            freq_index = freq_index.to(z_t.device).long().reshape(-1)
            if freq_index.shape[0] != n:
                raise ValueError("freq_index needs one entry per slice")
        t = torch.as_tensor(t, device=z_t.device)
        if t.ndim == 0:
            t = t.expand(n)
        elif t.shape[0] != n:
            if n % t.shape[0]:
                raise ValueError(f"{t.shape[0]} timesteps do not match {n} slices")
            t = t.repeat_interleave(n // t.shape[0])

        emb = self.time_embed(timestep_embedding(t, self.config.base_channels).to(z_t.dtype))
        emb = emb + self.freq_embed(freq_index).to(z_t.dtype)
        x = torch.cat([z_t, self._condition(cond, cond_mask, n, h, w, z_t.dtype)], dim=1)

        h_ = self.conv_in(x)
        skips = [h_]
        for level in self.down:
            for unit in level.units:
                h_ = unit(h_, emb)
                skips.append(h_)
            if level.down is not None:
                h_ = level.down(h_)
                skips.append(h_)
        h_ = self.mid2(self.mid1(h_, emb), emb)
        for level in self.up:
            for unit in level.units:
                h_ = unit(torch.cat([h_, skips.pop()], dim=1), emb)
            if level.up is not None:
                h_ = level.up(h_, size=tuple(skips[-1].shape[-2:]))
        return self.conv_out(F.silu(self.norm_out(h_)))
