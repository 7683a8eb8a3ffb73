"""The motion predictor: latent diffusion over frequency slices (paper section 4), in torch.

Modules, one job each:

* ``config``        - settings dataclasses and the "tiny" / "small" / "paper" presets
* ``layers``        - shared GroupNorm/SiLU ResNet blocks, attention, timestep embedding
* ``vae``           - KL-VAE over one 4-channel frequency slice, with latent whitening
* ``image_encoder`` - photo -> conditioning features at latent resolution
* ``unet``          - the denoiser with frequency attention and a learned null condition
* ``schedule``      - noise schedule and eps / x0 / v conversions (pure functions)
* ``samplers``      - DDIM and DPM-Solver++(2M), classifier-free guidance wrapper
* ``loop_guidance`` - motion self-guidance for seamless loops (paper Eq. 5)
* ``losses``        - VAE and diffusion training losses
* ``pipeline``      - ``MotionPredictor``: photo -> spectral volume, save/load (safetensors)
* ``errors``        - ``SamplingCancelled`` (importable without torch)

Names are imported lazily so ``from image_dynamics.model import SamplingCancelled`` does not
pull in torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ModelConfig": "config",
    "VAEConfig": "config",
    "ImageEncoderConfig": "config",
    "DenoiserConfig": "config",
    "DiffusionConfig": "config",
    "KLVAE": "vae",
    "DiagonalGaussian": "vae",
    "ImageEncoder": "image_encoder",
    "Denoiser": "unet",
    "FrequencyAttention": "unet",
    "NoiseSchedule": "schedule",
    "sampling_timesteps": "schedule",
    "cfg_model_fn": "samplers",
    "sample_ddim": "samplers",
    "sample_dpmpp_2m": "samplers",
    "LoopGuidance": "loop_guidance",
    "MotionPredictor": "pipeline",
    "SamplingCancelled": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
