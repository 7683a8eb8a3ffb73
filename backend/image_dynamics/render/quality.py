"""Image metrics for rendered frames (torch, CPU or CUDA): PSNR and SSIM, and the training loss.

* PSNR = 10 log10(1 / MSE) on images in [0, 1] (uint8 frames divided by 255), over all pixels
  and the three channels of one frame.
* SSIM (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 1,
  per channel on the 'valid' region (no padding), averaged over pixels and channels.
* ``render_loss``: L1 + 0.5 x multi-scale gradient L1 (finite differences of the error image at
  scales 1, 1/2, 1/4: penalises blurred or doubled edges that plain L1 tolerates) + 0.2 x (1 - SSIM).
  With ``weight`` (B, 1, H, W) the L1 term is the weighted mean (used to up-weight the few pixels
  near motion, which an unweighted loss over mostly static frames under-serves). No network
  weights are needed (no VGG).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "render_loss"]


def _gauss(device, dtype, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (B,) of a, b (B, C, H, W) in [0, 1]; needs H, W >= 11."""
    B, C, H, W = a.shape
    g = _gauss(a.device, a.dtype)
    kx = g.view(1, 1, 1, -1).repeat(C, 1, 1, 1)
    ky = g.view(1, 1, -1, 1).repeat(C, 1, 1, 1)

    def blur(x):
        return F.conv2d(F.conv2d(x, kx, groups=C), ky, groups=C)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = blur(a), blur(b)
    saa = blur(a * a) - mu_a ** 2
    sbb = blur(b * b) - mu_b ** 2
    sab = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return s.mean(dim=(1, 2, 3))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) in dB of a, b (B, C, H, W) in [0, 1]."""
    mse = ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return (10.0 * torch.log10(1.0 / mse)).to(a.dtype)


def _grad_l1(err: torch.Tensor) -> torch.Tensor:
    return (err[..., :, 1:] - err[..., :, :-1]).abs().mean() + (err[..., 1:, :] - err[..., :-1, :]).abs().mean()


def render_loss(pred: torch.Tensor, target: torch.Tensor,
                weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    err = pred - target
    if weight is None:
        l1 = err.abs().mean()
    else:
        w = weight.expand_as(err)
        l1 = (w * err.abs()).sum() / w.sum().clamp_min(1e-12)
    grad = sum(_grad_l1(F.avg_pool2d(err, 2 ** s) if s else err) for s in range(3)) / 3
    s = ssim(pred, target).mean()
    loss = l1 + 0.5 * grad + 0.2 * (1 - s)
    return loss, {"l1": float(l1.detach()), "grad": float(grad.detach()), "ssim": float(s.detach())}
