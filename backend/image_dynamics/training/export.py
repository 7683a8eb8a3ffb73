"""Assemble trained runs into a model folder (``MotionPredictor.save_pretrained``).

``export_predictor(denoiser_run, out, vae_run=None)``: a denoiser checkpoint already holds the
VAE it was trained with (frozen, latent whitening statistics in its buffers), the image encoder and
the denoiser, so it is a complete predictor; the frequency scales come from the run's config (the
cache's ``scales.json``). ``vae_run``, when given, is checked against the VAE inside the
checkpoint (same weights), which catches pairing a denoiser with the wrong VAE. EMA weights are
used when the run kept them (``use_ema``). A stage-1 run exports with frequency attention off, a
stage-2 run with it on (``config.json`` says which).

Beside the three files of a saved model the folder gets ``training.json``: the runs, checkpoints,
steps, last held-out metrics and cache the weights came from.

``export_regression(run, out)``: the baseline as ``RegressionPredictor.save_pretrained``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..model.config import ModelConfig
from ..model.pipeline import MotionPredictor
from ..model.regression import RegressionConfig, RegressionNet, RegressionPredictor
from ..motion.normalize import FrequencyScales
from .latents import load_vae
from .loop import load_checkpoint, model_weights

__all__ = ["export_predictor", "export_regression"]


def _provenance(ck: dict, role: str) -> dict[str, Any]:
    cfg = ck["config"]
    st = ck["train_state"]
    return {"role": role, "checkpoint": str(Path(ck["path"]).resolve()), "step": st.get("step"),
            "task": cfg.get("task"), "train": cfg.get("train"), "last_eval": st.get("last_eval"),
            "last_train": st.get("last_train"), "ema": bool(ck.get("ema")), "runtime": cfg.get("runtime"),
            "parameters": cfg.get("parameters")}


def export_predictor(denoiser_run: str | os.PathLike, out: str | os.PathLike, *, vae_run: str | None = None,
                     use_ema: bool = True, name: str | None = None) -> Path:
    ck = load_checkpoint(denoiser_run)
    cfg = ck["config"]
    if cfg.get("task", {}).get("name") != "denoiser":
        raise UserError(f"{denoiser_run} is not a denoiser training run",
                        "pass the --out folder of 'image-dynamics train denoiser'")
    model_config = ModelConfig.from_dict(cfg["model"])
    scales = FrequencyScales.from_dict(cfg["data"]["scales"])
    weights = model_weights(ck, use_ema)
    vae, enc, den = MotionPredictor.build_networks(model_config)
    parts = {"vae": vae, "image_encoder": enc, "denoiser": den}
    unknown = [k for k in weights if k.split(".", 1)[0] not in parts]
    if unknown:
        raise UserError(f"unexpected weights in {ck['path']}: {unknown[:5]}")
    for pname, module in parts.items():
        module.load_state_dict({k[len(pname) + 1:]: v for k, v in weights.items() if k.startswith(pname + ".")},
                               strict=True)
    records = [_provenance(ck, f"denoiser stage {cfg['task'].get('stage')}")]
    if vae_run is not None:
        ref, _, info = load_vae(vae_run)
        ours = vae.state_dict()
        for k, v in ref.state_dict().items():
            if k in ("latent_mean", "latent_std"):
                continue
            if not torch.equal(v, ours[k]):
                raise UserError(f"the denoiser run {denoiser_run} was not trained with the VAE of {vae_run}",
                                f"its VAE came from {(cfg.get('vae') or {}).get('checkpoint')}")
        records.append({"role": "vae", **info})
    elif cfg.get("vae"):
        records.append({"role": "vae", **cfg["vae"]})
    if cfg.get("init"):
        records.append({"role": "stage-1 init", **cfg["init"]})
    predictor = MotionPredictor(model_config, vae, enc, den, scales)
    folder = predictor.save_pretrained(out)
    meta = {"format": "image_dynamics.training_provenance", "name": name or Path(out).name,
            "parameters": predictor.num_parameters(), "frequency_attention": model_config.denoiser.frequency_attention,
            "latents": cfg.get("latents"), "data": {k: v for k, v in cfg["data"].items() if k != "scales"},
            "runs": records}
    (folder / "training.json").write_text(json.dumps(meta, indent=1, default=str))
    return folder


def export_regression(run: str | os.PathLike, out: str | os.PathLike, *, use_ema: bool = True) -> Path:
    ck = load_checkpoint(run)
    cfg = ck["config"]
    if cfg.get("task", {}).get("name") != "regression":
        raise UserError(f"{run} is not a regression-baseline training run")
    rcfg = RegressionConfig.from_dict(cfg["model"])
    net = RegressionNet(rcfg)
    weights = model_weights(ck, use_ema)
    net.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("net.")}, strict=True)
    pred = RegressionPredictor(rcfg, net, FrequencyScales.from_dict(cfg["data"]["scales"]))
    folder = pred.save_pretrained(out)
    meta = {"format": "image_dynamics.training_provenance", "name": Path(out).name,
            "parameters": pred.num_parameters(), "data": {k: v for k, v in cfg["data"].items() if k != "scales"},
            "runs": [_provenance(ck, "regression baseline")]}
    (folder / "training.json").write_text(json.dumps(meta, indent=1, default=str))
    return folder
