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
    assert vol.meta["threads"] == 1  # identical bytes need the same thread count: recorded
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


def _one_error(r, *words):
    """Exit 2, no traceback, one error line (plus its hint) naming ``words``."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and all(w in errors[0] for w in words), r.stderr


def _no_partials(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if ".partial" in p.name]


@pytest.mark.parametrize("case", ["folder", "proc", "under_a_file", "preview_folder"])
def test_unwritable_outputs_are_refused_before_the_model_loads(run_cli, photo, tmp_path, case):
    (tmp_path / "dir.npz").mkdir()
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "plain").write_text("a file, not a folder")
    out, extra, words = {
        "folder": (tmp_path / "dir.npz", [], ("--out", "is a folder")),
        "proc": ("/proc/x.npz", [], ("cannot write /proc/x.npz",)),
        "under_a_file": (tmp_path / "plain" / "x.npz", [], ("cannot write", "not a folder")),
        "preview_folder": (tmp_path / "o.npz", ["--preview", tmp_path / "dir.png"], ("--preview", "is a folder")),
    }[case]
    # The model folder does not exist either: the output check comes first, before any loading.
    r = run_cli("predict", photo, "--out", out, "--model", tmp_path / "nowhere", *extra)
    _one_error(r, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.npz", "dir.png", "plain"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(run_cli, photo, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = run_cli("predict", photo, "--out", ro / "x.npz", "--model", tmp_path / "nowhere")
        _one_error(r, "cannot write", "Permission denied")
    finally:
        ro.chmod(0o755)


def test_out_in_new_folders_is_written_whole(run_cli, tiny_model, photo, tmp_path):
    out = tmp_path / "new" / "deeper" / "m.npz"
    r = _predict(run_cli, photo, out, tiny_model)
    assert r.returncode == 0, r.stderr
    assert load_volume(out).S.shape[0] == 16
    _no_partials(tmp_path)


@pytest.mark.parametrize("flag, value", [
    ("--loop-strength", "nan"), ("--loop-strength", "inf"), ("--loop-strength", "1e30"), ("--loop-strength", "-1"),
    ("--seed", "-1"), ("--seed", str(2**63)), ("--seed", str(2**64)),
])
def test_out_of_range_numbers_are_refused_before_sampling(run_cli, tiny_model, photo, tmp_path, flag, value):
    out = tmp_path / "o.npz"
    r = _predict(run_cli, photo, out, tiny_model, "--loop", f"{flag}={value}")
    _one_error(r, flag)
    assert "sampling" not in r.stderr and not out.exists()


def test_largest_seed_is_accepted(run_cli, tiny_model, photo, tmp_path):
    out = tmp_path / "o.npz"
    r = _predict(run_cli, photo, out, tiny_model, "--steps", "1", "--seed", str(2**63 - 1))
    assert r.returncode == 0, r.stderr
    assert load_volume(out).meta["seed"] == 2**63 - 1


@pytest.mark.parametrize("damage", ["truncated_weights", "garbage_config"])
def test_damaged_model_is_a_user_error(run_cli, tiny_model, photo, tmp_path, damage):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_model, bad)
    if damage == "truncated_weights":
        data = (bad / "model.safetensors").read_bytes()
        (bad / "model.safetensors").write_bytes(data[:1000])
    else:
        (bad / "config.json").write_text("{ not json")
    out = tmp_path / "o.npz"
    r = _predict(run_cli, photo, out, bad)
    _one_error(r, "cannot load the model")
    assert "download the model again" in r.stderr and not out.exists()


def test_extreme_sizes_need_8_px_sides_and_keep_the_preview_small(run_cli, tiny_model, tmp_path):
    r = run_cli("predict", tmp_path / "any.png", "--out", tmp_path / "o.npz", "--size", "3000x1")
    _one_error(r, "--size 3000x1 is too small")
    # A 3000 x 8 photo: the default output is 48 x 8 (the tiny model's longer side), not 48 x 1 ...
    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), np.random.default_rng(0).integers(0, 256, (8, 3000, 3), dtype=np.uint8))
    out = tmp_path / "wide.npz"
    r = _predict(run_cli, wide, out, tiny_model, "--steps", "1")
    assert r.returncode == 0, r.stderr
    assert (load_volume(out).width, load_volume(out).height) == (48, 8)
    # ... and a 3000 x 8 output's preview has tiles of bounded width (not 90,000 px wide).
    preview = tmp_path / "wide-preview.png"
    r = _predict(run_cli, wide, out, tiny_model, "--steps", "1", "--size", "3000x8", "--preview", preview)
    assert r.returncode == 0, r.stderr
    pic = cv2.imread(str(preview))
    assert pic is not None and pic.shape[1] <= 2 * 4 * 240 + 240 + 12


def _fake_engine(S):
    """A stand-in engine for in-process runs of ``predict`` (the CLI code around the model)."""
    from image_dynamics.model.config import ModelConfig

    class Engine:
        config = ModelConfig.preset("tiny")
        device = "cpu"

        def predict(self, image, *, size, **kwargs):
            return np.broadcast_to(S, (16, 2, size[1], size[0])).astype(np.complex64)

    return Engine()


def test_non_finite_prediction_is_not_written(monkeypatch, tiny_model, photo, tmp_path, capsys):
    from image_dynamics import cli
    from image_dynamics.commands import predict

    monkeypatch.setattr(predict, "load_engine", lambda *a, **k: _fake_engine(np.complex64(np.nan)))
    out = tmp_path / "o.npz"
    code = cli.main(["predict", str(photo), "--out", str(out), "--quiet", "--threads", "1", "--model", str(tiny_model)])
    err = capsys.readouterr().err
    assert code == 2 and "NaN or Inf" in err and "nothing written" in err
    assert not out.exists()
    _no_partials(tmp_path)


def test_preview_failing_after_the_volume_exits_1_and_keeps_it(monkeypatch, tiny_model, photo, tmp_path, capsys):
    from image_dynamics import cli, viz
    from image_dynamics.commands import predict

    def disk_full(path, rgb):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict, "load_engine", lambda *a, **k: _fake_engine(np.complex64(0.5 + 0.25j)))
    monkeypatch.setattr(viz, "save_png", disk_full)
    out = tmp_path / "o.npz"
    code = cli.main(["predict", str(photo), "--out", str(out), "--quiet", "--threads", "1", "--model", str(tiny_model),
                     "--preview", str(tmp_path / "p.png")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write the preview" in err and "was written and is complete" in err
    assert load_volume(out).S.shape == (16, 2, 27, 48)


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
