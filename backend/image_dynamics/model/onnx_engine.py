"""ONNX export of the predictor and an ONNX Runtime engine that samples with the same samplers.

Export (``export_onnx``, CLI ``image-dynamics export-onnx --model DIR``) writes three graphs plus a
manifest into ``DIR/onnx`` (or ``--out``):

* ``image_encoder.onnx``  image (B, 3, H, W) float in [-1, 1]  ->  features (B, C_cond, h, w)
* ``denoiser.onnx``       z_t (B*K, C, h, w), t (B*K,) int64, cond (B, C_cond, h, w),
                          cond_mask (B,) bool (True = use the learned null condition)  ->  out
                          (eps or v, per the config), i.e. ``Denoiser.forward`` exactly
* ``vae_decoder.onnx``    whitened latents (N, C, h, w)  ->  normalized slices (N, 4, H, W)
                          (``KLVAE.from_latent``: un-whitening + decoder)
* ``onnx.json``           manifest: opset, exporter, files (with any ``.onnx.data`` side files of
                          external weights, which must stay in the same folder), the SHA-256 of the
                          ``model.safetensors`` they came from, and the export-time check
                          (max |ORT - torch| on a random input per graph).

The batch axis is dynamic in every graph (B volumes; the denoiser's slice axis is K * B); H and W
are the model's native resolution. Default opset 18 with torch's dynamo exporter (it stores the
weights in ``<name>.onnx.data`` beside each graph); ``exporter="torchscript"`` uses the legacy
tracer instead (~20x faster to export, deprecated by torch).

Sampling (``OnnxMotionEngine.predict``) is ``MotionPredictor.predict`` with ONNX Runtime sessions
in place of the three torch networks: the same x_T (torch CPU generator, same seed), the same
timesteps, the same sampler functions of ``samplers.py`` and the same classifier-free guidance
wrapper (``cfg_model_fn`` called with an ORT-backed denoiser), with numpy <-> torch conversion at the
session boundary. Results match torch to float32 round-off (the tests require 1e-3 relative).

Loop guidance needs d(loss)/d(latent) through the VAE decoder, which ONNX Runtime (inference only)
cannot give. With ``loop_frames`` set, the engine therefore loads the torch VAE from the model's
``model.safetensors`` (``vae.*`` weights only) and runs ``LoopGuidance`` on it: the denoiser and the
final decode still run in ONNX Runtime, the guidance gradient (one VAE decode + backward per step)
in torch on the CPU. The exact-gradient mode (through the denoiser) is not available here.

Execution providers. ``device="cuda"`` asks for ``CUDAExecutionProvider`` (then CPU); onnxruntime-gpu
may be installed and still fall back to CPU when the CUDA libraries cannot load, so the engine
reports the providers each session *actually* got (``engine.providers``, ``engine.provider``),
never the ones it asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..motion.normalize import FrequencyScales
from .config import ModelConfig
from .pipeline import photo_tensor, volume_from_slices
from .samplers import SAMPLERS, cfg_model_fn
from .schedule import NoiseSchedule, sampling_timesteps

__all__ = [
    "ONNX_DIRNAME",
    "MANIFEST_NAME",
    "GRAPH_FILES",
    "OnnxExportError",
    "export_onnx",
    "OnnxMotionEngine",
    "weights_digest",
]

ONNX_DIRNAME = "onnx"
MANIFEST_NAME = "onnx.json"
MANIFEST_FORMAT = "image_dynamics.onnx_export"
MANIFEST_VERSION = 1
GRAPH_FILES = {
    "image_encoder": "image_encoder.onnx",
    "denoiser": "denoiser.onnx",
    "vae_decoder": "vae_decoder.onnx",
}
DEFAULT_OPSET = 18
MAX_BATCH = 1024


class OnnxExportError(RuntimeError):
    """Export failed, or exported files are missing / stale / unusable (message says which)."""


def weights_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a weights file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- export ----------------------------------------------------------------------------------------
class _EncoderGraph(torch.nn.Module):
    def __init__(self, encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


class _DenoiserGraph(torch.nn.Module):
    def __init__(self, denoiser) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        return self.denoiser(z_t, t, cond, cond_mask=cond_mask)


class _DecoderGraph(torch.nn.Module):
    def __init__(self, vae) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.from_latent(z)


@contextmanager
def _quiet_export():
    """Silence the exporter's chatter (progress lines, torchvision notices, tracer warnings)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def _graph_specs(predictor, batch: int = 2):
    cfg = predictor.config
    K = cfg.num_freqs
    W, H = cfg.resolution
    w, h = cfg.latent_size
    C = cfg.vae.latent_channels
    Cc = cfg.image_encoder.out_channels
    gen = torch.Generator().manual_seed(0)
    image = torch.rand((batch, 3, H, W), generator=gen) * 2 - 1
    z = torch.randn((batch * K, C, h, w), generator=gen)
    t = torch.randint(0, cfg.diffusion.num_train_steps, (batch,), generator=gen).repeat_interleave(K)
    cond = torch.randn((batch, Cc, h, w), generator=gen)
    mask = torch.tensor([False, True] * (batch // 2) + [False] * (batch % 2))
    return {
        "image_encoder": (_EncoderGraph(predictor.image_encoder), (image,), ["image"], ["features"],
                          {"image": {0: "batch"}, "features": {0: "batch"}}),
        "denoiser": (_DenoiserGraph(predictor.denoiser), (z, t, cond, mask), ["z_t", "t", "cond", "cond_mask"], ["out"],
                     {"z_t": {0: "slices"}, "t": {0: "slices"}, "cond": {0: "batch"}, "cond_mask": {0: "batch"},
                      "out": {0: "slices"}}),
        "vae_decoder": (_DecoderGraph(predictor.vae), (z,), ["z"], ["slices"], {"z": {0: "n"}, "slices": {0: "n"}}),
    }


def _export_one(module, args, path: Path, input_names, output_names, axes, opset: int, exporter: str, K: int) -> None:
    module.eval()
    if exporter == "dynamo":
        from torch.export import Dim

        if "slices" in axes.get("z_t", {}).values():
            b = Dim("batch", min=1, max=MAX_BATCH)
            shapes = {"z_t": {0: K * b}, "t": {0: K * b}, "cond": {0: b}, "cond_mask": {0: b}}
        else:
            shapes = {input_names[0]: {0: Dim("batch", min=1, max=MAX_BATCH * K)}}
        with _quiet_export():
            torch.onnx.export(module, args, str(path), dynamo=True, opset_version=opset, input_names=input_names,
                              output_names=output_names, dynamic_shapes=shapes, verbose=False, external_data=True)
    elif exporter == "torchscript":
        with _quiet_export():
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=input_names,
                              output_names=output_names, dynamic_axes=axes, do_constant_folding=True)
    else:
        raise ValueError(f"exporter must be 'dynamo' or 'torchscript', got {exporter!r}")


def export_onnx(
    predictor,
    out_dir: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    weights_sha256: str | None = None,
    check: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Export ``predictor`` (a ``MotionPredictor``) to ``out_dir``; returns the manifest.

    Files are written to a temporary folder inside ``out_dir`` and moved into place only when all
    three graphs exported (and passed the check), so a failed export never leaves a mixed set.
    """
    import onnx  # noqa: F401  (fail early with a clear ImportError)

    if opset < 17:
        raise ValueError("opset 17 or newer is required (LayerNormalization)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".export-{os.getpid()}"
    if tmp.exists():
        _rmtree(tmp)
    tmp.mkdir()
    K = predictor.config.num_freqs
    was = predictor.device
    predictor.to("cpu")
    parts: dict[str, dict] = {}
    try:
        for name, (module, args, inames, onames, axes) in _graph_specs(predictor).items():
            t0 = time.perf_counter()
            path = tmp / GRAPH_FILES[name]
            try:
                _export_one(module, args, path, inames, onames, axes, opset, exporter, K)
            except Exception as exc:
                raise OnnxExportError(f"exporting the {name} failed: {type(exc).__name__}: {exc}") from exc
            files = sorted(p.name for p in tmp.iterdir() if p.name.startswith(path.name))
            entry = {"file": path.name, "files": files, "inputs": inames, "outputs": onames,
                     "export_seconds": round(time.perf_counter() - t0, 3)}
            if check:
                entry["check_max_abs_error"] = _check_graph(module, args, path, inames)
            parts[name] = entry
            if log:
                log(f"exported {name} -> {path.name} ({entry['export_seconds']:.1f} s)")
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "opset": int(opset),
            "exporter": exporter,
            "torch": torch.__version__,
            "onnx": __import__("onnx").__version__,
            "preset": predictor.config.preset,
            "resolution": list(predictor.config.resolution),
            "num_freqs": K,
            "weights_sha256": weights_sha256,
            "dynamic_axes": {"batch": "volumes", "slices": "K * volumes (denoiser)"},
            "parts": parts,
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        # Replace the previous export as a whole.
        for old in list(out_dir.iterdir()):
            if old.is_file() and (old.name == MANIFEST_NAME or any(old.name.startswith(f) for f in GRAPH_FILES.values())):
                old.unlink()
        for p in tmp.iterdir():
            os.replace(p, out_dir / p.name)
    finally:
        _rmtree(tmp)
        predictor.to(was)
    return manifest


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _check_graph(module, args, path: Path, input_names) -> float:
    import onnxruntime as ort

    with torch.no_grad():
        ref = module(*args).float().numpy()
    opts = session_options(max(1, torch.get_num_threads()))
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    out = sess.run(None, {n: a.numpy() for n, a in zip(input_names, args)})[0]
    err = float(np.abs(out - ref).max())
    tol = 1e-3 * max(1.0, float(np.abs(ref).max()))
    if not np.isfinite(err) or err > tol:
        raise OnnxExportError(f"{path.name}: ONNX Runtime differs from torch by {err:.3g} (tolerance {tol:.3g})")
    return err


# -- inference -------------------------------------------------------------------------------------
def session_options(threads: int | None = None):
    """ONNX Runtime session options for the predictor's graphs.

    Idle intra-op threads sleep instead of spinning: between two denoiser calls the sampler runs
    torch ops on torch's own threads, and spinning ORT threads steal those cores (10-step predict
    on 2 cores: 2.7 s spinning, 2.0 s not; bench/predict_latency.py).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return opts


def _providers_for(device: str | None) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    dev = (device or "auto").lower()
    if dev.startswith("cuda") or dev == "auto":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if dev != "auto":
            warnings.warn("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu); running on CPU")
    elif dev != "cpu":
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    return ["CPUExecutionProvider"]


class _OrtDenoiser:
    """Callable with ``Denoiser.forward``'s signature, backed by an ORT session (for ``cfg_model_fn``)."""

    def __init__(self, session, num_freqs: int, cond_channels: int) -> None:
        self.session = session
        self.num_freqs = num_freqs
        self.cond_channels = cond_channels

    def __call__(self, z_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None, *, cond_mask=None) -> torch.Tensor:
        n, _, h, w = z_t.shape
        K = self.num_freqs
        b = n // K
        t = torch.as_tensor(t).reshape(-1)
        if t.shape[0] != n:
            t = t.expand(n) if t.shape[0] == 1 else t.repeat_interleave(n // t.shape[0])
        if cond is None:
            cond_np = np.zeros((b, self.cond_channels, h, w), np.float32)
            mask = np.ones(b, dtype=bool)
        else:
            cond_np = cond.detach().float().cpu().numpy()
            mask = np.zeros(cond_np.shape[0], dtype=bool) if cond_mask is None else cond_mask.detach().cpu().numpy().astype(bool)
            if cond_np.shape[0] != b:  # one condition for several volumes: repeat (graph wants one per volume)
                rep = b // cond_np.shape[0]
                cond_np, mask = np.repeat(cond_np, rep, axis=0), np.repeat(mask, rep)
        out = self.session.run(None, {
            "z_t": np.ascontiguousarray(z_t.detach().float().cpu().numpy()),
            "t": t.detach().cpu().numpy().astype(np.int64),
            "cond": np.ascontiguousarray(cond_np),
            "cond_mask": mask,
        })[0]
        return torch.from_numpy(out).to(z_t.device)


class OnnxMotionEngine:
    """A saved model's config and scales plus its three ONNX graphs in ONNX Runtime sessions.

    ``OnnxMotionEngine(model_dir, onnx_dir=None, device="cpu", threads=None)``; ``onnx_dir``
    defaults to ``model_dir/onnx``. ``predict`` has ``MotionPredictor.predict``'s signature.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        onnx_dir: str | os.PathLike | None = None,
        *,
        device: str | None = "cpu",
        threads: int | None = None,
        check_weights: bool = True,
    ) -> None:
        import onnxruntime as ort

        from .pipeline import CONFIG_NAME, SCALES_NAME, WEIGHTS_NAME

        self.model_dir = Path(model_dir)
        self.onnx_dir = Path(onnx_dir) if onnx_dir is not None else self.model_dir / ONNX_DIRNAME
        for name in (CONFIG_NAME, SCALES_NAME):
            if not (self.model_dir / name).is_file():
                raise OnnxExportError(f"{self.model_dir} is not a saved motion predictor: {name} is missing")
        manifest_path = self.onnx_dir / MANIFEST_NAME
        if not manifest_path.is_file():
            raise OnnxExportError(f"no ONNX export in {self.onnx_dir} ({MANIFEST_NAME} is missing)")
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
            raise OnnxExportError(f"{manifest_path} cannot be read ({exc}); export the model again") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != MANIFEST_FORMAT:
            raise OnnxExportError(f"{manifest_path} is not an image_dynamics ONNX manifest")
        self.config = ModelConfig.from_json((self.model_dir / CONFIG_NAME).read_text(encoding="utf-8"))
        self.scales = FrequencyScales.load(self.model_dir / SCALES_NAME)
        self.schedule = NoiseSchedule.from_config(self.config.diffusion)
        self.weights_path = self.model_dir / WEIGHTS_NAME
        expected = self.manifest.get("weights_sha256")
        if check_weights and expected and self.weights_path.is_file() and weights_digest(self.weights_path) != expected:
            raise OnnxExportError(f"the ONNX files in {self.onnx_dir} were exported from other weights than "
                                  f"{self.weights_path.name}; export them again")
        if list(self.manifest.get("resolution", [])) != list(self.config.resolution):
            raise OnnxExportError(f"the ONNX files in {self.onnx_dir} are for {self.manifest.get('resolution')}, "
                                  f"the model runs at {list(self.config.resolution)}")
        self._check_files()
        self.requested_providers = _providers_for(device)
        opts = session_options(threads)
        self.sessions = {}
        for part, fname in GRAPH_FILES.items():
            path = self.onnx_dir / fname
            try:
                self.sessions[part] = ort.InferenceSession(str(path), sess_options=opts,
                                                           providers=self.requested_providers)
            except Exception as exc:  # onnxruntime's InvalidProtobuf, NoSuchFile, Fail ...: plain Exceptions
                detail = " ".join(str(exc).split())[:300]
                raise OnnxExportError(f"ONNX Runtime cannot load {path} ({type(exc).__name__}: {detail}); "
                                      "export the model again") from None
        self._torch_vae = None

    def _check_files(self) -> None:
        """Every graph, and every file the manifest lists with it (``.onnx.data`` weights), is there:
        ONNX Runtime would otherwise fail on a missing side file with a bare "NoSuchFile"."""
        parts = self.manifest.get("parts")
        parts = parts if isinstance(parts, dict) else {}
        missing = []
        for part, fname in GRAPH_FILES.items():
            entry = parts.get(part)
            listed = entry.get("files") if isinstance(entry, dict) else None
            names = [fname] + ([f for f in listed if isinstance(f, str)] if isinstance(listed, list) else [])
            missing += [n for n in dict.fromkeys(names) if not (self.onnx_dir / n).is_file()]
        if missing:
            raise OnnxExportError(f"the ONNX export in {self.onnx_dir} is incomplete: {', '.join(missing)} "
                                  f"{'is' if len(missing) == 1 else 'are'} missing; export the model again")

    # -- what runs where ----------------------------------------------------------------------
    @property
    def providers(self) -> dict[str, list[str]]:
        """The execution providers each session actually got (fallbacks included)."""
        return {part: list(s.get_providers()) for part, s in self.sessions.items()}

    @property
    def provider(self) -> str:
        """The denoiser session's primary provider: where the sampling loop actually runs."""
        return self.sessions["denoiser"].get_providers()[0]

    def describe(self) -> str:
        return json.dumps({"engine": "onnxruntime", "preset": self.config.preset, "providers": self.providers,
                           "onnx_dir": str(self.onnx_dir)})

    def torch_vae(self):
        """The torch VAE (from ``model.safetensors``) used for the loop-guidance gradient."""
        if self._torch_vae is None:
            from safetensors import safe_open

            from .vae import KLVAE

            if not self.weights_path.is_file():
                raise OnnxExportError(f"loop guidance with ONNX needs the torch VAE weights in {self.weights_path}")
            vae = KLVAE(self.config.vae)
            state = {}
            try:
                with safe_open(str(self.weights_path), framework="pt") as f:
                    for key in f.keys():
                        if key.startswith("vae."):
                            state[key[4:]] = f.get_tensor(key)
                vae.load_state_dict(state, strict=True)
            except Exception as exc:  # SafetensorError (damaged file), RuntimeError (other weights)
                raise OnnxExportError(f"cannot read the VAE weights for loop guidance from {self.weights_path} "
                                      f"({type(exc).__name__}: {str(exc)[:200]})") from None
            self._torch_vae = vae.eval()
        return self._torch_vae

    # -- inference ----------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB -> (1, 3, H_model, W_model) float32 in [-1, 1], as ``MotionPredictor``."""
        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
        return photo_tensor(img, self.config.resolution).numpy()

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
        device: str | None = None,
    ) -> np.ndarray:
        """Spectral volume (K, 2, H_out, W_out) complex64; see ``MotionPredictor.predict``.

        ``device`` is fixed when the engine is built (execution providers) and ignored here.
        """
        from .loop_guidance import LoopGuidance

        if loop_exact_gradient:
            raise ValueError("the exact loop-guidance gradient runs through the denoiser, which ONNX Runtime "
                             "cannot differentiate; use the torch engine for it")
        cfg = self.config
        steps = cfg.diffusion.num_sampling_steps if steps is None else int(steps)
        guidance = cfg.diffusion.guidance_scale if guidance is None else float(guidance)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
        w_lat, h_lat = cfg.latent_size
        K = cfg.num_freqs

        x_img = self.preprocess(image)
        features = torch.from_numpy(self.sessions["image_encoder"].run(None, {"image": x_img})[0])
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        x_T = torch.randn((K, cfg.vae.latent_channels, h_lat, w_lat), generator=gen)
        timesteps = sampling_timesteps(self.schedule.num_train_steps, steps, cfg.diffusion.timestep_spacing)
        denoiser = _OrtDenoiser(self.sessions["denoiser"], K, cfg.denoiser.cond_channels)
        model_fn = cfg_model_fn(denoiser, features, guidance)
        guidance_fn = None
        if loop_frames is not None:
            guidance_fn = LoopGuidance(self.torch_vae(), self.scales, self.schedule, loop_frames,
                                       strength=loop_strength, num_frames=cfg.num_frames)
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
        slices = self.sessions["vae_decoder"].run(None, {"z": np.ascontiguousarray(z0.float().numpy())})[0]
        return volume_from_slices(slices, self.scales, cfg.resolution, size)
