"""``image-dynamics predict`` as a user runs it: a real subprocess, a tiny random model in tmp."""

from __future__ import annotations

import os
import select
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from image_dynamics.motion.volume_file import load_volume



def cli_path() -> list[str]:
    exe = Path(sys.executable).with_name("image-dynamics")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "image_dynamics.cli"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    from image_dynamics.model.pipeline import MotionPredictor

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    MotionPredictor.random_init("tiny", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def photo(tmp_path_factory, photos_dir):
    """A real photo, cut to 100 x 57 (an aspect unlike the model's 3:2)."""
    img = cv2.imread(str(photos_dir / "dahlia.jpg"))
    img = cv2.resize(img, (100, 57), interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("photos") / "flower.png"
    cv2.imwrite(str(path), img)
    return path


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a few bytes of (bogus) pixel data."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _predict(run_cli, photo, out, model, *extra):
    return run_cli("predict", photo, "--out", out, "--model", model, "--steps", "3", "--threads", "1", "--quiet", *extra)


def test_predict_writes_a_canonical_file_at_size_with_preview(run_cli, tiny_model, photo, tmp_path):
    out, preview = tmp_path / "flower.npz", tmp_path / "flower.png"
    r = _predict(run_cli, photo, out, tiny_model, "--size", "64x40", "--seed", "7", "--preview", preview)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    vol = load_volume(out)
    assert vol.S.shape == (16, 2, 40, 64) and vol.S.dtype == np.complex64
    assert np.all(np.isfinite(vol.S)) and np.abs(vol.S).max() > 0
    assert vol.image.shape == (40, 64, 3)
    assert vol.source == "predict"
    assert vol.meta["seed"] == 7 and vol.meta["steps"] == 3 and vol.meta["input_size"] == [100, 57]
    assert vol.num_frames == 150 and vol.fps == 30.0
    pic = cv2.imread(str(preview))
    assert pic is not None and pic.shape[0] >= 200 and pic.shape[1] >= 3 * 200
    assert pic.std() > 10  # photo, heat map and chart: far from a constant picture
    # Same seed, same bytes of S (same thread count); another seed, another sample.
    again = tmp_path / "again.npz"
    assert _predict(run_cli, photo, again, tiny_model, "--size", "64x40", "--seed", "7").returncode == 0
    assert load_volume(again).S.tobytes() == vol.S.tobytes()
    # Default size (photo aspect, the model's longer side: 100 x 57 -> 48 x 27), other sampler, loop.
    other = tmp_path / "other.npz"
    r = _predict(run_cli, photo, other, tiny_model, "--seed", "8", "--sampler", "dpmpp_2m", "--loop")
    assert r.returncode == 0, r.stderr
    other_vol = load_volume(other)
    assert (other_vol.width, other_vol.height) == (48, 27)
    assert other_vol.meta["sampler"] == "dpmpp_2m"
    assert other_vol.meta["loop_seconds"] == 3.0 and other_vol.meta["loop_frames"] == 90.0


def _bad_inputs(tmp_path):
    zero = tmp_path / "zero.png"
    zero.write_bytes(_png_header_only(0, 0))
    wide = tmp_path / "wide.png"
    wide.write_bytes(_png_header_only(100_000, 64))
    text = tmp_path / "notes.jpg"
    text.write_text("this is a shopping list, not a photo\n")
    return {"zero": (zero, "no pixels"), "wide": (wide, "too large"), "text": (text, "not an image"),
            "missing": (tmp_path / "missing.png", "no such file")}


@pytest.mark.parametrize("case", ["zero", "wide", "text", "missing"])
def test_bad_photos_fail_with_one_clear_line(run_cli, tiny_model, tmp_path, case):
    path, words = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out.npz"
    r = _predict(run_cli, path, out, tiny_model)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1 and words in errors[0], r.stderr
    assert all(ln.startswith("image-dynamics predict: error:") or ln.lstrip().startswith("hint:") for ln in lines)
    assert not out.exists()


def test_missing_model_and_bad_size_are_user_errors(run_cli, photo, tmp_path):
    r = run_cli("predict", photo, "--out", tmp_path / "o.npz", "--model", tmp_path / "nowhere")
    assert r.returncode == 2 and "no model folder" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("predict", photo, "--out", tmp_path / "o.npz", "--size", "64by40")
    assert r.returncode == 2 and "--size" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_cancels_cleanly(tiny_model, photo, tmp_path):
    out = tmp_path / "cancelled.npz"
    proc = subprocess.Popen(
        cli_path() + ["predict", str(photo), "--out", str(out), "--model", str(tiny_model), "--steps", "1000",
                      "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"sampling" not in seen and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                seen += os.read(proc.stderr.fileno(), 4096)
        assert b"sampling" in seen, seen
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (seen + err).decode(errors="replace")
    assert proc.returncode == 130, text
    assert "cancelled after" in text and "Traceback" not in text
    assert not out.exists()


def test_evaluate_scores_model_and_baselines(run_cli, tiny_model, tmp_path):
    """``image-dynamics evaluate`` end to end on a 5-pair synthetic dataset at 64 x 40."""
    import json

    from image_dynamics.synth.dataset import build_dataset

    data = tmp_path / "data"
    build_dataset(data, train_count=3, test_count=2, workers=1, shard_size=3, width=64, height=40, progress=False)
    out = tmp_path / "eval.json"
    r = run_cli("evaluate", "--model", tiny_model, "--data", data, "--steps", "2", "--seeds", "2", "--loop-seconds", "2,4",
                "--loop-limit", "1", "--cache-dir", tmp_path / "cache", "--threads", "1", "--quiet", "--json", out)
    assert r.returncode == 0, r.stderr
    assert "bar check" in r.stdout and "mean_prior" in r.stdout
    res = json.loads(out.read_text())
    assert res["test_pairs"] == 2 and res["mean_prior"]["pairs"] == 3 and res["resolution"] == [64, 40]
    assert set(res["methods"]) == {"model", "zero", "mean_prior"}
    assert res["methods"]["zero"]["power_ratio"][1] in (0.0, None)
    assert set(res["loop_closure_px"]) == {"2s", "4s"}
    assert res["loop_closure_px"]["2s"]["guided_images"] == 1
    assert res["diversity"]["amplitude_l1"] > 0
    assert set(res["bar"]) >= {"whole_l1", "moving_l1", "mask_iou", "all_pass"}
    assert len(list((tmp_path / "cache").glob("mean_prior_train_3_*.npz"))) == 1


def test_evaluate_ceilings_scores_the_oracles(run_cli, tiny_model, tmp_path):
    """``image-dynamics evaluate-ceilings`` on a 2-pair test split: every oracle row, strict JSON."""
    import json

    from image_dynamics.synth.dataset import build_dataset
    from image_dynamics.synth.scene import make_scene

    data = tmp_path / "data"
    build_dataset(data, train_count=1, test_count=2, workers=1, shard_size=2, width=64, height=40, progress=False)
    out = tmp_path / "ceilings.json"
    r = run_cli("evaluate-ceilings", "--model", tiny_model, "--data", data, "--limit", "0", "--wind-draws", "200",
                "--json", out)
    assert r.returncode == 0, r.stderr
    assert "wind-blind, median level" in r.stdout and "mask IoU >= 0.7" in r.stdout
    res = json.loads(out.read_text())
    assert res["test_pairs"] == 2
    rows = res["rows"]
    assert set(rows) == {"zero", "resolution 48x32", "VAE of the model (48x32)", "wind-blind, median level",
                         "wind-blind, sampled level"}
    assert all(row["count"] == 2 for row in rows.values())
    assert rows["zero"]["power_ratio"][1] in (0.0, None)
    levels = [make_scene(1_000_000_000 + i, 64, 40).info["level_px"] for i in range(2)]
    assert all(0.3 <= v <= 10 for v in levels)
    assert rows["wind-blind, median level"]["l1"] != rows["zero"]["l1"]  # the truth, rescaled: not zero
