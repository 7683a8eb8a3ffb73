"""What the server runs: the ``MotionEngine`` interface, the torch adapter, the factory.

The server knows engines only through ``MotionEngine``:

* ``info() -> dict``: the model and device facts sent in hello (see ``TorchMotionEngine.info``).
* ``predict(image, options, progress, should_stop) -> S``: ``image`` (H, W, 3) uint8 RGB,
  ``options`` a ``protocol.messages.PredictOptions``; call ``progress(step, total, preview)``
  after every sampling step (``preview`` None or a small float32 (h, w) map in [0, 1]) and check
  ``should_stop()`` at least once a step, raising ``JobCancelled`` when it is true. Returns the
  spectral volume, complex64 (K, 2, H, W).
* ``predict_batch(jobs)``: several jobs with equal ``options.batch_key()`` at once; returns one
  volume or exception per job. The base class runs them one after the other.
* ``max_batch``: how many jobs ``predict_batch`` takes at once (1 = no batching).

Batching. ``MotionPredictor.predict`` samples one photo at a time, so ``TorchMotionEngine``
reports ``max_batch = 1`` and the server runs jobs one by one (on CPU a tiny model runs one job
in ~50 ms single-threaded; batching buys little there). The server already groups queued jobs
with the same batch key (steps, guidance, loop, output size, sampler) and hands the group to
``predict_batch``; once the pipeline samples B photos in one pass (the denoiser already takes
B * K slices with B conditions), override ``predict_batch`` here to stack the groups' x_T and
image features and raise ``max_batch`` - nothing in the server or protocol changes.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..devices import resolve_device
from ..errors import UserError
from ..protocol.messages import PredictOptions

__all__ = [
    "MotionEngine",
    "EngineJob",
    "JobCancelled",
    "EngineOutOfMemory",
    "TorchMotionEngine",
    "create_engine",
    "ENGINES",
]

ENGINES = ("torch",)
Progress = Callable[[int, int, "np.ndarray | None"], None]


class JobCancelled(Exception):
    """``should_stop()`` became true: the engine stopped before finishing the job."""


class EngineOutOfMemory(Exception):
    """The device ran out of memory for this job (the engine has freed what it could)."""


@dataclass
class EngineJob:
    image: np.ndarray
    options: PredictOptions
    progress: Progress
    should_stop: Callable[[], bool]


class MotionEngine(ABC):
    max_batch: int = 1

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Model / device facts for the hello reply."""

    @abstractmethod
    def predict(self, image: np.ndarray, options: PredictOptions, progress: Progress,
                should_stop: Callable[[], bool]) -> np.ndarray:
        """One photo -> spectral volume complex64 (K, 2, H, W)."""

    def predict_batch(self, jobs: list[EngineJob]) -> list[np.ndarray | BaseException]:
        out: list[np.ndarray | BaseException] = []
        for job in jobs:
            try:
                out.append(self.predict(job.image, job.options, job.progress, job.should_stop))
            except Exception as exc:  # each job fails on its own
                out.append(exc)
        return out

    def close(self) -> None:
        """Free the model (called once, at shutdown)."""


def _preview_map(x0) -> np.ndarray:
    """Coarse preview of a sampling step: RMS of the clean-latent estimate over frequencies and
    channels, scaled to [0, 1]. Unitless, at latent resolution; for a progress picture only."""
    import torch

    with torch.no_grad():
        x = x0.detach().float()
        m = torch.sqrt((x * x).mean(dim=(0, 1))) if x.ndim == 4 else x.abs().reshape(x.shape[-2:])
        peak = float(m.max()) if m.numel() else 0.0
        m = m / peak if peak > 0 else m
    return np.ascontiguousarray(m.cpu().numpy().astype(np.float32))


def _is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return isinstance(exc, MemoryError) or name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class TorchMotionEngine(MotionEngine):
    """Adapter: ``model.pipeline.MotionPredictor`` behind ``MotionEngine``."""

    def __init__(self, predictor, *, name: str, device: str = "cpu", untrained: bool = False,
                 card: dict[str, Any] | None = None) -> None:
        self.predictor = predictor.to(device)
        self.name = name
        self.device = device
        self.untrained = untrained
        self.card = card or {}

    def info(self) -> dict[str, Any]:
        from ..model.samplers import SAMPLERS

        cfg = self.predictor.config
        counts = self.predictor.num_parameters()
        return {
            "name": self.name,
            "untrained_test_model": self.untrained,
            "card": {**self.card, "preset": cfg.preset, "parameters": int(sum(counts.values()))},
            "num_freqs": cfg.num_freqs,
            "resolution": list(cfg.resolution),
            "fps": cfg.fps,
            "num_frames": cfg.num_frames,
            "default_steps": cfg.diffusion.num_sampling_steps,
            "default_guidance": cfg.diffusion.guidance_scale,
            "samplers": sorted(SAMPLERS),
            "default_sampler": "ddim",
            "device": str(self.device),
            "engine": "torch",
            "max_batch": self.max_batch,
        }

    def predict(self, image, options, progress, should_stop):
        from ..model.errors import SamplingCancelled

        def callback(i, n, x0):
            progress(i + 1, n, _preview_map(x0) if options.preview else None)

        kwargs: dict[str, Any] = dict(seed=options.seed, steps=options.steps, guidance=options.guidance,
                                      loop_frames=options.loop_frames, size=options.size,
                                      callback=callback, should_stop=should_stop)
        if options.sampler is not None:
            kwargs["sampler"] = options.sampler
        try:
            S = self.predictor.predict(image, **kwargs)
        except SamplingCancelled as exc:
            raise JobCancelled(str(exc)) from None
        except Exception as exc:
            if _is_oom(exc):
                self._free_cache()
                raise EngineOutOfMemory(f"{type(exc).__name__}: {str(exc)[:200]}") from None
            raise
        return np.ascontiguousarray(S, dtype=np.complex64)

    def _free_cache(self) -> None:
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass

    def close(self) -> None:
        self.predictor = None
        self._free_cache()


# -- factory -----------------------------------------------------------------------------------

_CARD_FILES = ("model_card.md", "MODEL_CARD.md", "README.md")


def _read_card(folder: Path) -> dict[str, Any]:
    """A short summary of a saved model's card: its first paragraph, plus card.json if present."""
    card: dict[str, Any] = {"path": str(folder)}
    cj = folder / "card.json"
    if cj.is_file():
        import json

        try:
            data = json.loads(cj.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                card.update({k: v for k, v in data.items() if isinstance(v, (str, int, float, bool))})
        except ValueError:
            pass
    for name in _CARD_FILES:
        f = folder / name
        if f.is_file():
            text = f.read_text(encoding="utf-8", errors="replace")
            paras = [p.strip() for p in text.split("\n\n") if p.strip() and not p.strip().startswith("#")]
            if paras:
                card.setdefault("summary", " ".join(paras[0].split())[:600])
            break
    return card


def create_engine(*, model: str | os.PathLike | None = None, tiny_model: int | None = None, device: str = "auto",
                  engine: str = "torch", threads: int | None = None) -> MotionEngine:
    """The engine the ``serve`` flags ask for (``--model PATH`` | ``--tiny-model SEED``)."""
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}", f"choose one of: {', '.join(ENGINES)}")
    if model is not None and tiny_model is not None:
        raise UserError("--model and --tiny-model exclude each other", "pass one of them")
    import torch

    from ..model.pipeline import MotionPredictor

    if threads:
        torch.set_num_threads(int(threads))
    device = resolve_device(device)
    if tiny_model is not None:
        seed = int(tiny_model)
        predictor = MotionPredictor.random_init("tiny", seed)
        card = {"summary": (f"UNTRAINED TEST MODEL: the 'tiny' preset with random weights (seed {seed}). "
                            "Its motion is meaningless; it exists to test and demonstrate the plumbing.")}
        return TorchMotionEngine(predictor, name=f"tiny-untrained-seed{seed}", device=device, untrained=True, card=card)
    from ..model.locate import resolve_model_dir

    folder = resolve_model_dir(model)  # --model, $IMAGE_DYNAMICS_MODEL or models/default
    try:
        predictor = MotionPredictor.from_pretrained(folder, device="cpu")
    except Exception as exc:  # a damaged model.safetensors raises safetensors' own SafetensorError, bad JSON ValueError
        detail = " ".join(str(exc).split())[:300]
        raise UserError(f"cannot load the model in {folder}: {type(exc).__name__}: {detail}",
                        "pass a folder written by MotionPredictor.save_pretrained (training saves one); if its files "
                        "are damaged or incomplete, download the model again or save it again from training") from None
    return TorchMotionEngine(predictor, name=folder.name, device=device, untrained=False, card=_read_card(folder))
