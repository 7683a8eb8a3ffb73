"""The noise schedule and the conversions between eps, x0 and v. Pure functions.

Variance-preserving diffusion: x_t = alpha_t x0 + sigma_t eps with alpha_t = sqrt(abar_t),
sigma_t = sqrt(1 - abar_t), abar_t = prod_{s<=t} (1 - beta_s), t = 0 .. N-1 (N = 1000).
LDM's "scaled linear" betas: linspace(sqrt(0.00085), sqrt(0.012), N) ** 2.

v-prediction target (Salimans & Ho 2022): v = alpha eps - sigma x0, so
x0 = alpha x_t - sigma v and eps = sigma x_t + alpha v.

The functions below take ``abar`` values already gathered at the timesteps (a tensor broadcastable
to x, or a float), so that the sampler's final "t = -1" step (abar = 1, clean data) needs no
special case. ``abar_at(schedule, t)`` gathers them (t = -1 gives 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import DiffusionConfig

__all__ = [
    "NoiseSchedule",
    "make_betas",
    "make_alphas_cumprod",
    "sampling_timesteps",
    "abar_at",
    "q_sample",
    "x0_from_eps",
    "eps_from_x0",
    "v_from_x0_eps",
    "x0_from_v",
    "eps_from_v",
    "x0_eps_from_output",
    "output_from_x0_eps",
]


def make_betas(num_train_steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012, kind: str = "scaled_linear") -> torch.Tensor:
    """Betas (N,) float64."""
    if kind == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_steps, dtype=torch.float64) ** 2
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, num_train_steps, dtype=torch.float64)
    raise ValueError(f"unknown beta schedule {kind!r}")


def make_alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(1.0 - betas.double(), dim=0)


@dataclass(frozen=True)
class NoiseSchedule:
    """abar_t for t = 0 .. N-1 (float64, CPU) and how the model's output is to be read."""

    alphas_cumprod: torch.Tensor
    prediction_type: str = "v"

    def __post_init__(self) -> None:
        if self.prediction_type not in ("v", "eps"):
            raise ValueError(f"prediction_type must be 'v' or 'eps', got {self.prediction_type!r}")

    @classmethod
    def from_config(cls, cfg: DiffusionConfig) -> "NoiseSchedule":
        betas = make_betas(cfg.num_train_steps, cfg.beta_start, cfg.beta_end, cfg.beta_schedule)
        return cls(make_alphas_cumprod(betas), cfg.prediction_type)

    @property
    def num_train_steps(self) -> int:
        return int(self.alphas_cumprod.shape[0])


def sampling_timesteps(num_train_steps: int, num_steps: int, spacing: str = "trailing") -> torch.Tensor:
    """Descending integer timesteps (num_steps,) for a few-step sampler.

    "trailing": round(linspace from N down to 0, exclusive of 0) - 1, so the first step is always
    t = N - 1, the noise level of the Gaussian x_T the sampler starts from (Lin et al. 2024).
    E.g. N = 1000, 25 steps: 999, 959, ..., 39. "leading": 0, N/n, 2N/n, ... reversed
    (960, ..., 0): the DDIM / LDM default, which starts below the top noise level.
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"num_steps must be in 1..{num_train_steps}, got {num_steps}")
    if spacing == "trailing":
        ts = torch.round(torch.linspace(num_train_steps, 0, num_steps + 1, dtype=torch.float64)[:-1]) - 1
    elif spacing == "leading":
        ts = (torch.arange(num_steps, dtype=torch.float64) * (num_train_steps // num_steps)).flip(0)
    else:
        raise ValueError(f"spacing must be 'trailing' or 'leading', got {spacing!r}")
    return ts.long()


def abar_at(schedule: NoiseSchedule, t: torch.Tensor | int, *, like: torch.Tensor | None = None) -> torch.Tensor:
    """abar at integer timesteps t (any shape; t = -1 -> 1.0), shaped to broadcast against ``like``."""
    ac = torch.cat([torch.ones(1, dtype=torch.float64), schedule.alphas_cumprod.double().cpu()])
    t = torch.as_tensor(t, dtype=torch.long).cpu()
    a = ac[t + 1]
    if like is not None:
        if a.ndim == 1 and a.shape[0] == like.shape[0]:
            a = a.view(-1, *([1] * (like.ndim - 1)))
        a = a.to(device=like.device, dtype=like.dtype)
    return a


def _sqrt(a) -> torch.Tensor | float:
    return a.sqrt() if isinstance(a, torch.Tensor) else a**0.5


def q_sample(x0: torch.Tensor, abar, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) eps."""
    return _sqrt(abar) * x0 + _sqrt(1 - abar) * noise


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, abar) -> torch.Tensor:
    return (x_t - _sqrt(1 - abar) * eps) / _sqrt(abar)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, abar) -> torch.Tensor:
    """Undefined at abar = 1 (no noise); callers never ask for it there."""
    return (x_t - _sqrt(abar) * x0) / _sqrt(1 - abar)


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, abar) -> torch.Tensor:
    return _sqrt(abar) * eps - _sqrt(1 - abar) * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, abar) -> torch.Tensor:
    return _sqrt(abar) * x_t - _sqrt(1 - abar) * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, abar) -> torch.Tensor:
    return _sqrt(1 - abar) * x_t + _sqrt(abar) * v


def x0_eps_from_output(output: torch.Tensor, x_t: torch.Tensor, abar, prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a model output as (x0, eps) given its prediction type."""
    if prediction_type == "eps":
        return x0_from_eps(x_t, output, abar), output
    if prediction_type == "v":
        return x0_from_v(x_t, output, abar), eps_from_v(x_t, output, abar)
    raise ValueError(f"unknown prediction type {prediction_type!r}")


def output_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, abar, prediction_type: str) -> torch.Tensor:
    """The training target: what the model should output for this (x0, eps)."""
    if prediction_type == "eps":
        return eps
    if prediction_type == "v":
        return v_from_x0_eps(x0, eps, abar)
    raise ValueError(f"unknown prediction type {prediction_type!r}")
