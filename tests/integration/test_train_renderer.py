"""``image-dynamics train renderer`` end to end with a tiny config, resume, export; and the
shipped renderer (when present) against mesh warping on a held-out clip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["--scenes", "2", "--eval-scenes", "1", "--times", "2", "--size", "64x48", "--crop", "32x32",
        "--channels", "4,8,8", "--batch-size", "2", "--eval-every", "2", "--ckpt-every", "2", "--threads", "1",
        "--no-progress"]


def test_train_resume_export(tmp_path, run_cli, capsys):
    os.environ["OMP_NUM_THREADS"] = "1"
    from image_dynamics.cli import main

    data, run, model = tmp_path / "data", tmp_path / "run", tmp_path / "model"
    # First leg in-process (saves a process start-up); the resumed leg below runs the real CLI.
    assert main(["train", "renderer", "--out", str(run), "--data", str(data), "--steps", "2", *TINY]) == 0
    assert len(list((data / "train").glob("scene_*.npz"))) == 2
    assert len(list((data / "heldout").glob("scene_*.npz"))) == 1
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["heldout_seeds"][0] >= 2_000_000_000 > cfg["data"]["train_seeds"][1]
    # A second run into the same folder must ask for --resume, then continue to step 4.
    assert main(["train", "renderer", "--out", str(run), "--data", str(data), "--steps", "4", *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
    r = run_cli("train", "renderer", "--out", run, "--data", data, "--steps", "4", "--resume", *TINY,
                "--export", model)
    assert r.returncode == 0, r.stderr
    assert "finished at step 4" in r.stdout
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals][-1] == 4 and all(np.isfinite(e["psnr"]) for e in evals)
    assert not any(p.suffix in (".pt", ".pth", ".pkl", ".bin") for p in run.rglob("*"))
    meta = json.loads((model / "config.json").read_text())["meta"]
    assert meta["trained_steps"] == 4

    from image_dynamics.render import make_renderer

    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    frames = make_renderer("splat", model_dir=model).render(img, np.zeros((2, 2, 48, 64), np.float32))
    assert frames.shape == (2, 48, 64, 3)


def test_bad_arguments(tmp_path, capsys):
    from image_dynamics.cli import main

    assert main(["train", "renderer", "--out", str(tmp_path / "r"), "--crop", "999x999", "--data",
                 str(tmp_path / "d")]) == 2
    assert "--crop" in capsys.readouterr().err
    assert main(["evaluate-renderer", "--renderers", "splat,nope"]) == 2
    assert "--renderers" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(not (REPO / "models" / "renderer" / "model.safetensors").is_file(),
                    reason="no shipped renderer model")
def test_shipped_renderer_beats_mesh_warp_on_a_heldout_clip():
    import torch

    from image_dynamics.render import make_renderer
    from image_dynamics.render.quality import psnr
    from image_dynamics.synth import make_scene

    torch.set_num_threads(1)
    scene = make_scene(2_000_200_003, 256, 160)  # a seed no training or monitoring run used
    times = np.arange(0, 150, 10)
    truth = scene.render_frames(times)
    disp = scene.displacement_gt()[times]
    scores = {}
    for kind in ("splat", "mesh"):
        frames = make_renderer(kind, model_dir=REPO / "models" / "renderer" if kind == "splat" else None).render(
            truth[0], disp)
        a = torch.from_numpy(frames[1:]).permute(0, 3, 1, 2).double() / 255
        b = torch.from_numpy(truth[1:]).permute(0, 3, 1, 2).double() / 255
        scores[kind] = float(psnr(a, b).mean())
    assert scores["splat"] > scores["mesh"], scores
