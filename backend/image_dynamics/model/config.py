"""Model settings: every size is a setting, and four presets name sensible sets of them.

``ModelConfig`` aggregates the settings of the four parts of the predictor (KL-VAE over one
frequency slice, image encoder, U-Net denoiser, diffusion process) plus the motion-texture
constants, and round-trips through JSON (``config.json`` of a saved model).

Presets (``ModelConfig.preset(name)``):

* ``"tiny"``   - unit tests: 8 base channels everywhere, 48 x 32 pixels (129 K parameters in all).
  Runs in milliseconds.
* ``"small"``  - the CPU-trainable default, 256 x 160 pixels: VAE 16 ch (1,2,4) 0.65 M, image
  encoder 16 ch 0.10 M, U-Net 48 ch (1,2,4), attention at the lowest level, 6.9 M. A stage-1
  denoiser step (4 slices, with the image encoder) is ~66 GFLOP, about 1.1 s on one core here.
* ``"cpu"``    - what the project's own scripts train on 2 CPU cores in about an hour: 128 x 80
  pixels (latent 32 x 20), VAE 12 ch (1,2,4) 0.37 M, image encoder 16 ch 0.10 M, U-Net 32 ch
  (1,2,4), attention at the lowest level, 3.1 M (frequency attention included). Measured here
  (1 thread, shared CPU): stage-1 step of 8 slices ~0.24 s, 25 CFG sampling steps of one volume
  ~6 s. Motion fields are smooth inside each moving element (one modal shape per element), so
  halving the grid mostly blurs element boundaries by one pixel; the pipeline resamples the
  predicted volume to any output size with the vectors scaled (``motion.resample``).
* ``"paper"``  - the sizes of Li et al. (VAE 128 ch, mults 1,2,4; U-Net 128 ch, mults 1,4,8
  with spatial attention; ~331 M parameters in all) for users with a GPU. Same code, bigger numbers.

Parameter defaults of the dataclasses are the "small" sizes.

Choices the paper leaves open, made here (and why):

* ``prediction_type = "v"`` (v-prediction, Salimans & Ho 2022) by default. The paper predicts
  noise (eps) with 250 DDIM steps; we sample in about 25. With eps-prediction the x0 estimate at
  the first, noisiest steps is ``(x_t - sigma eps) / alpha`` with alpha ~ 0.07 at t = 999, so any
  error in eps is amplified ~14x exactly where few-step samplers take their largest jumps;
  v-prediction keeps the x0 estimate well conditioned at every noise level (at high noise it
  predicts x0 directly). ``"eps"`` remains supported by every function.
* ``timestep_spacing = "trailing"`` (Lin et al. 2024, "Common diffusion noise schedules and
  sample steps are flawed"): the first sampling step is t = 999, the noise level the sampler
  really starts from (pure Gaussian x_T); "leading" spacing would start at t = 960 for 25 steps,
  feeding the model a sample noisier than it expects at that t.
* ``cfg_dropout = 0.1``: the image condition is replaced by a learned null embedding (see
  ``unet.Denoiser``) for 10 % of training volumes, which is what classifier-free guidance needs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# The sampler names ``model/samplers.SAMPLERS`` implements, here so the CLI can offer them without
# importing torch (a unit test keeps the two in step).
SAMPLER_NAMES = ("ddim", "dpmpp_2m")

__all__ = [
    "VAEConfig",
    "ImageEncoderConfig",
    "DenoiserConfig",
    "DiffusionConfig",
    "ModelConfig",
    "PRESETS",
]

CONFIG_FORMAT = "image_dynamics.model_config"
CONFIG_VERSION = 1


@dataclass
class VAEConfig:
    """KL-VAE over ONE frequency slice: (N, 4, H, W) -> latent (N, 4, H/f, W/f), f = 2**(len(mults)-1)."""

    in_channels: int = 4
    latent_channels: int = 4
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    mid_attention: bool = False
    norm_groups: int = 8
    logvar_clamp: tuple[float, float] = (-30.0, 20.0)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)


@dataclass
class ImageEncoderConfig:
    """ResNet encoder of the RGB photo in [-1, 1] to ``out_channels`` features at latent resolution."""

    in_channels: int = 3
    out_channels: int = 16
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    norm_groups: int = 8

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)


@dataclass
class DenoiserConfig:
    """LDM-style U-Net over latent frequency slices with frequency attention."""

    latent_channels: int = 4
    cond_channels: int = 16
    base_channels: int = 48
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (2,)  # spatial self-attention at these levels (0 = full res)
    mid_attention: bool = True
    num_heads: int = 4
    frequency_attention: bool = True  # stage 1 trains with False, stage 2 with True
    frequency_heads: int = 4
    norm_groups: int = 8
    dropout: float = 0.0


@dataclass
class DiffusionConfig:
    num_train_steps: int = 1000
    beta_schedule: str = "scaled_linear"  # LDM: betas = linspace(sqrt(b0), sqrt(b1), N) ** 2
    beta_start: float = 0.00085
    beta_end: float = 0.012
    prediction_type: str = "v"  # "v" or "eps" (see module docstring)
    timestep_spacing: str = "trailing"  # "trailing" or "leading"
    cfg_dropout: float = 0.1
    num_sampling_steps: int = 25
    guidance_scale: float = 1.75  # w of the paper: (1 + w) eps(c) - w eps(empty)

    def __post_init__(self) -> None:
        if self.prediction_type not in ("v", "eps"):
            raise ValueError(f"prediction_type must be 'v' or 'eps', got {self.prediction_type!r}")
        if self.timestep_spacing not in ("trailing", "leading"):
            raise ValueError(f"timestep_spacing must be 'trailing' or 'leading', got {self.timestep_spacing!r}")
        if self.beta_schedule not in ("scaled_linear", "linear"):
            raise ValueError(f"beta_schedule must be 'scaled_linear' or 'linear', got {self.beta_schedule!r}")


@dataclass
class ModelConfig:
    vae: VAEConfig = field(default_factory=VAEConfig)
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    num_freqs: int = 16  # K
    num_frames: int = 150  # T of the motion window the spectra were taken over
    fps: float = 30.0
    resolution: tuple[int, int] = (256, 160)  # (width, height) the networks run at
    preset: str = "custom"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        v, e, d = self.vae, self.image_encoder, self.denoiser
        if v.in_channels != 4:
            raise ValueError("the VAE encodes one frequency slice: in_channels must be 4 (x_re, y_re, x_im, y_im)")
        if d.latent_channels != v.latent_channels:
            raise ValueError("denoiser.latent_channels must equal vae.latent_channels")
        if d.cond_channels != e.out_channels:
            raise ValueError("denoiser.cond_channels must equal image_encoder.out_channels")
        if e.downsample_factor != v.downsample_factor:
            raise ValueError("image encoder and VAE must reach the same (latent) resolution")
        W, H = self.resolution
        f = v.downsample_factor * 2 ** (len(d.channel_mults) - 1)
        if W % f or H % f:
            raise ValueError(f"resolution {W}x{H} must be divisible by {f} (VAE x U-Net downsampling)")
        if any(not 0 <= lvl < len(d.channel_mults) for lvl in d.attention_levels):
            raise ValueError("denoiser.attention_levels must index channel_mults")

    @property
    def latent_size(self) -> tuple[int, int]:
        """(width, height) of the latent grid."""
        f = self.vae.downsample_factor
        return self.resolution[0] // f, self.resolution[1] // f

    # -- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = CONFIG_FORMAT
        d["version"] = CONFIG_VERSION
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        if d.pop("format", CONFIG_FORMAT) != CONFIG_FORMAT:
            raise ValueError("not an image_dynamics model config")
        version = d.pop("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ValueError(f"unsupported model config version {version}")
        return _build(cls, d)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def preset(cls, name: str) -> "ModelConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name]()


_SUB_CONFIGS = {
    "vae": VAEConfig,
    "image_encoder": ImageEncoderConfig,
    "denoiser": DenoiserConfig,
    "diffusion": DiffusionConfig,
}


def _build(cls, d: dict[str, Any]):
    """Rebuild a (nested) settings dataclass from plain JSON data; JSON lists become tuples."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    kwargs = {}
    for name, value in d.items():
        if cls is ModelConfig and name in _SUB_CONFIGS:
            value = _build(_SUB_CONFIGS[name], value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _tiny() -> ModelConfig:
    return ModelConfig(
        vae=VAEConfig(base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, norm_groups=4),
        image_encoder=ImageEncoderConfig(base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, norm_groups=4),
        denoiser=DenoiserConfig(
            base_channels=8,
            channel_mults=(1, 2),
            num_res_blocks=1,
            attention_levels=(1,),
            num_heads=2,
            frequency_heads=2,
            norm_groups=4,
        ),
        resolution=(48, 32),
        preset="tiny",
    )


def _small() -> ModelConfig:
    return ModelConfig(
        vae=VAEConfig(base_channels=16, channel_mults=(1, 2, 4), num_res_blocks=1, norm_groups=8),
        image_encoder=ImageEncoderConfig(base_channels=16, channel_mults=(1, 2, 4), num_res_blocks=1, norm_groups=8),
        denoiser=DenoiserConfig(
            base_channels=48,
            channel_mults=(1, 2, 4),
            num_res_blocks=1,
            attention_levels=(2,),
            num_heads=4,
            frequency_heads=4,
            norm_groups=8,
        ),
        resolution=(256, 160),
        preset="small",
    )


def _paper() -> ModelConfig:
    return ModelConfig(
        vae=VAEConfig(base_channels=128, channel_mults=(1, 2, 4), num_res_blocks=2, mid_attention=True, norm_groups=32),
        image_encoder=ImageEncoderConfig(base_channels=64, channel_mults=(1, 2, 4), num_res_blocks=2, norm_groups=32),
        denoiser=DenoiserConfig(
            base_channels=128,
            channel_mults=(1, 4, 8),
            num_res_blocks=2,
            attention_levels=(0, 1, 2),
            num_heads=8,
            frequency_heads=8,
            norm_groups=32,
        ),
        resolution=(256, 160),
        preset="paper",
    )


def _cpu() -> ModelConfig:
    return ModelConfig(
        vae=VAEConfig(base_channels=12, channel_mults=(1, 2, 4), num_res_blocks=1, norm_groups=8),
        image_encoder=ImageEncoderConfig(base_channels=16, channel_mults=(1, 2, 4), num_res_blocks=1, norm_groups=8),
        denoiser=DenoiserConfig(
            base_channels=32,
            channel_mults=(1, 2, 4),
            num_res_blocks=1,
            attention_levels=(2,),
            num_heads=4,
            frequency_heads=4,
            norm_groups=8,
        ),
        resolution=(128, 80),
        preset="cpu",
    )


PRESETS = {"tiny": _tiny, "cpu": _cpu, "small": _small, "paper": _paper}
