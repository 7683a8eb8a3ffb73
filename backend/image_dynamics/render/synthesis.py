"""The synthesis network: encode the photo, softmax-splat its features by the motion, decode a frame.

Paper: ResNet-34 features splatted at several scales and a co-modulated StyleGAN decoder. Ours is
small enough to train on a CPU in half an hour:

* encoder: three scales (1, 1/2, 1/4) of ResNet-style blocks (conv, two 3x3 convs with a skip),
  channels ``channels`` = (c0, c1, c2); computed once per photo and shared by all its frames;
* at each scale s the features (at scale 1 together with the photo itself) are softmax-splatted
  by D / 2^s (average-pooled) with importance Z = beta_s * mean_t |D_t| (pooled, in full-resolution
  pixels; beta_s learnt, initialised to ``beta_init``), and the splat's coverage (0 at holes,
  > 1 at collisions) is appended so the decoder knows where to fill in;
* decoder: U-Net style from 1/4 up, each level = concat(upsampled coarser level, splatted skip,
  coverage) -> conv -> residual block; the output is the splatted photo plus a predicted
  correction, so an untrained decoder already renders plain softmax splatting;
* ``backward_input``: the full-resolution level also sees the photo backward-warped by D_t. A
  pixel carries one motion, so the soft (anti-aliased, lens-blurred) rim of a moving thing is
  labelled with its static surroundings' motion and stays behind when splatted, leaving a ghost
  rim and a rim-less object; the backward-warped photo drags that rim along, and the decoder
  learns which of the two to trust where (on held-out clips it cut the moving-region error).

Weights: ``model.safetensors`` + ``config.json`` (``SynthesisConfig``); never pickle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .backward import backward_warp
from .splat import softmax_splat

__all__ = ["SynthesisConfig", "SynthesisNet", "load_synthesis", "save_synthesis", "WEIGHTS_NAME", "CONFIG_NAME"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


@dataclass
class SynthesisConfig:
    channels: tuple[int, int, int] = (24, 48, 96)
    beta_init: float = 1.0  # softmax-splat importance per pixel of mean motion
    backward_input: bool = False  # False: the first trained models (config.json without the key)
    kind: str = "synthesis-v1"
    meta: dict = field(default_factory=dict)  # training provenance, written by the exporter

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SynthesisConfig":
        d = dict(d)
        if d.get("kind", "synthesis-v1") != "synthesis-v1":
            raise ValueError(f"unknown renderer model kind {d.get('kind')!r}")
        d["channels"] = tuple(int(c) for c in d.get("channels", (24, 48, 96)))
        if len(d["channels"]) != 3:
            raise ValueError("channels must list three scales")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = _conv(c, c)
        self.b = _conv(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(F.leaky_relu(self.a(F.leaky_relu(x, 0.2)), 0.2))


class SynthesisNet(nn.Module):
    def __init__(self, config: SynthesisConfig | None = None) -> None:
        super().__init__()
        self.config = config or SynthesisConfig()
        c0, c1, c2 = self.config.channels
        self.enc0 = nn.Sequential(_conv(3, c0), ResBlock(c0))
        self.enc1 = nn.Sequential(_conv(c0, c1, 2), ResBlock(c1))
        self.enc2 = nn.Sequential(_conv(c1, c2, 2), ResBlock(c2))
        self.log_beta = nn.Parameter(torch.full((3,), float(torch.log(torch.tensor(self.config.beta_init)))))
        self.dec2 = nn.Sequential(_conv(c2 + 1, c2), ResBlock(c2))
        self.dec1 = nn.Sequential(_conv(c2 + c1 + 1, c1), ResBlock(c1))
        self.dec0 = nn.Sequential(_conv(c1 + c0 + 3 + 1 + (3 if self.config.backward_input else 0), c0), ResBlock(c0))
        self.out = _conv(c0, 3)
        nn.init.zeros_(self.out.weight)  # start as plain softmax splatting of the photo
        nn.init.zeros_(self.out.bias)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image (B, 3, H, W) in [0, 1] -> [photo+f0, f1, f2] (the inputs to the splats)."""
        x = image * 2.0 - 1.0
        f0 = self.enc0(x)
        f1 = self.enc1(f0)
        f2 = self.enc2(f1)
        return [torch.cat([image, f0], 1), f1, f2]

    def decode(self, features: list[torch.Tensor], flow: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, H, W) from features of one (broadcast) or B photos, flow (B, 2, H, W)
        pixels and importance (1 or B, 1, H, W) = mean |D| in pixels."""
        B = flow.shape[0]
        betas = self.log_beta.exp()
        splats, covs = [], []
        fl, imp = flow, importance
        for s, feat in enumerate(features):
            if s > 0:
                # Pool to the feature's size (odd sizes: the encoder's strided convs round up).
                size = feat.shape[-2:]
                fl = F.adaptive_avg_pool2d(flow, size) * (size[-1] / flow.shape[-1])
                imp = F.adaptive_avg_pool2d(importance, size)
            if feat.shape[0] == 1 and B > 1:
                feat = feat.expand(B, -1, -1, -1)
            sp, cov = softmax_splat(feat, fl, betas[s] * imp)
            splats.append(sp)
            covs.append(cov.clamp(max=4.0))
        g = self.dec2(torch.cat([splats[2], covs[2]], 1))
        g = F.interpolate(g, size=splats[1].shape[-2:], mode="bilinear", align_corners=False)
        g = self.dec1(torch.cat([g, splats[1], covs[1]], 1))
        g = F.interpolate(g, size=splats[0].shape[-2:], mode="bilinear", align_corners=False)
        level0 = [g, splats[0], covs[0]]
        if self.config.backward_input:
            photo = features[0][:, :3]
            level0.append(backward_warp(photo, flow) if photo.shape[0] == B else backward_warp(photo[:1], flow))
        g = self.dec0(torch.cat(level0, 1))
        return splats[0][:, :3] + self.out(F.leaky_relu(g, 0.2))

    def forward(self, image: torch.Tensor, flow: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(image), flow, importance)


def save_synthesis(net: SynthesisNet, folder: str | Path, meta: dict | None = None) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = net.config.to_dict()
    if meta:
        cfg["meta"] = meta
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(folder / WEIGHTS_NAME))
    (folder / WEIGHTS_NAME).chmod(0o644)  # safetensors writes 0600; a shipped model is readable by all
    (folder / CONFIG_NAME).write_text(json.dumps(cfg, indent=1))
    return folder


def load_synthesis(folder: str | Path, device: str | torch.device = "cpu") -> SynthesisNet:
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / WEIGHTS_NAME).is_file() or not (folder / CONFIG_NAME).is_file():
        raise UserError(f"no renderer model at {folder} (needs {WEIGHTS_NAME} and {CONFIG_NAME})",
                        "train one with `image-dynamics train renderer` and export it to models/renderer, "
                        "or use --renderer mesh")
    try:
        cfg = SynthesisConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text()))
        net = SynthesisNet(cfg)
        net.load_state_dict(load_file(str(folder / WEIGHTS_NAME)), strict=True)
    except (ValueError, RuntimeError, OSError) as exc:
        raise UserError(f"cannot load the renderer model in {folder}: {exc}")
    return net.to(device).eval()
