"""Encode a training cache with a trained VAE: precomputed latents and their whitening statistics.

``encode_latents`` writes ``CACHE/latents/NAME/{train,test}.npy``, float16
(N, F, K, C, h, w) with F = 2 (the pair and its horizontal mirror: the VAE is not
flip-equivariant, so mirrored latents are encoded, not flipped) or F = 1 (``flip=False``), holding
posterior means (default) or one posterior sample each (``sample=True``), NOT whitened; and
``latents.json`` with the VAE checkpoint (path, step, sha256 of its weights) and the per-channel
mean / std of the training latents (float64 accumulation over every training latent), which the
datasets use to whiten and which ``export`` writes into the VAE's buffers.

When is it worth it? Encoding costs one VAE-encoder pass per slice (K = 16 per pair, twice with
flips). A denoiser run that sees each slice more than about once amortises it (GPU runs: hundreds
of epochs); a short CPU run sees a fraction of an epoch and is cheaper encoding on the fly
(``train_denoiser`` without ``--latents``). ``limit`` encodes only the first pairs of each split.

Fitting the statistics for on-the-fly encoding: ``fit_stats_on_slices`` (a fixed, evenly spaced
set of training slices; deterministic, so every DDP rank gets the same numbers).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..model.config import ModelConfig
from ..model.vae import KLVAE
from .data import SPLITS, TrainingCache, VAESliceDataset, evenly_spaced, flip_volume
from .loop import load_checkpoint, model_weights

__all__ = ["encode_latents", "load_vae", "fit_stats_on_slices", "file_sha256"]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_vae(vae_run: str | os.PathLike, use_ema: bool = True) -> tuple[KLVAE, ModelConfig, dict[str, Any]]:
    """The VAE of a ``train vae`` run (latest checkpoint) or checkpoint folder, with provenance."""
    ck = load_checkpoint(vae_run)
    if ck["config"].get("task", {}).get("name") != "vae":
        raise UserError(f"{vae_run} is not a VAE training run", "pass the --out folder of 'image-dynamics train vae'")
    model_config = ModelConfig.from_dict(ck["config"]["model"])
    vae = KLVAE(model_config.vae)
    weights = model_weights(ck, use_ema)
    vae.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("vae.")}, strict=True)
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    info = {"checkpoint": str(Path(ck["path"]).resolve()), "step": int(ck["train_state"]["step"]),
            "sha256": file_sha256(Path(ck["path"]) / "model.safetensors"), "ema": bool(use_ema and ck["ema"])}
    return vae, model_config, info


@torch.no_grad()
def fit_stats_on_slices(vae: KLVAE, cache: TrainingCache, num_slices: int = 2048, batch: int = 64,
                        device: str | torch.device = "cpu", sample: bool = False, seed: int = 0):
    """Set the VAE's latent whitening stats from ``num_slices`` evenly spaced training slices."""
    ds = VAESliceDataset(cache, "train", flip=False)
    idx = evenly_spaced(len(ds), num_slices)
    gen = torch.Generator().manual_seed(seed) if sample else None

    def batches():
        for a in range(0, len(idx), batch):
            yield torch.from_numpy(np.stack([ds[i] for i in idx[a:a + batch]])).to(device)

    return vae.fit_latent_stats(batches(), use_samples=sample, generator=gen)


@torch.no_grad()
def encode_latents(cache_dir: str | os.PathLike, vae_run: str | os.PathLike, name: str = "default", *,
                   flip: bool = True, sample: bool = False, limit: int | None = None, batch: int = 64,
                   device: str = "cpu", seed: int = 0, use_ema: bool = True, progress: bool = True,
                   overwrite: bool = False) -> dict[str, Any]:
    from tqdm import tqdm

    cache = TrainingCache(cache_dir)
    vae, model_config, vae_info = load_vae(vae_run, use_ema)
    if tuple(model_config.resolution) != tuple(cache.resolution):
        raise UserError(f"the VAE runs at {model_config.resolution}, the cache is at {cache.resolution}")
    out = cache.latents_dir(name)
    if (out / "latents.json").is_file() and not overwrite:
        raise UserError(f"{out} already exists", "choose another --name, or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    vae.to(dev)
    K = cache.num_freqs
    C = model_config.vae.latent_channels
    w, h = model_config.latent_size
    F = 2 if flip else 1
    gen = torch.Generator().manual_seed(seed) if sample else None
    t0 = time.time()
    counts = {}
    s1 = torch.zeros(C, dtype=torch.float64)
    s2 = torch.zeros(C, dtype=torch.float64)
    n_stats = 0
    vols = {s: cache.array(s, "volumes") for s in SPLITS}
    total = sum(min(cache.count(s), limit or cache.count(s)) for s in SPLITS) * F
    bar = tqdm(total=total, desc="latents", unit="pair", disable=not progress)
    pairs_per_batch = max(1, batch // K)
    for split in SPLITS:
        n = min(cache.count(split), limit) if limit else cache.count(split)
        counts[split] = n
        arr = np.lib.format.open_memmap(out / f"{split}.partial.npy", mode="w+", dtype=np.float16,
                                        shape=(n, F, K, C, h, w))
        for a in range(0, n, pairs_per_batch):
            b = min(n, a + pairs_per_batch)
            v = np.asarray(vols[split][a:b], dtype=np.float32)  # (P, K, 4, H, W)
            for f in range(F):
                x = flip_volume(v) if f else v
                x = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, *x.shape[2:]))).to(dev)
                post = vae.encode(x)
                z = (post.sample(gen) if sample else post.mode()).float().cpu()
                if split == "train":
                    zz = z.double().transpose(0, 1).reshape(C, -1)
                    s1 += zz.sum(1)
                    s2 += (zz * zz).sum(1)
                    n_stats += zz.shape[1]
                arr[a:b, f] = z.reshape(b - a, K, C, h, w).numpy().astype(np.float16)
                bar.update(b - a)
        arr.flush()
        del arr
        os.replace(out / f"{split}.partial.npy", out / f"{split}.npy")
    bar.close()
    mean = s1 / n_stats
    std = ((s2 / n_stats - mean * mean).clamp_min(0) * n_stats / max(n_stats - 1, 1)).sqrt().clamp_min(1e-6)
    info = {"vae": vae_info, "flip": flip, "sample": sample, "seed": seed, "counts": counts,
            "shape": ["N", F, K, C, h, w], "dtype": "float16", "whitened": False,
            "latent_mean": [float(x) for x in mean], "latent_std": [float(x) for x in std],
            "seconds": round(time.time() - t0, 1), "device": str(dev),
            "resolution": list(cache.resolution), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (out / "latents.json").write_text(json.dumps(info, indent=1))
    return info


def check_latents_vae(info: dict, vae_info: dict) -> None:
    if info["vae"]["sha256"] != vae_info["sha256"]:
        raise UserError("the precomputed latents were encoded by another VAE checkpoint than --vae",
                        f"they come from {info['vae']['checkpoint']}; re-encode or pass that VAE")


__all__ += ["check_latents_vae"]
