"""Motion self-guidance for seamless loops (paper Eq. 5), plus differentiable spectral maths.

At each sampling step the guidance takes the current noisy latents x_t of the K slices and the
step's noise estimate eps, forms the clean estimate x0 = (x_t - sigma eps) / alpha, decodes it with
the VAE decoder, undoes the frequency normalization (``denormalize_torch``, the torch mirror of
``motion.normalize.denormalize``) and evaluates the motion at the two ends of the loop with the
modal sum D_t = Re[sum_k c_k S_k exp(2 pi i k t / T)] (only those two times, never a full iFFT).
The loss gradient w.r.t. x_t (autograd) then shifts the noise estimate, as in classifier guidance:

    eps_hat = eps + u * sigma_t * (h * w) * grad_{x_t} L

(plus sign: L is an energy to *lower*; x0 = (x_t - sigma eps_hat) / alpha then moves along
-grad L). L is a mean over pixels (a closure error in pixels), so its gradient per latent element
shrinks with the image area; the factor h * w (latent grid cells) makes u independent of the
resolution.

Gradient path. The paper back-propagates to z through everything. Two options here:

* default (``model_fn=None``): through the VAE decoder only, with the denoiser's Jacobian replaced
  by its value for Gaussian data, d x0_hat / d x_t = alpha I. Our latents are whitened (zero mean,
  unit variance per channel), and for x0 ~ N(0, I) the posterior mean is exactly alpha x_t. Holding
  eps fixed instead would give 1/alpha I, which overstates the gradient ~1/abar-fold (200x at
  t = 999) where x0_hat hardly depends on x_t; on random models that blew samples up.
  Costs one VAE decode + backward per step.
* ``model_fn=...`` (the CFG-wrapped denoiser): exact, through the U-Net as well, the paper's way;
  one more denoiser forward + backward per step.

Which loop. Every kept bin is a multiple of 1/T, so the K-bin motion is periodic over T = 150
frames and a T-frame loop closes by itself. The guidance therefore targets the loop length the
user asks for, ``loop_frames`` = L (e.g. 90 frames = 3 s), comparing D at t = L with D at t = 0.

The loss (per volume; means over pixels, both axes, pixel units):

    L = mean|D_L - D_0| + velocity_weight * mean|V_L - V_0| + spatial_grad_weight * mean|grad_xy (D_L - D_0)|

The paper writes its second term as ``|grad D_T - grad D_1|`` and calls it a velocity term; two
readings exist: (a) the spatial gradient of the displacement field, (b) the temporal derivative.
We use (b) by default (V_t = dD/dt in pixels per frame, analytic from the modal sum): for a loop
to be seamless the motion must be C1 at the seam, i.e. every point must arrive at the seam with
the velocity it leaves with, otherwise it visibly "bounces" even when positions match. The weight
is a time in frames, velocity_weight = 5 (1/6 s at 30 fps): a velocity jump dv counts like the
position error 5 * dv it builds up within a few frames after the seam. Reading (a) adds no new condition - if D_L = D_0 everywhere, their spatial
gradients already agree - it only re-weights position errors near motion edges; it is available
with ``spatial_grad_weight`` (default 0).

``strength`` is u. The paper's u = 200 belongs to its own (unpublished) loss normalization and
latent scale and does not carry over. With the normalization above, u = 10 (our default) takes
random tiny models from ~3.1 px to ~1.3 px closure error at L = 90 in 10 DDIM steps; it must be
re-calibrated on a trained model (sweep u against loop closure and sample quality).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .schedule import NoiseSchedule, abar_at, x0_eps_from_output

__all__ = [
    "scales_tensor",
    "denormalize_torch",
    "displacement_at",
    "velocity_at",
    "LoopGuidance",
]


def scales_tensor(scales, device=None, dtype=torch.float32) -> torch.Tensor:
    """s_k (K,) as a tensor from a ``FrequencyScales``, an array or a tensor."""
    s = getattr(scales, "scales", scales)
    return torch.as_tensor(np.asarray(s, dtype=np.float64) if not isinstance(s, torch.Tensor) else s).to(device=device, dtype=dtype)


def denormalize_torch(x: torch.Tensor, scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network channels (..., K, 4, H, W) -> (Re S, Im S), each (..., K, 2, H, W). Differentiable.

    Mirrors ``motion.normalize.denormalize``: channels (x_re, y_re, x_im, y_im), v = sign(x) x^2 s_k.
    """
    K = scales.shape[0]
    if x.ndim < 4 or x.shape[-3] != 4 or x.shape[-4] != K:
        raise ValueError(f"normalized volume must have shape (..., {K}, 4, H, W), got {tuple(x.shape)}")
    v = x * x.abs() * scales.to(x.dtype).view(K, 1, 1, 1)
    return v[..., 0:2, :, :], v[..., 2:4, :, :]


def _phases(num_freqs: int, times: torch.Tensor, num_frames: int, like: torch.Tensor):
    k = torch.arange(num_freqs, dtype=torch.float64)
    c = torch.full((num_freqs,), 2.0, dtype=torch.float64)
    c[0] = 1.0
    phi = 2.0 * math.pi * torch.outer(torch.as_tensor(times, dtype=torch.float64).reshape(-1), k) / num_frames
    cast = dict(device=like.device, dtype=like.dtype)
    return k.to(**cast), c.to(**cast), torch.cos(phi).to(**cast), torch.sin(phi).to(**cast)


def displacement_at(re: torch.Tensor, im: torch.Tensor, times, num_frames: int = 150) -> torch.Tensor:
    """D_t = sum_k c_k (Re S_k cos phi - Im S_k sin phi), phi = 2 pi k t / T.

    re, im: (..., K, 2, H, W). Returns (..., len(times), 2, H, W) in pixels.
    """
    K = re.shape[-4]
    _, c, cos, sin = _phases(K, times, num_frames, re)
    wc, ws = cos * c, sin * c  # (N, K)
    return torch.einsum("nk,...kchw->...nchw", wc, re) - torch.einsum("nk,...kchw->...nchw", ws, im)


def velocity_at(re: torch.Tensor, im: torch.Tensor, times, num_frames: int = 150) -> torch.Tensor:
    """dD/dt in pixels per frame: sum_k c_k (2 pi k / T) (-Re S_k sin phi - Im S_k cos phi)."""
    K = re.shape[-4]
    k, c, cos, sin = _phases(K, times, num_frames, re)
    omega = c * 2.0 * math.pi * k / num_frames
    return -torch.einsum("nk,...kchw->...nchw", sin * omega, re) - torch.einsum("nk,...kchw->...nchw", cos * omega, im)


def _spatial_grad(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return d[..., :, 1:] - d[..., :, :-1], d[..., 1:, :] - d[..., :-1, :]


class LoopGuidance:
    """``guidance_fn(x_t, t, eps) -> eps`` steering samples towards an L-frame seamless loop."""

    def __init__(
        self,
        vae,
        scales,
        schedule: NoiseSchedule,
        loop_frames: float,
        *,
        strength: float = 10.0,
        num_frames: int = 150,
        velocity_weight: float = 5.0,
        spatial_grad_weight: float = 0.0,
        model_fn=None,
    ) -> None:
        if not loop_frames > 0:
            raise ValueError(f"loop_frames must be > 0, got {loop_frames}")
        self.vae = vae
        self.scales = scales_tensor(scales)
        self.num_freqs = int(self.scales.shape[0])
        self.schedule = schedule
        self.loop_frames = float(loop_frames)
        self.strength = float(strength)
        self.num_frames = int(num_frames)
        self.velocity_weight = float(velocity_weight)
        self.spatial_grad_weight = float(spatial_grad_weight)
        self.model_fn = model_fn
        self.last_loss: float | None = None  # per-step diagnostics

    def loss_from_slices(self, slices: torch.Tensor) -> torch.Tensor:
        """Loop loss per volume (B,) of decoded normalized slices (B*K, 4, H, W)."""
        K = self.num_freqs
        n, _, h, w = slices.shape
        x = slices.reshape(n // K, K, 4, h, w)
        re, im = denormalize_torch(x, self.scales.to(slices.device))
        times = [0.0, self.loop_frames]
        d = displacement_at(re, im, times, self.num_frames)  # (B, 2, 2, H, W)
        jump = d[:, 1] - d[:, 0]
        loss = jump.abs().flatten(1).mean(1)
        if self.velocity_weight:
            v = velocity_at(re, im, times, self.num_frames)
            loss = loss + self.velocity_weight * (v[:, 1] - v[:, 0]).abs().flatten(1).mean(1)
        if self.spatial_grad_weight:
            gx, gy = _spatial_grad(jump)
            loss = loss + self.spatial_grad_weight * (gx.abs().flatten(1).mean(1) + gy.abs().flatten(1).mean(1))
        return loss

    def loss_from_latents(self, z: torch.Tensor) -> torch.Tensor:
        return self.loss_from_slices(self.vae.from_latent(z))

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self.strength == 0:
            return eps
        a = float(abar_at(self.schedule, int(t.reshape(-1)[0])))
        alpha, sigma = math.sqrt(a), math.sqrt(1.0 - a)
        area = x_t.shape[-1] * x_t.shape[-2]
        with torch.enable_grad():
            if self.model_fn is None:
                # Gaussian-prior Jacobian: d x0_hat / d x_t ~ alpha I (see module doc).
                x0 = ((x_t.detach().float() - sigma * eps.detach().float()) / alpha).requires_grad_(True)
                loss = self.loss_from_latents(x0).sum()
                (grad,) = torch.autograd.grad(loss, x0)
                grad = alpha * grad
            else:
                x = x_t.detach().float().requires_grad_(True)
                out = self.model_fn(x, t)
                x0, _ = x0_eps_from_output(out, x, a, self.schedule.prediction_type)
                loss = self.loss_from_latents(x0).sum()
                (grad,) = torch.autograd.grad(loss, x)
        self.last_loss = float(loss.detach())
        return eps + (self.strength * sigma * area) * grad.to(eps.dtype)
