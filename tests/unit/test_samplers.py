"""Noise schedule, DDIM / DPM-Solver++ samplers, CFG, determinism, callbacks and cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from image_dynamics.model import MotionPredictor, SamplingCancelled
from image_dynamics.model.config import SAMPLER_NAMES, DiffusionConfig
from image_dynamics.model.samplers import SAMPLERS, cfg_model_fn
from image_dynamics.model.schedule import (
    NoiseSchedule,
    abar_at,
    eps_from_v,
    eps_from_x0,
    make_betas,
    output_from_x0_eps,
    q_sample,
    sampling_timesteps,
    v_from_x0_eps,
    x0_eps_from_output,
    x0_from_eps,
    x0_from_v,
)


@pytest.fixture(autouse=True)
def _few_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread beats two (no OpenMP spin on a shared CPU)
    yield
    torch.set_num_threads(before)


def _schedule(pred: str) -> NoiseSchedule:
    return NoiseSchedule.from_config(DiffusionConfig(prediction_type=pred))


# -- schedule ----------------------------------------------------------------------------------
def test_scaled_linear_schedule():
    betas = make_betas()
    assert betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(0.00085) and betas[-1].item() == pytest.approx(0.012)
    ac = _schedule("v").alphas_cumprod
    assert bool((ac[1:] < ac[:-1]).all())
    assert ac[0].item() == pytest.approx(1 - 0.00085)
    assert 0.004 < ac[-1].item() < 0.006  # LDM's schedule does not reach zero SNR
    assert abar_at(_schedule("v"), -1).item() == 1.0


def test_timestep_spacings():
    tr = sampling_timesteps(1000, 25, "trailing")
    assert tr.tolist()[:3] == [999, 959, 919] and tr[-1].item() == 39 and len(tr) == 25
    ld = sampling_timesteps(1000, 25, "leading")
    assert ld[0].item() == 960 and ld[-1].item() == 0
    for n in (1, 3, 7, 250, 1000):
        ts = sampling_timesteps(1000, n)
        assert len(ts) == n and ts[0].item() == 999 and bool((ts[1:] < ts[:-1]).all()) and ts[-1].item() >= 0
    with pytest.raises(ValueError):
        sampling_timesteps(1000, 0)


def test_conversions_invert():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 4, 3, 3, generator=g), torch.randn(5, 4, 3, 3, generator=g)
    sched = _schedule("v")
    a = abar_at(sched, torch.tensor([0, 10, 500, 900, 999]), like=x0)
    x_t = q_sample(x0, a, eps)
    torch.testing.assert_close(x0_from_eps(x_t, eps, a), x0, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(eps_from_x0(x_t, x0, a), eps, atol=2e-4, rtol=1e-4)
    v = v_from_x0_eps(x0, eps, a)
    torch.testing.assert_close(x0_from_v(x_t, v, a), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eps_from_v(x_t, v, a), eps, atol=1e-5, rtol=1e-5)
    for pred in ("eps", "v"):
        out = output_from_x0_eps(x0, eps, a, pred)
        x0_b, eps_b = x0_eps_from_output(out, x_t, a, pred)
        torch.testing.assert_close(x0_b, x0, atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(eps_b, eps, atol=2e-4, rtol=1e-4)


# -- samplers with an oracle model -------------------------------------------------------------
def _oracle(x0: torch.Tensor, sched: NoiseSchedule, calls: list | None = None):
    """A perfect model for data concentrated at x0: returns the true eps (or v) of x_t."""

    def model_fn(x_t, t):
        if calls is not None:
            calls.append(int(t[0]))
        a = abar_at(sched, t, like=x_t)
        eps = eps_from_x0(x_t, x0, a)
        return output_from_x0_eps(x0, eps, a, sched.prediction_type)

    return model_fn


@pytest.mark.parametrize("pred", ["eps", "v"])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 5, 25])
def test_sampler_recovers_x0_with_true_eps(name, pred, steps):
    sched = _schedule(pred)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(16, 4, 4, 6, generator=g)
    x_T = torch.randn(16, 4, 4, 6, generator=g)
    out = SAMPLERS[name](_oracle(x0, sched), x_T, sampling_timesteps(1000, steps), schedule=sched)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


def test_the_cli_offers_exactly_the_implemented_samplers():
    assert tuple(sorted(SAMPLER_NAMES)) == tuple(sorted(SAMPLERS))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps,tolerance", [(25, 0.06), (250, 0.01)])
def test_sampler_draws_gaussian_data_with_the_right_spread(name, steps, tolerance):
    """With the exact denoiser of N(0, 1) data (whitened latents), samples must have std 1: a sampler
    that shrinks the amplitude fails (motion amplitude is what the metrics score). Measured: DDIM
    keeps 0.948 at 25 steps, DPM-Solver++(2M) 0.991; both are within 1 % at 250."""
    sched = _schedule("v")

    def model_fn(x_t, t):
        a = abar_at(sched, t, like=x_t)
        x0 = a.sqrt() * x_t  # E[x0 | x_t] for N(0, 1) data: a x0 + (1 - a) noise has unit variance
        return output_from_x0_eps(x0, eps_from_x0(x_t, x0, a), a, "v")

    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(64, 4, 8, 8, generator=g)
    out = SAMPLERS[name](model_fn, x_T, sampling_timesteps(1000, steps), schedule=sched, generator=g)
    assert abs(float(out.std()) - 1.0) < tolerance, float(out.std())


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_every_step_and_cancellation_before_model_call(name):
    sched = _schedule("v")
    x0 = torch.zeros(2, 4, 2, 2)
    ts = sampling_timesteps(1000, 6)
    seen = []
    SAMPLERS[name](_oracle(x0, sched), torch.randn(2, 4, 2, 2), ts, schedule=sched, callback=lambda i, n, x: seen.append((i, n, x.shape)))
    assert seen == [(i, 6, (2, 4, 2, 2)) for i in range(6)]

    calls: list[int] = []
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) == 4  # True at step 3 (0-based)

    with pytest.raises(SamplingCancelled) as info:
        SAMPLERS[name](_oracle(x0, sched, calls), torch.randn(2, 4, 2, 2), ts, schedule=sched, should_stop=should_stop)
    assert len(calls) == 3 and calls == ts[:3].tolist()
    assert info.value.step == 3 and info.value.total == 6


def test_cfg_is_one_batched_pass_with_the_paper_formula():
    pred = MotionPredictor.random_init("tiny", seed=0)
    den = pred.denoiser
    w, h = pred.config.latent_size
    cond = torch.randn(1, 16, h, w)
    x = torch.randn(16, 4, h, w)
    t = torch.full((16,), 700)
    batches = []
    handle = den.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            guided = cfg_model_fn(den, cond, 1.75)(x, t)
            assert batches == [32]
            c, u = den(x, t, cond), den(x, t, None)
            plain = cfg_model_fn(den, cond, 0.0)(x, t)
    finally:
        handle.remove()
    torch.testing.assert_close(guided, 2.75 * c - 1.75 * u, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(plain, c, atol=0, rtol=0)


# -- determinism through the pipeline ----------------------------------------------------------
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_same_seed_same_volume_different_seed_different(sampler):
    pred = MotionPredictor.random_init("tiny", seed=0)
    img = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    a = pred.predict(img, seed=7, steps=4, sampler=sampler)
    b = pred.predict(img, seed=7, steps=4, sampler=sampler)
    c = pred.predict(img, seed=8, steps=4, sampler=sampler)
    assert a.shape == (16, 2, 32, 48) and a.dtype == np.complex64 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_predict_reports_progress_and_cancels():
    pred = MotionPredictor.random_init("tiny", seed=0)
    img = np.zeros((32, 48, 3), np.uint8)
    steps = []
    pred.predict(img, seed=0, steps=3, callback=lambda i, n, x0: steps.append((i, n)))
    assert steps == [(0, 3), (1, 3), (2, 3)]
    with pytest.raises(SamplingCancelled):
        pred.predict(img, seed=0, steps=3, should_stop=lambda: True)
