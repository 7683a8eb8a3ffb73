"""Training losses: the KL-VAE loss of the paper and the denoiser's diffusion loss.

VAE (paper section 4.1): L1 reconstruction + 0.2 * gradient loss + 1e-6 * KL. The gradient loss is
the L1 distance of spatial finite differences (x and y). As in LDM (whose KL weight 1e-6 the paper
takes over), every term is summed over a sample's elements and averaged over the batch, so the
1e-6 weights the KL against reconstruction sums exactly as there. Per-element means are returned
alongside for logging.

Diffusion: each volume draws one timestep shared by its K slices (frequency attention compares
slices at the same noise level), each slice its own noise; the target is eps or v; the image
condition of each volume is dropped with probability ``cfg_dropout`` (null embedding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .schedule import NoiseSchedule, abar_at, output_from_x0_eps, q_sample
from .vae import DiagonalGaussian

__all__ = ["gradient_l1", "vae_loss", "diffusion_loss"]


def _randn(shape, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _rand(shape, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device).to(like.device)


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample sum of |d_x pred - d_x target| + |d_y pred - d_y target|: shape (N,)."""
    d = pred - target
    gx = (d[..., :, 1:] - d[..., :, :-1]).abs().flatten(1).sum(1)
    gy = (d[..., 1:, :] - d[..., :-1, :]).abs().flatten(1).sum(1)
    return gx + gy


def vae_loss(
    x: torch.Tensor,
    recon: torch.Tensor,
    posterior: DiagonalGaussian,
    *,
    grad_weight: float = 0.2,
    kl_weight: float = 1e-6,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss (scalar) and logged parts (per-element means: l1, grad; per-sample kl)."""
    l1 = (recon - x).abs().flatten(1).sum(1)
    grad = gradient_l1(recon, x)
    kl = posterior.kl()
    total = (l1 + grad_weight * grad + kl_weight * kl).mean()
    numel = x[0].numel()
    logs = {
        "l1": float(l1.detach().mean()) / numel,
        "grad": float(grad.detach().mean()) / numel,
        "kl": float(kl.detach().mean()),
        "total": float(total.detach()),
    }
    return total, logs


def diffusion_loss(
    denoiser: torch.nn.Module,
    z0: torch.Tensor,
    cond: torch.Tensor | None,
    schedule: NoiseSchedule,
    *,
    cfg_dropout: float = 0.1,
    generator: torch.Generator | None = None,
    freq_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE between the denoiser's output and its eps / v target for whitened latents z0.

    z0: (B*K, C, h, w) whole volumes (or independent slices with ``freq_index``, stage 1: then
    every slice is its own "volume" for t and dropout, and cond has one row per slice).
    cond: image features (B, C_cond, h, w).
    """
    n = z0.shape[0]
    groups = n if freq_index is not None else n // getattr(denoiser, "num_freqs", 1)
    per = n // groups
    t = (_rand((groups,), generator, z0) * schedule.num_train_steps).long().clamp_max(schedule.num_train_steps - 1)
    t_slices = t.repeat_interleave(per)
    a = abar_at(schedule, t_slices.cpu(), like=z0)
    noise = _randn(z0.shape, generator, z0)
    z_t = q_sample(z0, a, noise)
    mask = None
    if cond is not None and cfg_dropout > 0:
        mask = _rand((cond.shape[0],), generator, z0) < cfg_dropout
    out = denoiser(z_t, t_slices, cond, cond_mask=mask, freq_index=freq_index)
    target = output_from_x0_eps(z0, noise, a, schedule.prediction_type)
    return F.mse_loss(out.float(), target.float())
