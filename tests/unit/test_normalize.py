"""Frequency-adaptive normalization (paper Eq. 4): exact inverse, fitted percentiles, JSON."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from image_dynamics.motion.normalize import CHANNEL_ORDER, FrequencyScales, denormalize, fit_scales, normalize


def random_volumes(n, K=4, H=5, W=6, seed=0):
    rng = np.random.default_rng(seed)
    decay = (1.0 / (1 + np.arange(K)))[:, None, None, None]
    for _ in range(n):
        S = rng.normal(size=(K, 2, H, W)) + 1j * rng.normal(size=(K, 2, H, W))
        yield (S * decay * rng.uniform(0.5, 2.0)).astype(np.complex64)


def test_round_trip_exact():
    vols = list(random_volumes(3))
    sc = fit_scales(vols)
    for S in vols:
        x = normalize(S, sc)
        assert x.shape == (4, 4, 5, 6) and x.dtype == np.float32
        back = denormalize(x, sc)
        assert back.dtype == np.complex64
        np.testing.assert_allclose(back, S, rtol=1e-6, atol=0)


@settings(max_examples=25, deadline=None)
@given(
    arrays(np.float64, (2, 3, 2, 2, 3), elements=st.floats(-1e3, 1e3, allow_subnormal=False)),
    arrays(np.float64, (3,), elements=st.floats(1e-4, 1e2)),
)
def test_round_trip_property(parts, scales):
    S = (parts[0] + 1j * parts[1]).astype(np.complex64)
    sc = FrequencyScales(scales)
    back = denormalize(normalize(S, sc), sc)
    np.testing.assert_allclose(back, S, rtol=1e-6, atol=1e-30)


def test_channel_order_and_signed_sqrt():
    S = np.zeros((1, 2, 1, 1), np.complex64)
    S[0, 0, 0, 0] = 4 - 9j
    S[0, 1, 0, 0] = -16 + 1j
    x = normalize(S, FrequencyScales(np.array([1.0])))
    assert CHANNEL_ORDER == ("x_re", "y_re", "x_im", "y_im")
    np.testing.assert_allclose(x[0, :, 0, 0], [2, -4, -3, 1])


def test_batched_input():
    vols = np.stack(list(random_volumes(2)))
    sc = fit_scales(vols)  # one (B, K, 2, H, W) batch
    x = normalize(vols, sc)
    assert x.shape == (2, 4, 4, 5, 6)
    np.testing.assert_allclose(denormalize(x, sc), vols, rtol=1e-6)


def test_fitted_scale_is_the_95th_percentile():
    vols = list(random_volumes(4))
    sc = fit_scales(iter(vols))
    stack = np.stack(vols)
    for k in range(4):
        mags = np.concatenate([np.abs(stack[:, k].real).ravel(), np.abs(stack[:, k].imag).ravel()])
        assert sc.scales[k] == pytest.approx(np.percentile(mags, 95.0), rel=1e-12)
    assert sc.fit["method"] == "exact" and sc.fit["num_volumes"] == 4
    assert sc.fit["num_values_per_freq"] == 4 * 4 * 5 * 6
    mod = fit_scales(vols, magnitude="complex_modulus")
    assert mod.scales[1] == pytest.approx(np.percentile(np.abs(stack[:, 1]), 95.0), rel=1e-12)
    assert np.all(mod.scales > sc.scales)  # the modulus is larger than either part


def test_zero_motion_frequency_is_floored():
    vols = list(random_volumes(2))
    for S in vols:
        S[2] = 0
    sc = fit_scales(vols, min_scale=1e-4)
    assert sc.raw_scales[2] == 0 and sc.scales[2] == 1e-4
    x = normalize(vols[0], sc)
    assert np.all(np.isfinite(x)) and np.all(x[2] == 0)
    assert np.all(np.isfinite(denormalize(x, sc)))


def test_json_round_trip(tmp_path):
    sc = fit_scales(random_volumes(2), clip=3.0)
    again = FrequencyScales.from_json(sc.to_json())
    np.testing.assert_array_equal(again.scales, sc.scales)
    np.testing.assert_array_equal(again.raw_scales, sc.raw_scales)
    assert (again.percentile, again.magnitude, again.transform, again.clip, again.min_scale) == (
        95.0, "per_real_value", "signed_sqrt", 3.0, 1e-4,
    )
    assert again.channel_order == CHANNEL_ORDER and again.fit == sc.fit
    sc.save(tmp_path / "scales.json")
    assert FrequencyScales.load(tmp_path / "scales.json").to_dict() == sc.to_dict()
    with pytest.raises(ValueError):
        FrequencyScales.from_json('{"format": "something else"}')


def test_clip_option():
    S = np.zeros((1, 2, 1, 2), np.complex64)
    S[0, 0, 0] = [100.0, 0.25]
    x = normalize(S, FrequencyScales(np.array([1.0]), clip=2.0))
    np.testing.assert_allclose(x[0, 0, 0], [2.0, 0.5])  # default is no clipping: 10 -> 2 only here
    assert normalize(S, FrequencyScales(np.array([1.0])))[0, 0, 0, 0] == pytest.approx(10.0)


def test_streaming_subsample_close_to_batch():
    vols = list(random_volumes(30, K=3, H=16, W=16, seed=5))  # 3072 values per freq and volume
    exact = fit_scales(vols)
    sub = fit_scales(iter(vols), max_samples=5000, seed=1)
    assert sub.fit["method"] == "bottom_k_subsample"
    np.testing.assert_allclose(sub.scales, exact.scales, rtol=0.05)
    again = fit_scales(iter(vols), max_samples=5000, seed=1)
    np.testing.assert_array_equal(again.scales, sub.scales)  # seeded: reproducible


def test_errors():
    with pytest.raises(ValueError):
        fit_scales([])
    with pytest.raises(ValueError):
        fit_scales([np.zeros((2, 2, 3, 3), np.float32)])  # not complex
    with pytest.raises(ValueError):
        FrequencyScales(np.array([1.0, 0.0]))
    with pytest.raises(ValueError):
        FrequencyScales(np.array([1.0]), magnitude="l2")
    sc = FrequencyScales(np.ones(3))
    with pytest.raises(ValueError):
        normalize(np.zeros((4, 2, 2, 2), np.complex64), sc)
    with pytest.raises(ValueError):
        denormalize(np.zeros((3, 2, 2, 2), np.float32), sc)
