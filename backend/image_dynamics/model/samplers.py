"""Samplers, k-diffusion style: pure functions sharing one signature.

    sample_xxx(model_fn, x_T, timesteps, *, schedule, callback=None, should_stop=None,
               guidance_fn=None, generator=None) -> x0

* ``model_fn(x_t, t)`` returns the raw model output (eps or v, per ``schedule.prediction_type``)
  for the batch x_t at integer timesteps t (a (N,) long tensor), with classifier-free guidance
  already applied (see ``cfg_model_fn``).
* ``timesteps``: descending integer timesteps (``schedule.sampling_timesteps``); after the last
  one the sampler lands on clean data (abar = 1).
* ``schedule`` (keyword, required): the ``NoiseSchedule`` that says how to read the output. It is
  the only addition to the k-diffusion signature, and the same for every sampler.
* ``callback(i, n, x0_pred)`` after every step i = 0 .. n-1 (x0_pred: the step's clean estimate).
* ``should_stop()`` is asked before every model call; True raises ``SamplingCancelled`` (so a
  cancelled run made exactly as many model calls as steps it completed).
* ``guidance_fn(x_t, t, eps) -> eps`` edits the noise estimate (motion self-guidance); the clean
  estimate is recomputed from the edited eps. It may use autograd (sampling runs under
  ``torch.no_grad``; the guidance re-enables grad itself).
* ``generator``: accepted for a uniform signature; both samplers here are deterministic (DDIM with
  eta = 0, DPM-Solver++(2M)), so all randomness is in x_T and the same x_T gives the same result.

Classifier-free guidance (paper): (1 + w) out(z; c) - w out(z; empty). Applied to the raw output,
this equals the same combination of eps (or x0) estimates whichever prediction type the model uses,
because eps, x0 and v are affine in the output with coefficients (on x_t) that sum back to 1.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .errors import SamplingCancelled
from .schedule import NoiseSchedule, abar_at, x0_eps_from_output, x0_from_eps

__all__ = ["SamplingCancelled", "cfg_model_fn", "sample_ddim", "sample_dpmpp_2m", "SAMPLERS"]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cfg_model_fn(denoiser: torch.nn.Module, cond: torch.Tensor | None, w: float) -> ModelFn:
    """``model_fn`` computing (1 + w) out(x; cond) - w out(x; null) in ONE batched forward pass.

    The conditional and unconditional halves are concatenated along the batch and the second half's
    condition is replaced by the denoiser's null embedding (``cond_mask``). w = 0 (or cond None)
    runs a single plain pass.
    """

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if cond is None or w == 0:
            return denoiser(x_t, t, cond)
        b = cond.shape[0]
        mask = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(cond.device)
        out = denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, cond]), cond_mask=mask)
        out_c, out_u = out.chunk(2)
        return (1.0 + w) * out_c - w * out_u

    return model_fn


def _timestep_list(timesteps) -> list[int]:
    ts = [int(t) for t in torch.as_tensor(timesteps).reshape(-1).tolist()]
    if not ts:
        raise ValueError("need at least one timestep")
    if any(b >= a for a, b in zip(ts, ts[1:])) or ts[-1] < 0:
        raise ValueError("timesteps must be strictly descending and >= 0")
    return ts


def _predict(
    model_fn: ModelFn,
    x: torch.Tensor,
    t: int,
    schedule: NoiseSchedule,
    guidance_fn,
    step: int,
    total: int,
    should_stop,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    if should_stop is not None and should_stop():
        raise SamplingCancelled(step, total)
    if t >= schedule.num_train_steps:
        raise ValueError(f"timestep {t} is outside the schedule (0..{schedule.num_train_steps - 1})")
    t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    a = float(abar_at(schedule, t))
    out = model_fn(x, t_batch)
    x0, eps = x0_eps_from_output(out, x, a, schedule.prediction_type)
    if guidance_fn is not None:
        eps = guidance_fn(x, t_batch, eps)
        x0 = x0_from_eps(x, eps, a)
    return x0, eps, a


def sample_ddim(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    timesteps,
    *,
    schedule: NoiseSchedule,
    callback=None,
    should_stop=None,
    guidance_fn=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0): x_{t'} = sqrt(abar_t') x0 + sqrt(1 - abar_t') eps."""
    ts = _timestep_list(timesteps)
    n = len(ts)
    x = x_T
    with torch.no_grad():
        for i, t in enumerate(ts):
            x0, eps, _ = _predict(model_fn, x, t, schedule, guidance_fn, i, n, should_stop)
            a_next = float(abar_at(schedule, ts[i + 1] if i + 1 < n else -1))
            x = x0 if a_next >= 1.0 else math.sqrt(a_next) * x0 + math.sqrt(1.0 - a_next) * eps
            if callback is not None:
                callback(i, n, x0)
    return x


def sample_dpmpp_2m(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    timesteps,
    *,
    schedule: NoiseSchedule,
    callback=None,
    should_stop=None,
    guidance_fn=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), data prediction, multistep second order.

    With lambda = log(alpha / sigma) and h = lambda' - lambda:
    x' = (sigma'/sigma) x - alpha' expm1(-h) D, where D = x0 on the first step and
    D = (1 + 1/(2r)) x0 - 1/(2r) x0_prev (r = h_prev / h) afterwards. The final step, to
    clean data, returns the last x0 estimate (first order).
    """
    ts = _timestep_list(timesteps)
    n = len(ts)
    x = x_T
    x0_prev: torch.Tensor | None = None
    h_prev = 0.0
    with torch.no_grad():
        for i, t in enumerate(ts):
            x0, _, a = _predict(model_fn, x, t, schedule, guidance_fn, i, n, should_stop)
            a_next = float(abar_at(schedule, ts[i + 1] if i + 1 < n else -1))
            if a_next >= 1.0:
                x = x0
            else:
                alpha, sigma = math.sqrt(a), math.sqrt(1.0 - a)
                alpha_n, sigma_n = math.sqrt(a_next), math.sqrt(1.0 - a_next)
                h = math.log(alpha_n / sigma_n) - math.log(alpha / sigma)
                if x0_prev is None:
                    d = x0
                else:
                    r = h_prev / h
                    d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
                x = (sigma_n / sigma) * x - alpha_n * math.expm1(-h) * d
                h_prev = h
            x0_prev = x0
            if callback is not None:
                callback(i, n, x0)
    return x


SAMPLERS = {"ddim": sample_ddim, "dpmpp_2m": sample_dpmpp_2m}
