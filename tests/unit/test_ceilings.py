"""The oracles of ``evaluate-ceilings`` (``evaluation/ceilings.py``) and the wind levels they need."""

import numpy as np
import pytest

from image_dynamics.evaluation.ceilings import resolution_roundtrip, vae_roundtrip, wind_blind
from image_dynamics.synth.scene import make_scene, wind_level_distribution


def _smooth_volume(K=4, H=40, W=64, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    base = np.sin(2 * np.pi * x) * np.cos(np.pi * y)
    coef = rng.normal(size=(K, 2)) + 1j * rng.normal(size=(K, 2))
    return (coef[:, :, None, None] * base).astype(np.complex64)


def test_resolution_roundtrip_keeps_the_grid_and_smooth_motion():
    S = _smooth_volume()
    assert np.array_equal(resolution_roundtrip(S, (64, 40)), S)  # the model's own grid: nothing lost
    R = resolution_roundtrip(S, (32, 20))
    assert R.shape == S.shape and R.dtype == np.complex64
    assert np.abs(R - S).mean() < 0.1 * np.abs(S).mean()  # smooth motion survives half resolution
    sharp = np.zeros_like(S)
    sharp[:, :, :, 31] = 1.0  # a one-pixel-wide mover is averaged away: what the ceiling measures
    assert np.abs(resolution_roundtrip(sharp, (32, 20))[:, :, :, 31]).max() < 0.75


def test_wind_blind_is_the_truth_rescaled():
    S = _smooth_volume()
    assert np.array_equal(wind_blind(S, 2.0, 2.0), S)
    np.testing.assert_allclose(wind_blind(S, 2.0, 5.0), S * 2.5, rtol=1e-6)
    assert wind_blind(S, 2.0, 1.0).dtype == S.dtype
    with pytest.raises(ValueError):
        wind_blind(S, 0.0, 1.0)


def test_vae_roundtrip_with_a_tiny_vae():
    from image_dynamics.model.pipeline import MotionPredictor

    p = MotionPredictor.random_init("tiny", seed=0)
    S = _smooth_volume(K=p.config.num_freqs) * 0.01
    out = vae_roundtrip(S, p.vae.eval(), p.scales, tuple(p.config.resolution))
    assert out.shape == S.shape and np.isfinite(out).all()


def test_wind_levels_match_the_generator():
    rng = np.random.default_rng(0)
    draws = wind_level_distribution(rng, 4000)
    assert 0.3 <= draws.min() and draws.max() <= 10.0 and 1.5 < np.median(draws) < 3.5
    candles = wind_level_distribution(np.random.default_rng(0), 500, "candles")
    assert 0.4 <= candles.min() and candles.max() <= 2.5
    for seed in (1_000_000_000, 1_000_000_003):
        scene = make_scene(seed, 64, 40)
        lo, hi = (0.4, 2.5) if scene.recipe == "candles" else (0.3, 10.0)
        assert lo <= scene.info["level_px"] <= hi
