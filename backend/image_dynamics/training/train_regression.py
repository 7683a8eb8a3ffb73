"""Train the direct-regression baseline (``model.regression``): photo -> 64-channel normalized volume.

Same cache, same flips, same loop as the diffusion model; L1 loss over all 64 channels and pixels
(per element), optionally plus ``mse_weight`` x L2 (default 0: the plain L1 baseline; the L1
optimum for a phase the photo cannot tell is the median, zero, and on this sparse data L1 also
starts on a long all-zero plateau, see ``train_vae``). Held-out metrics: ``l1`` and ``l1_moving`` (only where the target is not zero), on
a fixed set of test pairs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..model.config import ModelConfig
from ..model.regression import RegressionConfig, RegressionNet
from .data import Subset, TrainingCache, VolumeDataset, evenly_spaced
from .loop import Runtime, TrainSettings, Trainer, seed_everything, training_runtime
from .train_vae import check_resolution

__all__ = ["RegressionTrainNet", "train_regression"]


class RegressionTrainNet(nn.Module):
    def __init__(self, net: RegressionNet, mse_weight: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.mse_weight = mse_weight

    def forward(self, batch, generator: torch.Generator | None = None):
        image, target = batch
        err = self.net(image).float() - target.float()
        loss = err.abs().mean()
        if self.mse_weight > 0:
            loss = loss + self.mse_weight * err.pow(2).mean()
        return loss, {}

    @torch.no_grad()
    def evaluate(self, batch, generator: torch.Generator | None = None) -> dict[str, float]:
        image, target = batch
        err = (self.net(image).float() - target.float()).abs()
        moving = target.abs() > 0
        return {"loss": float(err.mean()), "l1": float(err.mean()),
                "l1_moving": float(err[moving].mean()) if bool(moving.any()) else 0.0}


def train_regression(cache_dir: str, settings: TrainSettings, *, model_config: ModelConfig,
                     regression_config: RegressionConfig | None = None, flip: bool = True, mse_weight: float = 0.0,
                     runtime: Runtime | None = None) -> dict[str, Any]:
    with training_runtime(settings, runtime) as rt:
        cache = TrainingCache(cache_dir)
        check_resolution(cache, model_config)
        seed_everything(settings.seed, settings.deterministic)
        cfg = regression_config or RegressionConfig.matching(model_config)
        net = RegressionTrainNet(RegressionNet(cfg), mse_weight)
        train_set = VolumeDataset(cache, "train", flip=flip, flat=True)
        test = VolumeDataset(cache, "test", flip=False, flat=True)
        eval_set = Subset(test, evenly_spaced(len(test), settings.eval_size))
        config = {
            "task": {"name": "regression", "flip": flip, "loss": "l1", "mse_weight": mse_weight},
            "model": cfg.to_dict(),
            "reference_model": model_config.to_dict(),
            "data": cache.describe(),
            "train": settings.to_dict(),
        }
        return Trainer(net=net, train_set=train_set, eval_set=eval_set, settings=settings, runtime=rt,
                       config=config).run()
