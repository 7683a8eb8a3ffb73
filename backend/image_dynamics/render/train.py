"""Training and export of the synthesis network (``image-dynamics train renderer``).

Data: procedural scenes (``render.data``), train seeds 0..N-1 with motion magnified by a random
factor in [1, 3] per scene, held-out seeds from 2e9 at native motion; random crops and flips for
training, whole frames for the held-out evaluation. Loss: ``quality.render_loss`` (L1 +
multi-scale gradient L1 + SSIM term), the L1 weighted 1 + ``moving_weight`` near motion. The step
loop, checkpoints (safetensors), resume and logs are the project's shared ``training.loop``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..training.loop import (Runtime, TrainSettings, Trainer, load_checkpoint, model_weights,
                             seed_everything, training_runtime)
from . import data as rdata
from .quality import psnr, render_loss, ssim
from .synthesis import SynthesisConfig, SynthesisNet, save_synthesis

__all__ = ["RendererTrainNet", "train_renderer", "export_renderer"]


def motion_weight(importance: torch.Tensor, moving_weight: float, threshold: float = 0.25,
                  reach: int = 5) -> torch.Tensor:
    """1 + moving_weight near motion: pixels within ``reach`` // 2 of a mean |D| above threshold
    (dilated, because a moving thing also changes the pixels it moves onto)."""
    near = torch.nn.functional.max_pool2d((importance > threshold).float(), reach, stride=1, padding=reach // 2)
    return 1.0 + moving_weight * near


class RendererTrainNet(nn.Module):
    def __init__(self, net: SynthesisNet, moving_weight: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.moving_weight = moving_weight

    def forward(self, batch, generator: torch.Generator | None = None):
        pred = self.net(batch["image"], batch["flow"], batch["importance"])
        weight = motion_weight(batch["importance"], self.moving_weight) if self.moving_weight > 0 else None
        loss, logs = render_loss(pred, batch["target"], weight)
        return loss, logs

    @torch.no_grad()
    def evaluate(self, batch, generator: torch.Generator | None = None) -> dict[str, float]:
        pred = self.net(batch["image"], batch["flow"], batch["importance"]).clamp(0, 1)
        # Quantise like the renderer's uint8 output so these numbers match evaluate-renderer's.
        pred = torch.round(pred * 255) / 255
        loss, _ = render_loss(pred, batch["target"])
        still = batch["image"]  # frame 0 itself: the "nothing moves" reference
        return {"loss": float(loss), "psnr": float(psnr(pred, batch["target"]).mean()),
                "ssim": float(ssim(pred, batch["target"]).mean()),
                "psnr_still": float(psnr(still, batch["target"]).mean())}


def train_renderer(data_dir: str, settings: TrainSettings, *, config: SynthesisConfig, train_scenes: int,
                   eval_scenes: int, times_per_scene: int = 8, crop: tuple[int, int] | None = (96, 128),
                   magnify: tuple[float, float] = (1.0, 3.0), size: tuple[int, int] = (256, 160),
                   flip: bool = True, moving_weight: float = 4.0, progress: bool = True,
                   runtime: Runtime | None = None) -> dict[str, Any]:
    """Generate the missing procedural scenes into ``data_dir``, then train (resumable)."""
    width, height = size
    train_paths = rdata.generate(data_dir, "train", train_scenes, rdata.TRAIN_SEED0, times_per_scene, width, height,
                                 magnify, progress)
    eval_paths = rdata.generate(data_dir, "heldout", eval_scenes, rdata.HELDOUT_SEED0, times_per_scene, width,
                                height, (1.0, 1.0), progress)
    with training_runtime(settings, runtime) as rt:
        seed_everything(settings.seed, settings.deterministic)
        net = RendererTrainNet(SynthesisNet(config), moving_weight)
        variants = 4 if crop is not None else 1
        train_set = rdata.TripletDataset(train_paths, crop=crop, variants=variants, flip=flip,
                                         keep_all=settings.workers == 0)
        eval_set = rdata.TripletDataset(eval_paths, keep_all=True)
        run_config = {
            "task": {"name": "renderer", "loss": "l1 + 0.5 multiscale-gradient-l1 + 0.2 (1 - ssim)",
                     "l1_moving_weight": moving_weight,
                     "crop": list(crop) if crop else None, "flip": flip, "variants": variants},
            "model": config.to_dict(),
            "data": {"dir": str(Path(data_dir)), "size": [width, height],
                     "train_seeds": [rdata.TRAIN_SEED0, rdata.TRAIN_SEED0 + train_scenes],
                     "heldout_seeds": [rdata.HELDOUT_SEED0, rdata.HELDOUT_SEED0 + eval_scenes],
                     "times_per_scene": times_per_scene, "train_magnify": list(magnify), "heldout_magnify": 1.0,
                     "train_items": len(train_set), "heldout_items": len(eval_set)},
            "train": settings.to_dict(),
        }
        return Trainer(net=net, train_set=train_set, eval_set=eval_set, settings=settings, runtime=rt,
                       config=run_config).run()


def export_renderer(run: str, out: str, use_ema: bool = True) -> Path:
    """Write a run's latest checkpoint as a renderer model folder (model.safetensors + config.json)."""
    ck = load_checkpoint(run)
    weights = model_weights(ck, use_ema)
    cfg = SynthesisConfig.from_dict(ck["config"]["model"])
    net = SynthesisNet(cfg)
    net.load_state_dict({k[len("net."):]: v for k, v in weights.items() if k.startswith("net.")}, strict=True)
    state = ck["train_state"]
    meta = {"trained_steps": state.get("step"), "data": ck["config"].get("data"), "task": ck["config"].get("task"),
            "batch_size": ck["config"]["train"].get("batch_size"), "lr": ck["config"]["train"].get("lr"),
            "last_eval": state.get("last_eval"), "checkpoint": str(ck["path"]), "ema": bool(use_ema and ck["ema"])}
    return save_synthesis(net, out, meta)
