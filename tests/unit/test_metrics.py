"""Evaluation metrics on hand-made volumes: exact values, phase invariance, masks, baselines."""

from __future__ import annotations

import numpy as np
import pytest

from image_dynamics.evaluation import metrics as M
from image_dynamics.evaluation.baselines import MeanPrior, ZeroMotion, fit_mean_prior
from image_dynamics.motion.spectral import mean_motion_magnitude

K, H, W = 4, 6, 5
SCALES = np.array([1.0, 2.0, 0.5, 4.0])


def _random_volume(seed: int, amp: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * (rng.normal(size=(K, 2, H, W)) + 1j * rng.normal(size=(K, 2, H, W)))).astype(np.complex64)


def test_normalized_amplitude_is_sqrt_of_modulus_over_scale():
    S = np.zeros((K, 2, H, W), np.complex64)
    S[1, 0, 2, 3] = 3 + 4j  # |S| = 5, s_1 = 2 -> sqrt(2.5)
    S[3, 1, 0, 0] = -16.0  # |S| = 16, s_3 = 4 -> 2
    a = M.normalized_amplitude(S, SCALES)
    assert a.shape == (K, 2, H, W)
    assert a[1, 0, 2, 3] == pytest.approx(np.sqrt(2.5))
    assert a[3, 1, 0, 0] == pytest.approx(2.0)
    assert np.count_nonzero(a) == 2


def test_amplitude_l1_exact_value_and_mask():
    truth = np.zeros((K, 2, H, W), np.complex64)
    pred = np.zeros_like(truth)
    pred[0, 0, 1, 1] = 4.0  # a = 2 at one of K*2*H*W entries
    assert M.amplitude_l1(pred, truth, SCALES) == pytest.approx(2.0 / (K * 2 * H * W))
    mask = np.zeros((H, W), bool)
    mask[1, 1] = True
    assert M.amplitude_l1(pred, truth, SCALES, mask) == pytest.approx(2.0 / (K * 2))
    assert np.isnan(M.amplitude_l1(pred, truth, SCALES, np.zeros((H, W), bool)))
    assert M.amplitude_l1(truth, truth, SCALES) == 0.0


def test_scores_are_phase_invariant():
    S = _random_volume(0)
    rng = np.random.default_rng(1)
    rotated = (S * np.exp(1j * rng.uniform(0, 2 * np.pi, size=S.shape))).astype(np.complex64)
    other = _random_volume(2)
    assert M.amplitude_l1(rotated, S, SCALES) < 1e-6
    assert M.amplitude_l1(other, rotated, SCALES) == pytest.approx(M.amplitude_l1(other, S, SCALES), abs=1e-6)
    np.testing.assert_allclose(M.power_per_frequency(rotated), M.power_per_frequency(S), rtol=1e-5)
    # The phase-aware diversity sees the rotation, the amplitude diversity does not.
    assert M.diversity([S, rotated], SCALES) < 1e-6
    assert M.diversity([S, rotated], SCALES, phase_aware=True) > 0.1


def test_fast_mean_magnitude_matches_the_inverse_fft_path():
    S = _random_volume(3)
    for T in (150, 40):
        np.testing.assert_allclose(M.mean_motion_magnitude_fast(S, T), mean_motion_magnitude(S, T), rtol=1e-4, atol=1e-5)
    assert not M.mean_motion_magnitude_fast(np.zeros_like(S)).any()


def test_moving_mask_of_a_pure_mode_follows_its_amplitude():
    # D_t = 2 |S_1| cos(...) on x: mean |D_t| = (2/pi) * 2|S_1| for a pure cosine over whole periods.
    S = np.zeros((K, 2, H, W), np.complex64)
    S[1, 0, :, :2] = 1.0  # mean |D| = 4 / pi ~ 1.27 px > 0.5
    S[1, 0, :, 2] = 0.3  # 0.38 px < 0.5
    mag = M.mean_motion_magnitude_fast(S, 150)
    assert mag[0, 0] == pytest.approx(4 / np.pi, rel=1e-3)
    mask = M.moving_mask(S, num_frames=150)
    assert mask[:, :2].all() and not mask[:, 2:].any()


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert M.mask_iou(a, b) == 1.0  # both empty
    a[0, :2] = True
    assert M.mask_iou(a, b) == 0.0
    b[0, 1:3] = True  # intersection 1, union 3
    assert M.mask_iou(a, b) == pytest.approx(1 / 3)
    assert M.mask_iou(a, a) == 1.0
    with pytest.raises(ValueError):
        M.mask_iou(a, np.zeros((3, 3), bool))


def test_power_ratio_and_per_frequency_power():
    S = np.zeros((K, 2, H, W), np.complex64)
    S[2, 1, 0, 0] = 3 + 4j
    P = M.power_per_frequency(S)
    np.testing.assert_allclose(P, [0, 0, 25, 0])
    r = M.power_ratio(2 * P, P)
    assert r[2] == pytest.approx(2.0) and np.isnan(r[0])


def test_loop_closure_errors_zero_for_whole_window_loops():
    S = _random_volume(4)
    errs = M.loop_closure_errors(S, [150, 90], num_frames=150)
    assert errs[150.0] < 1e-4
    assert errs[90.0] > 0.1


def test_accumulator_and_bar_check():
    truth = _random_volume(5)
    acc = M.ScoreAccumulator(SCALES)
    row = acc.add(truth, truth)
    assert row["l1"] == 0 and row["mask_iou"] == 1.0
    zero = M.ScoreAccumulator(SCALES)
    zero.add(ZeroMotion(K).predict(np.zeros((H, W, 3), np.uint8)), truth)
    s_model, s_zero = acc.summary(), zero.summary()
    assert s_model["power_ratio"] == pytest.approx([1.0] * K)
    assert s_zero["l1"] > 0 and s_zero["mask_iou"] == 0.0
    bar = M.bar_check(s_model, s_zero, s_zero)
    assert bar["all_pass"] and bar["whole_l1"]["limit"] == pytest.approx(0.6 * s_zero["l1"])
    assert not M.bar_check(s_zero, s_zero, s_zero)["all_pass"]


def test_mean_prior_is_the_mean_modulus_and_round_trips(tmp_path):
    vols = [_random_volume(s) for s in range(3)]
    prior = fit_mean_prior(vols)
    np.testing.assert_allclose(prior.amplitude, np.mean([np.abs(v) for v in vols], axis=0), rtol=1e-6)
    assert prior.count == 3
    path = tmp_path / "prior.npz"
    prior.save(path)
    back = MeanPrior.load(path)
    np.testing.assert_array_equal(back.amplitude, prior.amplitude)
    S = back.predict(None, (W, H))
    assert S.dtype == np.complex64 and np.all(S.imag == 0)
    assert back.predict(None, (2 * W, H)).shape == (K, 2, H, 2 * W)


def test_regression_adapter_loads_any_from_pretrained_class(monkeypatch, tmp_path):
    import sys
    import types

    from image_dynamics.evaluation.baselines import BaselineError, RegressionBaseline

    class FakeNet:
        @classmethod
        def from_pretrained(cls, folder, device="cpu"):
            return cls()

        def predict(self, image):  # its own grid: half the truth's size
            return np.ones((K, 2, H, W), np.complex64)

    module = types.ModuleType("image_dynamics.model.regression")
    FakeNet.__module__ = module.__name__
    module.FakeNet = FakeNet
    monkeypatch.setitem(sys.modules, "image_dynamics.model.regression", module)
    reg = RegressionBaseline.load(tmp_path)
    S = reg.predict(np.zeros((H, W, 3), np.uint8), (2 * W, 2 * H))
    assert S.shape == (K, 2, 2 * H, 2 * W)
    np.testing.assert_allclose(S[:, 0].real, 2.0, rtol=1e-5)  # x vectors scale with the width
    with pytest.raises(BaselineError):
        RegressionBaseline.load(tmp_path / "missing")
