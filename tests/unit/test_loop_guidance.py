"""Motion self-guidance (paper Eq. 5) and its differentiable spectral maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from image_dynamics.model import MotionPredictor
from image_dynamics.model.loop_guidance import LoopGuidance, denormalize_torch, displacement_at, scales_tensor, velocity_at
from image_dynamics.motion.loops import loop_closure_error, loop_velocity_error
from image_dynamics.motion.normalize import FrequencyScales, denormalize, normalize
from image_dynamics.motion.spectral import spectral_to_motion

K = 16
L = 90  # a 3 s loop: does NOT close by construction (T = 150)


@pytest.fixture(autouse=True)
def _few_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread beats two (no OpenMP spin on a shared CPU)
    yield
    torch.set_num_threads(before)


def _volume(seed=0, h=6, w=5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amp = np.geomspace(1.0, 0.05, K).reshape(K, 1, 1, 1)
    return ((rng.normal(size=(K, 2, h, w)) + 1j * rng.normal(size=(K, 2, h, w))) * amp).astype(np.complex64)


def test_denormalize_torch_mirrors_numpy():
    S = _volume()
    scales = FrequencyScales(np.geomspace(0.8, 0.04, K))
    x = normalize(S, scales)
    re, im = denormalize_torch(torch.from_numpy(x), scales_tensor(scales))
    ref = denormalize(x, scales)
    np.testing.assert_allclose(re.numpy(), ref.real, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(im.numpy(), ref.imag, rtol=1e-5, atol=1e-6)
    xt = torch.from_numpy(x).requires_grad_(True)
    sum(t.sum() for t in denormalize_torch(xt, scales_tensor(scales))).backward()
    assert xt.grad is not None and torch.isfinite(xt.grad).all()


def test_modal_sum_matches_spectral_to_motion_and_velocity_is_its_derivative():
    S = _volume(1)
    re, im = torch.from_numpy(S.real.astype(np.float64)), torch.from_numpy(S.imag.astype(np.float64))
    times = [0.0, 37.5, L]
    d = displacement_at(re, im, times)
    np.testing.assert_allclose(d.numpy(), spectral_to_motion(S, 150, times=np.array(times)), rtol=1e-5, atol=1e-5)
    dt = 1e-4
    fd = (displacement_at(re, im, [L + dt]) - displacement_at(re, im, [L - dt])) / (2 * dt)
    np.testing.assert_allclose(velocity_at(re, im, [L]).numpy(), fd.numpy(), rtol=1e-5, atol=1e-6)


def test_one_guidance_step_moves_x0_downhill():
    pred = MotionPredictor.random_init("tiny", seed=0)
    w, h = pred.config.latent_size
    g = LoopGuidance(pred.vae, pred.scales, pred.schedule, L, strength=10.0)
    x_t = torch.randn(K, 4, h, w, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(K, 4, h, w, generator=torch.Generator().manual_seed(1))
    t = torch.full((K,), 300)
    a = pred.schedule.alphas_cumprod[300].item()
    x0 = (x_t - (1 - a) ** 0.5 * eps) / a**0.5
    eps_g = g(x_t, t, eps)
    x0_g = (x_t - (1 - a) ** 0.5 * eps_g) / a**0.5
    with torch.no_grad():
        assert g.loss_from_latents(x0_g).item() < g.loss_from_latents(x0).item()
    assert torch.equal(LoopGuidance(pred.vae, pred.scales, pred.schedule, L, strength=0.0)(x_t, t, eps), eps)


def test_loop_guidance_lowers_closure_error_of_samples():
    pred = MotionPredictor.random_init("tiny", seed=0)
    img = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    free = pred.predict(img, seed=0, steps=8)
    guided = pred.predict(img, seed=0, steps=8, loop_frames=L, loop_strength=10.0)
    e_free, e_guided = loop_closure_error(free, L), loop_closure_error(guided, L)
    v_free, v_guided = loop_velocity_error(free, L), loop_velocity_error(guided, L)
    assert e_guided < 0.6 * e_free, (e_free, e_guided)
    assert v_guided < 0.8 * v_free, (v_free, v_guided)
    # a T-frame loop closes by construction, guided or not: it is no test of the guidance
    assert loop_closure_error(free, 150) < 1e-4
    # the exact gradient path (through the denoiser, as in the paper) works too; through a random
    # U-Net its Jacobian is arbitrary, so it is weaker here than the Gaussian-prior default
    exact = pred.predict(img, seed=0, steps=8, loop_frames=L, loop_strength=3.0, loop_exact_gradient=True)
    assert loop_closure_error(exact, L) < 0.8 * e_free
