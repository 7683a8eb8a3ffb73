"""Upper bounds on the scores of ``image-dynamics evaluate``: what no model of a given kind can beat.

Each "oracle" below is handed the *true* spectral volume and loses exactly one thing, so its score
is the best any predictor that shares that loss could reach:

* ``resolution_roundtrip``: the truth resampled to the model's grid and back (area averaging down,
  bilinear up: the path every prediction takes). A perfect model at that resolution scores this.
* ``vae_roundtrip``: the truth at the model's grid, normalized, encoded and decoded by the VAE (the
  posterior mean), denormalized and resampled back. A perfect denoiser on that VAE scores this.
* ``wind_blind``: the truth rescaled by ``guess / level``. The procedural scenes draw a wind level
  (peak displacement in px) that nothing in the photo shows, so a predictor that knows every
  shape, place and phase but not the wind is off by that factor; ``guess`` = the median level is
  the L1-best single guess, a level drawn from the generator's distribution is what a perfect
  *sampler* of the conditional distribution does.

Pure numpy (plus the VAE module for ``vae_roundtrip``); the command is ``evaluate-ceilings``.
"""

from __future__ import annotations

import numpy as np

from ..motion.normalize import normalize
from ..motion.resample import resample_volume

__all__ = ["resolution_roundtrip", "vae_roundtrip", "wind_blind"]


def resolution_roundtrip(S: np.ndarray, model_size: tuple[int, int]) -> np.ndarray:
    """The truth (K, 2, H, W) through the model's grid (W_m, H_m) and back to (H, W)."""
    H, W = S.shape[-2:]
    return resample_volume(resample_volume(S, *model_size), W, H)


def vae_roundtrip(S: np.ndarray, vae, scales, model_size: tuple[int, int]) -> np.ndarray:
    """The truth through the model's grid, the normalization and the VAE (encode mean, decode)."""
    import torch

    from ..model.pipeline import volume_from_slices

    H, W = S.shape[-2:]
    x = torch.from_numpy(normalize(resample_volume(S, *model_size), scales))
    with torch.no_grad():
        y = vae.decode(vae.encode(x).mode()).cpu().numpy()
    return volume_from_slices(y, scales, model_size, (W, H))  # the path every prediction takes


def wind_blind(S: np.ndarray, level: float, guess: float) -> np.ndarray:
    """The truth with its wind level ``level`` (px) replaced by ``guess``: ``S * guess / level``.

    Displacements are linear in the level (``SourceBank.finalize``) up to the per-source caps that
    keep a storm's layers from folding; the caps are ignored here, so in storms this oracle is a
    little *better* informed than a real wind-blind predictor."""
    if not (level > 0 and guess >= 0):
        raise ValueError(f"wind levels must be positive, got level={level}, guess={guess}")
    return (S * np.float32(guess / level)).astype(S.dtype, copy=False)
