"""Procedural scene generator: determinism, exact ground truth, consistency with the rendered video."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from image_dynamics.motion.spectral import NUM_FRAMES, motion_to_spectral
from image_dynamics.motion.volume_file import load_volume
from image_dynamics.synth import dataset, wind
from image_dynamics.synth.modal_field import coordinates, volume_from_modal, zero_dc
from image_dynamics.synth.render import visible_modal
from image_dynamics.synth.scene import RECIPES, make_scene


@pytest.fixture(scope="module")
def meadow():
    return make_scene(11, recipe="meadow")


def test_same_seed_same_bytes():
    a, b = make_scene(123), make_scene(123)
    assert a.description == b.description
    assert np.array_equal(a.frame0(), b.frame0())
    for x, y in zip(a.modal(), b.modal()):
        assert np.array_equal(x, y)
    assert np.array_equal(a.render_frames([7, 33]), b.render_frames([7, 33]))
    assert not np.array_equal(a.frame0(), make_scene(124).frame0())


def test_shapes_and_dtypes(meadow):
    img = meadow.frame0()
    assert img.shape == (160, 256, 3) and img.dtype == np.uint8
    idx, u, A = meadow.modal()
    assert idx.shape == (4, 160, 256) and idx.dtype == np.uint16
    assert u.shape == (4, 2, 160, 256) and u.dtype == np.float32
    assert A.shape == (meadow.num_sources + 1, 16) and A.dtype == np.complex64
    assert int(idx.max()) <= meadow.num_sources
    S = meadow.spectral_volume()
    assert S.shape == (16, 2, 160, 256) and S.dtype == np.complex64
    assert meadow.render_frames([5]).shape == (1, 160, 256, 3)


def test_volume_equals_fft_of_displacements_and_starts_at_rest(meadow):
    D = meadow.displacement_gt()  # all 150 frames
    assert D.shape == (NUM_FRAMES, 2, 160, 256)
    assert np.abs(D[0]).max() < 1e-5  # a_m(0) = 0 for every source
    S = meadow.spectral_volume()
    assert np.abs(S - motion_to_spectral(D)).max() < 1e-4
    moving = meadow.moving_mask()
    assert np.all(S[:, :, ~moving] == 0)  # static pixels: exactly zero
    assert np.abs(D).max() > 0.3


def test_modal_coordinates_start_at_zero():
    rng = np.random.default_rng(0)
    A = zero_dc(rng.standard_normal((5, 16)) + 1j * rng.standard_normal((5, 16)))
    assert np.all(A[0] == 0) and np.all(np.abs(A[:, 0].imag) == 0)
    assert np.abs(coordinates(A, [0.0])).max() < 1e-5


@pytest.mark.parametrize("seed,recipe", [(8, "laundry"), (6, "closeup")])
def test_rendered_video_follows_ground_truth(seed, recipe):
    scene = make_scene(seed, recipe=recipe)
    times = [0, 23, 61, 97]
    # a light blur on both sides keeps bilinear resampling of fine photo texture out of the comparison
    frames = np.stack([cv2.GaussianBlur(f, (0, 0), 0.8) for f in scene.render_frames(times, effects=False).astype(np.float32)])
    D = scene.displacement_gt(times)
    H, W = frames.shape[1:3]
    gy, gx = np.mgrid[0:H, 0:W].astype(np.float32)
    moving = scene.moving_mask()
    _, _, which = visible_modal(scene.layers)
    top = scene.layers
    # interior pixels of their layer (no edges), not covered by any layer in front at frame 0
    interior = np.zeros((H, W), bool)
    for li, L in enumerate(top):
        solid = cv2.erode((L.alpha > 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        interior |= solid & (which == li)
    sel = moving & interior
    assert sel.sum() > 200
    for k in range(1, len(times)):
        warped = cv2.remap(frames[k], gx + D[k, 0], gy + D[k, 1], cv2.INTER_LINEAR)
        diff = np.abs(warped - frames[0]).mean(axis=2)[sel]
        assert np.median(diff) < 2.0, (k, np.median(diff))
        assert np.mean(diff < 12) > 0.8
    # and the motion is real: where it moves > 1.5 px, uncompensated frames differ much more
    k = int(np.argmax([np.hypot(D[i, 0], D[i, 1])[sel].mean() for i in range(len(times))]))
    big = sel & (np.hypot(D[k, 0], D[k, 1]) > 1.5)
    assert big.sum() > 50
    raw = np.abs(frames[k] - frames[0]).mean(axis=2)[big]
    comp = np.abs(cv2.remap(frames[k], gx + D[k, 0], gy + D[k, 1], cv2.INTER_LINEAR) - frames[0]).mean(axis=2)[big]
    assert raw.mean() > 1.5 * comp.mean()


def test_every_recipe_has_moving_and_static_parts():
    for i, recipe in enumerate(RECIPES):
        scene = make_scene(1000 + i, recipe=recipe)
        frac = scene.moving_mask().mean()
        assert 0.001 < frac < 0.97, (recipe, frac)  # candle flames are small
        assert scene.recipe == recipe and recipe in scene.description


def test_camera_effects_can_be_switched_off(meadow):
    clean, noisy = meadow.frame0(effects=False), meadow.frame0()
    assert not np.array_equal(clean, noisy)
    assert np.abs(clean.astype(int) - noisy.astype(int)).mean() < 6


def test_natural_frequency_rules():
    L = np.array([0.2, 0.4, 0.8])
    f = wind.cantilever_frequency(L, 0.003, 200.0, fmin=0.0, fmax=100.0)
    assert np.all(np.diff(f) < 0)  # longer sways slower
    assert wind.cantilever_frequency(0.4, 0.002, 200.0, fmin=0, fmax=100) < wind.cantilever_frequency(0.4, 0.004, 200.0, fmin=0, fmax=100)
    assert wind.cantilever_frequency(0.4, 0.003, 200.0, 2.0, fmin=0, fmax=100) < wind.cantilever_frequency(0.4, 0.003, 200.0, 0.0, fmin=0, fmax=100)
    p = wind.pendulum_frequency(np.array([0.25, 1.0]))
    assert p[0] > p[1] and abs(p[1] - np.sqrt(9.81) / (2 * np.pi)) < 1e-6
    H = wind.oscillator_response(1.0, 0.1)
    assert abs(H[0] - 1) < 1e-12 and abs(abs(H[5]) - 5.0) < 1e-6  # bin 5 = 1.0 Hz: 1 / (2 zeta)


def test_shards_round_trip_and_resume(tmp_path):
    m = dataset.build_dataset(tmp_path, train_count=3, test_count=2, workers=1, shard_size=2, progress=False)
    assert (tmp_path / "train" / "shard_0000.npz").is_file() and (tmp_path / "train" / "shard_0001.npz").is_file()
    assert json.loads((tmp_path / "manifest.json").read_text())["train"]["count"] == 3
    assert m["bytes_per_pair"] > 0 and m["test"]["seeds"][0] >= 10**9
    train, test = dataset.ShardDataset(tmp_path, "train"), dataset.ShardDataset(tmp_path, "test")
    assert len(train) == 3 and len(test) == 2
    for ds, i, seed in ((train, 2, 2), (test, 1, 10**9 + 1)):
        img, S = ds[i]
        scene = make_scene(seed)
        assert np.array_equal(img, scene.frame0())
        exact = scene.spectral_volume()
        # float16 mode shapes: the volume is still exact to well below 0.01 px
        assert np.abs(S - exact).max() < 0.01
        assert ds.modal(i)["seed"] == seed
    again = dataset.build_dataset(tmp_path, train_count=3, test_count=2, workers=1, shard_size=2, progress=False)
    assert again["shards_skipped"] == 3 and again["pairs_this_run"] == 0


def test_float16_mode_shapes_error_is_tiny():
    worst = 0.0
    for seed in (3, 4, 8):
        idx, u, A = make_scene(seed).modal()
        S32 = volume_from_modal(idx, u, A)
        S16 = volume_from_modal(idx, u.astype(np.float16), A)
        worst = max(worst, float(np.abs(S32 - S16).max()))
    assert worst < 0.01


def test_clip_files(tmp_path):
    (npz,) = dataset.write_clips(tmp_path, 1, seed0=7, width=128, height=80, progress=False)
    frames = dataset.read_video(npz.with_suffix(".mkv"))
    vol = load_volume(npz)
    assert frames.shape == (150, 80, 128, 3)
    assert np.array_equal(frames[0], vol.image)
    assert vol.S.shape == (16, 2, 80, 128) and vol.meta["seed"] == 7 and vol.source == "synth"
