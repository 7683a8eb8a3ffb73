"""``MotionPredictor``: photo -> spectral volume, and the saved-model folder format.

A saved model is a folder with three plain files and no pickle anywhere:

* ``config.json``       - ``ModelConfig.to_json()``
* ``model.safetensors`` - all weights and buffers, keys prefixed ``vae.``, ``image_encoder.``,
  ``denoiser.`` (the VAE's latent whitening statistics are buffers, so they travel too)
* ``scales.json``       - the ``FrequencyScales`` of the normalization (``motion.normalize``)

Resize policy. The networks run at their native resolution ``config.resolution`` (W x H, e.g.
256 x 160). The photo is resized (stretched, not letterboxed) to it: the predicted volume must
cover the whole photo and letterbox bars would waste latent pixels on motion of nothing. The
volume is then resampled to the requested output size with ``motion.resample.resample_volume``,
which scales x vectors by W_out / W_model and y vectors by H_out / H_model, so the result is in
pixels of the output grid. Pass the photo's own size (or an aspect-preserving downscale of it) to
undo the stretch; the default is the model's native size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..motion.normalize import FrequencyScales, denormalize
from ..motion.resample import resample_image, resample_volume
from .config import ModelConfig
from .image_encoder import ImageEncoder
from .locate import CONFIG_NAME, SCALES_NAME, WEIGHTS_NAME
from .loop_guidance import LoopGuidance
from .samplers import SAMPLERS, cfg_model_fn
from .schedule import NoiseSchedule, sampling_timesteps
from .unet import Denoiser
from .vae import KLVAE

__all__ = ["MotionPredictor", "CONFIG_NAME", "WEIGHTS_NAME", "SCALES_NAME"]

_PARTS = ("vae", "image_encoder", "denoiser")


def _dummy_scales(num_freqs: int) -> FrequencyScales:
    """Plausible stand-in scales for random models: amplitudes falling with frequency."""
    return FrequencyScales(np.geomspace(2.0, 0.05, num_freqs), fit={"method": "dummy"})


def photo_tensor(image: np.ndarray, resolution: tuple[int, int]) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> (1, 3, H_model, W_model) float32 in [-1, 1], stretched to the model
    resolution (W, H); shared by the torch and ONNX Runtime engines so both see the same input."""
    W, H = resolution
    img = resample_image(image, W, H)
    return (torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 127.5 - 1.0)[None]


def volume_from_slices(slices: np.ndarray, scales, resolution: tuple[int, int], size) -> np.ndarray:
    """Decoded normalized slices (K, 4, H, W) -> complex64 volume at ``size`` (W, H) or native."""
    S = denormalize(slices, scales)
    if size is not None:
        W_out, H_out = (int(size[0]), int(size[1]))
        if (W_out, H_out) != tuple(resolution):
            S = resample_volume(S, W_out, H_out)
    return S


class MotionPredictor:
    """VAE + image encoder + denoiser + frequency scales + config, ready to sample."""

    def __init__(
        self,
        config: ModelConfig,
        vae: KLVAE,
        image_encoder: ImageEncoder,
        denoiser: Denoiser,
        scales: FrequencyScales,
    ) -> None:
        if scales.num_freqs != config.num_freqs:
            raise ValueError(f"scales have {scales.num_freqs} frequencies, the model {config.num_freqs}")
        self.config = config
        self.vae = vae
        self.image_encoder = image_encoder
        self.denoiser = denoiser
        self.scales = scales
        self.schedule = NoiseSchedule.from_config(config.diffusion)
        self.device = torch.device("cpu")
        self.eval()

    # -- construction ----------------------------------------------------------------------
    @staticmethod
    def build_networks(config: ModelConfig) -> tuple[KLVAE, ImageEncoder, Denoiser]:
        return KLVAE(config.vae), ImageEncoder(config.image_encoder), Denoiser(config.denoiser, config.num_freqs)

    @classmethod
    def random_init(cls, config: ModelConfig | str = "tiny", seed: int = 0, scales: FrequencyScales | None = None) -> "MotionPredictor":
        """Seeded randomly initialised networks (tests, smoke runs); does not touch the global RNG."""
        if isinstance(config, str):
            config = ModelConfig.preset(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vae, enc, den = cls.build_networks(config)
        return cls(config, vae, enc, den, scales if scales is not None else _dummy_scales(config.num_freqs))

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"vae": self.vae, "image_encoder": self.image_encoder, "denoiser": self.denoiser}

    def eval(self) -> "MotionPredictor":
        for m in self.modules().values():
            m.eval()
        return self

    def to(self, device: str | torch.device) -> "MotionPredictor":
        self.device = torch.device(device)
        for m in self.modules().values():
            m.to(self.device)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, module in self.modules().items():
            for key, value in module.state_dict().items():
                out[f"{name}.{key}"] = value.detach().cpu().contiguous()
        return out

    def num_parameters(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in m.parameters()) for name, m in self.modules().items()}

    # -- folder format ---------------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(self.config.to_json(), encoding="utf-8")
        self.scales.save(folder / SCALES_NAME)
        meta = {"format": "image_dynamics.motion_predictor", "preset": self.config.preset}
        save_file(self.state_dict(), str(folder / WEIGHTS_NAME), metadata=meta)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> "MotionPredictor":
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in (CONFIG_NAME, WEIGHTS_NAME, SCALES_NAME):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} is not a saved motion predictor: {name} is missing")
        config = ModelConfig.from_json((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        scales = FrequencyScales.load(folder / SCALES_NAME)
        tensors = load_file(str(folder / WEIGHTS_NAME), device="cpu")
        vae, enc, den = cls.build_networks(config)
        parts = {"vae": vae, "image_encoder": enc, "denoiser": den}
        unknown = [k for k in tensors if k.split(".", 1)[0] not in parts]
        if unknown:
            raise ValueError(f"unexpected weights in {WEIGHTS_NAME}: {unknown[:5]}")
        for name, module in parts.items():
            prefix = name + "."
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
        return cls(config, vae, enc, den, scales).to(device)

    # -- inference -------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) RGB -> (1, 3, H_model, W_model) float in [-1, 1] (stretched)."""
        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
        return photo_tensor(img, self.config.resolution).to(self.device)

    def predict(
        self,
        image: np.ndarray,
        *,
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        loop_frames: float | None = None,
        loop_strength: float = 10.0,
        loop_exact_gradient: bool = False,
        size: tuple[int, int] | None = None,
        sampler: str = "ddim",
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        device: str | torch.device | None = None,
    ) -> np.ndarray:
        """Sample a spectral volume (K, 2, H_out, W_out) complex64 for an RGB uint8 photo.

        seed: x_T is drawn from a CPU generator with this seed (same seed, same result).
        steps / guidance: sampling steps and CFG weight w (defaults from the config: 25, 1.75).
        loop_frames: if set, motion self-guidance towards a seamless loop of that many frames
        with strength u = ``loop_strength`` (``loop_exact_gradient``: back-propagate through the
        denoiser too, as the paper does; slower). size: (W_out, H_out), default the model's native size.
        callback(i, n, x0_latents) after every step; should_stop() before every model call
        (raises ``SamplingCancelled``).
        """
        if device is not None and torch.device(device) != self.device:
            self.to(device)
        cfg = self.config
        steps = cfg.diffusion.num_sampling_steps if steps is None else int(steps)
        guidance = cfg.diffusion.guidance_scale if guidance is None else float(guidance)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
        w_lat, h_lat = cfg.latent_size
        K = cfg.num_freqs

        x_img = self.preprocess(image)
        with torch.no_grad():
            features = self.image_encoder(x_img)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        x_T = torch.randn((K, cfg.vae.latent_channels, h_lat, w_lat), generator=gen).to(self.device)
        timesteps = sampling_timesteps(self.schedule.num_train_steps, steps, cfg.diffusion.timestep_spacing)
        model_fn = cfg_model_fn(self.denoiser, features, guidance)
        guidance_fn = None
        if loop_frames is not None:
            guidance_fn = LoopGuidance(
                self.vae,
                self.scales,
                self.schedule,
                loop_frames,
                strength=loop_strength,
                num_frames=cfg.num_frames,
                model_fn=model_fn if loop_exact_gradient else None,
            )
        z0 = SAMPLERS[sampler](
            model_fn,
            x_T,
            timesteps,
            schedule=self.schedule,
            callback=callback,
            should_stop=should_stop,
            guidance_fn=guidance_fn,
            generator=gen,
        )
        with torch.no_grad():
            slices = self.vae.from_latent(z0)  # (K, 4, H, W) normalized
        return volume_from_slices(slices.float().cpu().numpy(), self.scales, cfg.resolution, size)

    def describe(self) -> str:
        counts = self.num_parameters()
        return json.dumps({"preset": self.config.preset, "parameters": counts, "resolution": list(self.config.resolution)})
