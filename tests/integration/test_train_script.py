"""scripts/train_model.sh, the whole recipe in one command, at the tiny preset: data, cache, VAE,
both denoiser stages, the regression baseline, export and scores; a second run resumes every stage
and trains nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

TINY = {"PRESET": "tiny", "TRAIN_PAIRS": "6", "TEST_PAIRS": "2", "WORKERS": "1", "VAE_STEPS": "2", "VAE_BATCH": "2",
        "DEN1_STEPS": "2", "DEN_BATCH": "2", "DEN2_STEPS": "2", "DEN2_BATCH": "1", "REG_STEPS": "2", "THREADS": "1",
        "DEVICE": "cpu", "EVAL_LIMIT": "1", "EVAL_SEEDS": "1", "OMP_NUM_THREADS": "1"}


def _run(tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **TINY, "DATA": str(tmp_path / "data")}
    return subprocess.run(["bash", str(REPO / "scripts" / "train_model.sh"), str(tmp_path / "model"), str(tmp_path / "runs")],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_recipe_trains_exports_scores_and_resumes(tmp_path):
    from image_dynamics.model.pipeline import MotionPredictor

    first = _run(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    scores = json.loads((tmp_path / "runs" / "scores.json").read_text())
    assert {"model", "zero", "mean_prior", "regression"} <= set(scores["methods"])
    model = MotionPredictor.from_pretrained(tmp_path / "model")
    assert model.config.preset == "tiny"
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    again = _run(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    out = again.stdout + again.stderr
    assert out.count("nothing to do") == 4, out[-3000:]  # VAE, both stages, regression
    assert "procedural data" not in out and "training cache" not in out
    reloaded = MotionPredictor.from_pretrained(tmp_path / "model").state_dict()
    assert all(np.array_equal(weights[k].numpy(), reloaded[k].numpy()) for k in weights)


def test_recipe_without_arguments_prints_its_usage():
    res = subprocess.run(["bash", str(REPO / "scripts" / "train_model.sh")], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "MODEL_DIR" in res.stderr and "resum" in res.stderr
