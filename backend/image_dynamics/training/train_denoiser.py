"""Train the denoiser in the paper's two stages (section 4.2).

Stage 1 - independent slices. Items are single frequency slices of random pairs (and flips), each
with its own photo, frequency index k (the denoiser's frequency embedding) and timestep; the
frequency attention layers are disabled and frozen. The image encoder trains with the U-Net.
Stage 2 - frequency coordination. Start from a stage-1 run (its EMA weights when it kept them),
enable the frequency attention layers (zero-initialised output, so the model starts exactly where
stage 1 ended), freeze everything else and train ``Denoiser.frequency_attention_parameters()`` on
whole volumes (the K slices of a volume share one timestep; ``model.losses.diffusion_loss``).

Both stages: v- or eps-prediction per the model config, the image condition of each volume (stage
1: each slice) dropped with probability ``cfg_dropout`` (0.1) for classifier-free guidance.

Latents. With ``latents=NAME`` the targets are precomputed latents (``training.latents``);
otherwise each batch's slices are encoded on the fly by the frozen VAE (posterior means, or
samples with ``sample_latents``), whitened with statistics fitted once at the start of stage 1 on
a fixed set of training slices. The VAE (with those statistics in its buffers) is part of the
trained network's state, so every checkpoint is a complete predictor: ``export`` needs nothing else.

Held-out metric: the diffusion loss on a fixed set of test items with fixed timesteps and noise
(the same at every evaluation), with the EMA weights when ``--ema`` is on.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..model.config import ModelConfig
from ..model.image_encoder import ImageEncoder
from ..model.losses import diffusion_loss
from ..model.schedule import NoiseSchedule
from ..model.unet import Denoiser
from ..model.vae import KLVAE
from .data import SliceDataset, Subset, TrainingCache, VolumeDataset, evenly_spaced
from .latents import check_latents_vae, fit_stats_on_slices, load_vae
from .loop import (Runtime, TrainSettings, Trainer, load_checkpoint, model_weights,
                   seed_everything, training_runtime)
from .train_vae import check_resolution

__all__ = ["DenoiserNet", "train_denoiser"]


class DenoiserNet(nn.Module):
    """VAE (frozen) + image encoder + denoiser; ``forward(batch, generator) -> (loss, logs)``."""

    def __init__(self, vae: KLVAE, image_encoder: ImageEncoder, denoiser: Denoiser, config: ModelConfig, *,
                 stage: int, on_the_fly: bool, sample_latents: bool = False) -> None:
        super().__init__()
        self.vae = vae
        self.image_encoder = image_encoder
        self.denoiser = denoiser
        self.schedule = NoiseSchedule.from_config(config.diffusion)
        self.cfg_dropout = config.diffusion.cfg_dropout
        self.stage = stage
        self.on_the_fly = on_the_fly
        self.sample_latents = sample_latents
        for p in self.vae.parameters():
            p.requires_grad_(False)
        if stage == 1:
            denoiser.set_frequency_attention(False)
            for p in denoiser.frequency_attention_parameters():
                p.requires_grad_(False)
        else:
            denoiser.set_frequency_attention(True)
            for p in self.image_encoder.parameters():
                p.requires_grad_(False)
            for p in denoiser.parameters():
                p.requires_grad_(False)
            for p in denoiser.frequency_attention_parameters():
                p.requires_grad_(True)

    def train(self, mode: bool = True) -> "DenoiserNet":
        super().train(mode)
        self.vae.eval()  # frozen parts stay in inference mode
        if self.stage == 2:
            self.image_encoder.eval()
        return self

    def _latents(self, target: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if not self.on_the_fly:
            return target.float()
        with torch.no_grad():
            return self.vae.to_latent(target, sample=self.sample_latents, generator=generator).float()

    def forward(self, batch, generator: torch.Generator | None = None):
        if self.stage == 1:
            image, target, k = batch
            z0 = self._latents(target, generator)
            features = self.image_encoder(image)
            loss = diffusion_loss(self.denoiser, z0, features, self.schedule, cfg_dropout=self.cfg_dropout,
                                  generator=generator, freq_index=k)
        else:
            image, target = batch
            b, K = target.shape[:2]
            z0 = self._latents(target.reshape(b * K, *target.shape[2:]), generator)
            with torch.no_grad():
                features = self.image_encoder(image)
            loss = diffusion_loss(self.denoiser, z0, features, self.schedule, cfg_dropout=self.cfg_dropout,
                                  generator=generator)
        return loss, {}


def train_denoiser(cache_dir: str, settings: TrainSettings, *, stage: int, vae_run: str | None = None,
                   init: str | None = None, latents: str | None = None, model_config: ModelConfig | None = None,
                   flip: bool = True, sample_latents: bool = False, latent_stats_slices: int = 2048,
                   runtime: Runtime | None = None) -> dict[str, Any]:
    if stage not in (1, 2):
        raise UserError(f"--stage must be 1 or 2, got {stage}")
    with training_runtime(settings, runtime) as rt:
        cache = TrainingCache(cache_dir)
        seed_everything(settings.seed, settings.deterministic)
        extra: dict[str, Any] = {}
        if stage == 1:
            if vae_run is None and latents is None:
                raise UserError("stage 1 needs the trained VAE", "pass --vae VAE_RUN (and optionally --latents NAME)")
            lat_info = cache.latents_info(latents) if latents else None
            if vae_run is None:
                vae_run = lat_info["vae"]["checkpoint"]  # type: ignore[index]
            vae, vae_model_config, vae_info = load_vae(vae_run)
            if model_config is None:
                model_config = vae_model_config
            elif model_config.vae != vae_model_config.vae or tuple(model_config.resolution) != tuple(
                    vae_model_config.resolution):
                raise UserError("the VAE settings of --preset differ from the trained VAE's",
                                "omit --preset: stage 1 takes the model settings of the VAE run")
            model_config = copy.deepcopy(model_config)
            model_config.denoiser.frequency_attention = False
            check_resolution(cache, model_config)
            if lat_info is not None:
                check_latents_vae(lat_info, vae_info)
                vae.latent_mean.copy_(torch.tensor(lat_info["latent_mean"]))
                vae.latent_std.copy_(torch.tensor(lat_info["latent_std"]))
                stats_from = f"precomputed latents {latents!r}"
            else:
                fit_stats_on_slices(vae, cache, latent_stats_slices, sample=sample_latents, seed=settings.seed)
                stats_from = f"{latent_stats_slices} evenly spaced training slices"
            torch.manual_seed(settings.seed)  # network init independent of what happened above
            image_encoder = ImageEncoder(model_config.image_encoder)
            denoiser = Denoiser(model_config.denoiser, model_config.num_freqs)
            extra["vae"] = vae_info
        else:
            if init is None:
                raise UserError("stage 2 starts from a stage-1 run", "pass --init STAGE1_RUN")
            ck = load_checkpoint(init)
            task = ck["config"].get("task", {})
            if task.get("name") != "denoiser" or task.get("stage") != 1:
                raise UserError(f"{init} is not a stage-1 denoiser run")
            model_config = ModelConfig.from_dict(ck["config"]["model"])
            model_config.denoiser.frequency_attention = True
            check_resolution(cache, model_config)
            if latents is None and not task.get("on_the_fly", True):
                latents = task.get("latents")
            if latents is None:
                sample_latents = bool(task.get("sample_latents", False))
            vae = KLVAE(model_config.vae)
            image_encoder = ImageEncoder(model_config.image_encoder)
            denoiser = Denoiser(model_config.denoiser, model_config.num_freqs)
            weights = model_weights(ck, use_ema=True)
            parts = {"vae": vae, "image_encoder": image_encoder, "denoiser": denoiser}
            for pname, module in parts.items():
                module.load_state_dict({k[len(pname) + 1:]: v for k, v in weights.items()
                                        if k.startswith(pname + ".")}, strict=True)
            extra["init"] = {"checkpoint": str(Path(ck["path"]).resolve()), "step": int(ck["train_state"]["step"]),
                             "ema": bool(ck["ema"])}
            extra["vae"] = ck["config"].get("vae")
            stats_from = ck["config"].get("latents", {}).get("stats_from", "stage 1")
            if latents is not None:
                lat_info = cache.latents_info(latents)
                if lat_info["vae"]["sha256"] != (extra["vae"] or {}).get("sha256"):
                    raise UserError("the precomputed latents come from another VAE than the stage-1 run's")

        net = DenoiserNet(vae, image_encoder, denoiser, model_config, stage=stage, on_the_fly=latents is None,
                          sample_latents=sample_latents)
        if stage == 1:
            train_set = SliceDataset(cache, "train", flip=flip, latents=latents)
            test = SliceDataset(cache, "test", flip=False, latents=latents)
        else:
            train_set = VolumeDataset(cache, "train", flip=flip, latents=latents)
            test = VolumeDataset(cache, "test", flip=False, latents=latents)
        eval_set = Subset(test, evenly_spaced(len(test), settings.eval_size))
        config = {
            "task": {"name": "denoiser", "stage": stage, "flip": flip, "on_the_fly": latents is None,
                     "latents": latents, "sample_latents": sample_latents},
            "model": model_config.to_dict(),
            "data": cache.describe(),
            "latents": {"mean": [float(x) for x in vae.latent_mean], "std": [float(x) for x in vae.latent_std],
                        "stats_from": stats_from},
            "train": settings.to_dict(),
            **extra,
        }
        return Trainer(net=net, train_set=train_set, eval_set=eval_set, settings=settings, runtime=rt,
                       config=config).run()
