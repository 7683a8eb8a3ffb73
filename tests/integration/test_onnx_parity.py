"""ONNX export of a tiny seeded model and parity of ``--engine onnx`` with torch at the same seed."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from image_dynamics.model.onnx_engine import GRAPH_FILES, MANIFEST_NAME, OnnxExportError, OnnxMotionEngine  # noqa: E402
from image_dynamics.motion.volume_file import load_volume  # noqa: E402

TOL = 1e-3  # relative max error of the spectral volume


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny random model exported with the default exporter (dynamo, opset 18) into MODEL/onnx."""
    import torch

    from image_dynamics.model.onnx_engine import export_onnx, weights_digest
    from image_dynamics.model.pipeline import WEIGHTS_NAME, MotionPredictor

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("onnx") / "tiny"
    predictor = MotionPredictor.random_init("tiny", seed=3)
    predictor.save_pretrained(folder)
    export_onnx(predictor, folder / "onnx", weights_sha256=weights_digest(folder / WEIGHTS_NAME))
    return folder


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(45, 70, 3), dtype=np.uint8)
    img[10:30, 20:50] = (40, 200, 60)
    return img


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_export_writes_graphs_with_their_weights_and_a_manifest(exported):
    onnx_dir = exported / "onnx"
    manifest = json.loads((onnx_dir / MANIFEST_NAME).read_text())
    assert manifest["opset"] >= 17 and manifest["exporter"] == "dynamo"
    assert manifest["weights_sha256"]
    for part, fname in GRAPH_FILES.items():
        entry = manifest["parts"][part]
        assert entry["file"] == fname
        for f in entry["files"]:  # the graph and any .onnx.data side file, together
            assert (onnx_dir / f).is_file()
        assert entry["check_max_abs_error"] < 1e-4


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_onnx_matches_torch_at_the_same_seed(exported, photo, sampler):
    import torch

    from image_dynamics.model.pipeline import MotionPredictor

    torch.set_num_threads(1)
    torch_model = MotionPredictor.from_pretrained(exported)
    engine = OnnxMotionEngine(exported, device="cpu", threads=1)
    assert engine.provider == "CPUExecutionProvider"
    assert set(engine.providers) == set(GRAPH_FILES)
    results = {}
    for seed, size in ((0, None), (5, (70, 45))):
        S_t = torch_model.predict(photo, seed=seed, steps=4, sampler=sampler, size=size)
        S_o = engine.predict(photo, seed=seed, steps=4, sampler=sampler, size=size)
        assert S_o.shape == S_t.shape and S_o.dtype == np.complex64
        assert _rel_err(S_o, S_t) < TOL
        results[seed] = S_t
    # Another seed is another sample, so the parity above is not trivial.
    assert _rel_err(engine.predict(photo, seed=1, steps=4, sampler=sampler), results[0]) > 0.01


def test_onnx_loop_guidance_runs_through_the_torch_vae(exported, photo):
    engine = OnnxMotionEngine(exported, device="cpu", threads=1)
    from image_dynamics.motion.loops import loop_closure_error

    plain = engine.predict(photo, seed=2, steps=4)
    guided = engine.predict(photo, seed=2, steps=4, loop_frames=60, loop_strength=10.0)
    assert loop_closure_error(guided, 60) < loop_closure_error(plain, 60)


def test_cli_export_and_onnx_predict(run_cli, exported, tmp_path):
    """``export-onnx`` (legacy exporter, to another folder) then ``predict --engine onnx`` on it."""
    import cv2
    import torch

    from image_dynamics.model.pipeline import MotionPredictor

    onnx_dir = tmp_path / "ts"
    r = run_cli("export-onnx", "--model", exported, "--out", onnx_dir, "--exporter", "torchscript", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "exported 3 graphs" in r.stdout and json.loads((onnx_dir / MANIFEST_NAME).read_text())["exporter"] == "torchscript"
    img = np.random.default_rng(1).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    photo_path = tmp_path / "p.png"
    cv2.imwrite(str(photo_path), img[:, :, ::-1])
    out = tmp_path / "o.npz"
    r = run_cli("predict", photo_path, "--out", out, "--model", exported, "--engine", "onnx", "--onnx-dir", onnx_dir,
                "--steps", "3", "--seed", "4", "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "CPUExecutionProvider" in r.stderr  # the provider that actually ran is reported ...
    vol = load_volume(out)
    assert vol.meta["provider"] == "CPUExecutionProvider" and vol.meta["engine"] == "onnx"  # ... and recorded
    torch.set_num_threads(1)
    ref = MotionPredictor.from_pretrained(exported).predict(img, seed=4, steps=3, size=(vol.width, vol.height))
    assert _rel_err(vol.S, ref) < TOL
    # Without an export the engine is a clear user error.
    r = run_cli("predict", photo_path, "--out", out, "--model", exported, "--engine", "onnx", "--onnx-dir", tmp_path / "none")
    assert r.returncode == 2 and "export-onnx" in r.stderr and "Traceback" not in r.stderr


def test_stale_export_is_refused(exported, tmp_path):
    import shutil

    from image_dynamics.model.pipeline import MotionPredictor

    other = tmp_path / "other"
    MotionPredictor.random_init("tiny", seed=4).save_pretrained(other)
    shutil.copytree(exported / "onnx", other / "onnx")
    with pytest.raises(OnnxExportError, match="other weights"):
        OnnxMotionEngine(other)


@pytest.mark.parametrize("damage, words", [
    ("missing_side_file", "incomplete"),
    ("garbage_manifest", "cannot be read"),
    ("truncated_graph", "ONNX Runtime cannot load"),
])
def test_damaged_export_is_a_clear_error(exported, tmp_path, damage, words):
    """Every file the manifest lists must be there, and a graph ONNX Runtime cannot parse is named."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(exported, model)
    onnx_dir = model / "onnx"
    manifest = json.loads((onnx_dir / MANIFEST_NAME).read_text())
    if damage == "missing_side_file":
        side = [f for f in manifest["parts"]["denoiser"]["files"] if f != "denoiser.onnx"]
        assert side, "the dynamo exporter writes the weights beside the graph"
        (onnx_dir / side[0]).unlink()
    elif damage == "garbage_manifest":
        (onnx_dir / MANIFEST_NAME).write_text('{"format": "image_dynamics.onnx_export", ')
    else:
        graph = onnx_dir / "denoiser.onnx"
        graph.write_bytes(graph.read_bytes()[:200])
    with pytest.raises(OnnxExportError, match=words):
        OnnxMotionEngine(model, device="cpu", threads=1)


def test_cli_names_a_damaged_export_without_a_traceback(run_cli, exported, tmp_path):
    import shutil

    import cv2

    model = tmp_path / "model"
    shutil.copytree(exported, model)
    (model / "onnx" / "denoiser.onnx").write_bytes(b"\x08garbage")
    photo_path = tmp_path / "p.png"
    cv2.imwrite(str(photo_path), np.full((40, 60, 3), 128, np.uint8))
    out = tmp_path / "o.npz"
    r = run_cli("predict", photo_path, "--out", out, "--model", model, "--engine", "onnx", "--threads", "1", "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "denoiser.onnx" in r.stderr and "export-onnx" in r.stderr and not out.exists()
