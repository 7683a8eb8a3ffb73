"""The shipped default model (``models/default``) on a held-out procedural scene, on CPU.

The scene's seed lies in the test range (10^9 and up), which the training split never uses, so the
model has never seen it. The model must put clearly non-zero motion where the scene truly moves
and near-zero motion where it is still. Set ``IMAGE_DYNAMICS_TEST_MODEL`` to check another model
folder of the same format.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from image_dynamics.evaluation.metrics import mean_motion_magnitude_fast
from image_dynamics.synth.dataset import make_pair
from image_dynamics.synth.modal_field import volume_from_modal

REPO = Path(__file__).resolve().parents[2]
MODEL = Path(os.environ.get("IMAGE_DYNAMICS_TEST_MODEL", REPO / "models" / "default"))
HELD_OUT_SEEDS = (1_000_000_009, 1_000_000_011)  # laundry, trees  # the synth test split starts at 10^9


@pytest.fixture(scope="module")
def predictor():
    import torch

    from image_dynamics.model.pipeline import MotionPredictor

    assert (MODEL / "model.safetensors").is_file(), f"the default model is missing from {MODEL}"
    torch.set_num_threads(1)
    return MotionPredictor.from_pretrained(MODEL, device="cpu").eval()


@pytest.mark.parametrize("seed", HELD_OUT_SEEDS)
def test_default_model_moves_what_moves_and_keeps_still_what_is_still(predictor, seed):
    pair = make_pair(seed)
    truth = volume_from_modal(pair["idx"], pair["u"], pair["A"])  # (K, 2, 160, 256), pixels
    H, W = truth.shape[2:]
    S = predictor.predict(pair["image"], seed=0, size=(W, H))
    assert S.shape == truth.shape and np.isfinite(S).all()

    true_mag = mean_motion_magnitude_fast(truth)
    pred_mag = mean_motion_magnitude_fast(S)
    moving = true_mag > 0.5
    still = true_mag < 0.02
    assert moving.mean() > 0.02 and still.mean() > 0.05, "the held-out scene should have both regions"

    moving_pred = float(np.median(pred_mag[moving]))
    still_pred = float(np.median(pred_mag[still]))
    # Measured for the shipped model: medians 0.42 / 0.31 px moving (truth 0.99 / 0.76 px: the model
    # under-predicts amplitude, see its card) and 0.00006 / 0.00003 px still. An untrained or collapsed model
    # gives < 0.01 px everywhere (the pilot model: 0.010 / 0.003 px), so these bounds can fail.
    assert moving_pred > 0.1, f"median predicted motion on moving pixels only {moving_pred:.3f} px"
    assert still_pred < 0.01, f"median predicted motion on still pixels {still_pred:.4f} px"
    assert moving_pred > 20 * still_pred

def test_backend_serves_the_default_model_and_matches_it_in_process(predictor, tmp_path):
    """#4's round trip with the shipped model: ``serve`` without a model flag loads models/default."""
    from test_service import ServerProcess

    from image_dynamics.protocol import BackendClient

    args = ["--bind", "tcp://127.0.0.1:0"]
    if "IMAGE_DYNAMICS_TEST_MODEL" in os.environ:
        args += ["--model", str(MODEL)]
    server = ServerProcess(tmp_path, *args)
    try:
        pair = make_pair(HELD_OUT_SEEDS[0])
        with BackendClient(server.address) as client:
            info = client.hello()
            result = client.predict(pair["image"], seed=3, steps=8, size=(128, 80))
    finally:
        assert server.stop() == 0
    assert info["model"]["untrained_test_model"] is False
    assert info["model"]["resolution"] == list(predictor.config.resolution)
    expected = predictor.predict(pair["image"], seed=3, steps=8, size=(128, 80))
    assert result.S.shape == (16, 2, 80, 128)
    np.testing.assert_allclose(result.S, expected, rtol=1e-4, atol=1e-5 * float(np.abs(expected).max()))


def test_shipped_regression_baseline_loads_and_predicts_what_its_card_says():
    """models/regression-baseline (the card's third baseline) is a valid folder, and it predicts what its
    card says it learned: (almost exactly) zero motion on a held-out scene."""
    import torch

    from image_dynamics.evaluation.baselines import RegressionBaseline

    torch.set_num_threads(1)
    baseline = RegressionBaseline.load(REPO / "models" / "regression-baseline")
    pair = make_pair(HELD_OUT_SEEDS[1])
    S = baseline.predict(pair["image"], size=(256, 160))
    assert S.shape == (16, 2, 160, 256) and np.isfinite(S).all()
    assert float(np.abs(S).max()) < 1e-3  # collapsed to zero motion (see its card)
