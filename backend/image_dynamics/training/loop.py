"""Shared training machinery: runtime set-up, the step loop, checkpoints, resume, evaluation.

Reproducibility. A run is a pure function of its settings, its seed and the step number:

* the data order comes from torch's ``DistributedSampler`` (seeded shuffle, ``set_epoch``), also
  with one process; step s reads batch s mod (steps per epoch) of epoch s div (steps per epoch),
  so a resumed run reads exactly the batches an uninterrupted run would have read;
* augmentation (flips) is part of the item index, so the sampler decides it (``training.data``);
* every random draw of a step (VAE posterior noise, diffusion timesteps and noise, condition
  dropout) comes from a CPU ``torch.Generator`` seeded from (seed, rank, step) (``step_generator``),
  never from a generator state that would have to be saved;
* the learning rate is a function of the step (warm-up, then constant or cosine);
* checkpoints store weights, Adam state and EMA weights exactly (safetensors).

So a run interrupted after step k and resumed continues bit-identically (on the same device with
the same thread count; the unit tests check it). ``seed_everything`` seeds python, numpy and
torch and asks torch for deterministic algorithms (warn-only: a few CUDA kernels have none).

Distributed training. Launched by ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT), ``setup_runtime`` joins the process group (gloo on CPU, nccl on CUDA,
one GPU per process at ``cuda:LOCAL_RANK``) and the model is wrapped in
``DistributedDataParallel``. ``--batch-size`` is the global batch, split evenly over the ranks; the
union of the ranks' batches at step s is the batch one process would read at step s. Only rank 0
logs, evaluates, shows the progress bar and writes checkpoints; every rank stops at the same step
after Ctrl-C (the stop flag is all-reduced every step).

Mixed precision (CUDA): ``--precision auto`` picks bf16 where the GPU supports it, else fp16 with
a ``GradScaler``; losses are always reduced in float32. CPU trains in float32 by default.

Run folder::

    config.json               the full configuration (model, task, training settings, data)
    train.jsonl / eval.jsonl  rank-0 logs: training loss every --log-every steps, held-out loss
    checkpoints/step_XXXXXXXX/
        model.safetensors     every weight and buffer of the trained network
        ema.safetensors       exponential moving average of the trained weights (--ema > 0)
        optimizer.safetensors Adam's state tensors, flattened ("state.<i>.exp_avg", ...)
        optimizer.json        the rest of the optimizer state (param groups, names, scalars)
        train_state.json      step, epoch, loss scaler, timing, last logs
        config.json           copy of the run's config.json

No file is a pickle. A checkpoint folder is written as ``*.partial`` and renamed when complete.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import random
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import UserError

__all__ = [
    "TrainSettings",
    "Runtime",
    "setup_runtime",
    "seed_everything",
    "step_generator",
    "EMA",
    "Trainer",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "optimizer_to_flat",
    "optimizer_from_flat",
]

CKPT_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPT_FILE = "optimizer.safetensors"
OPT_META = "optimizer.json"
STATE_FILE = "train_state.json"
CONFIG_FILE = "config.json"


@dataclass
class TrainSettings:
    """Settings of the step loop (shared by every trainer). ``batch_size`` is the GLOBAL batch."""

    out: str = "runs/run"
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    warmup: int = 100
    lr_decay: str = "constant"  # "constant" or "cosine" (to min_lr_ratio * lr at the last step)
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    ema: float = 0.0  # EMA decay of the trained weights; 0 = off
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    precision: str = "auto"  # "auto", "fp32", "bf16", "fp16"
    workers: int = 0  # DataLoader worker processes per rank
    threads: int = 0  # torch CPU threads per rank; 0 = leave torch's default (or cores / ranks)
    log_every: int = 20
    eval_every: int = 500  # 0 = only at the end
    eval_size: int = 256
    eval_batch_size: int = 0  # 0 = batch_size
    ckpt_every: int = 500  # 0 = only at the end
    keep: int = 3  # checkpoints kept (the newest)
    resume: bool = False
    progress: bool = True
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UserError("--steps must be at least 1")
        if self.batch_size < 1:
            raise UserError("--batch-size must be at least 1")
        if self.lr_decay not in ("constant", "cosine"):
            raise UserError(f"--lr-decay must be constant or cosine, got {self.lr_decay!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise UserError(f"--precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if not 0.0 <= self.ema < 1.0:
            raise UserError("--ema must be in [0, 1)")
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): linear warm-up, then constant or cosine."""
        if self.warmup > 0 and step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.lr_decay == "cosine":
            span = max(1, self.steps - self.warmup)
            p = min(1.0, (step - self.warmup) / span)
            lo = self.min_lr_ratio * self.lr
            return lo + 0.5 * (self.lr - lo) * (1.0 + math.cos(math.pi * p))
        return self.lr


# ------------------------------------------------------------------------------------------------
# Runtime: device, distributed, precision, seeding
# ------------------------------------------------------------------------------------------------
@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    distributed: bool = False
    amp_dtype: torch.dtype | None = None
    precision: str = "fp32"
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "world_size": self.world, "backend": self.backend,
                "precision": self.precision, "threads": torch.get_num_threads(), "torch": torch.__version__}


def _resolve_device(name: str, local_rank: int, distributed: bool) -> torch.device:
    from ..devices import resolve_device

    dev = torch.device(resolve_device(name))
    if dev.type == "mps":
        raise UserError("training on mps is not supported", "use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if distributed and dev.index is None:
            dev = torch.device("cuda", local_rank)  # torchrun: one GPU per local rank
        torch.cuda.set_device(dev)
    return dev


def setup_runtime(settings: TrainSettings) -> Runtime:
    """Device, process group (under torchrun), threads and precision for this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    distributed = world > 1
    device = _resolve_device(settings.device, local_rank, distributed)
    backend = None
    if distributed:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not torch.distributed.is_initialized():
            kwargs: dict[str, Any] = {"backend": backend, "timeout": datetime.timedelta(minutes=60)}
            if device.type == "cuda":
                kwargs["device_id"] = device
            torch.distributed.init_process_group(**kwargs)
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    elif distributed and device.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world)))
    precision = settings.precision
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UserError("fp16 training needs a CUDA GPU", "use --precision fp32 or bf16 on the CPU")
    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return Runtime(device=device, rank=rank, world=world, local_rank=local_rank, distributed=distributed,
                   amp_dtype=amp, precision=precision, backend=backend)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (all devices); ask for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def step_generator(seed: int, rank: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one step of one rank, seeded from (seed, stream, rank, step)."""
    state = np.random.SeedSequence([int(seed) % 2**63, int(stream), int(rank), int(step)]).generate_state(2, np.uint32)
    value = (int(state[0]) << 31) ^ int(state[1])  # < 2**63
    return torch.Generator(device="cpu").manual_seed(value)


def to_device(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


# ------------------------------------------------------------------------------------------------
# EMA
# ------------------------------------------------------------------------------------------------
class EMA:
    """Exponential moving average of named parameters (float32 copies).

    Decay warms up as min(decay, (1 + n) / (10 + n)) with n updates so far, so early averages are
    not dominated by the random initialisation. ``n`` is the training step (stateless on resume).
    """

    def __init__(self, named_params: list[tuple[str, nn.Parameter]], decay: float) -> None:
        self.decay = float(decay)
        self.params = dict(named_params)
        self.shadow = {n: p.detach().float().clone() for n, p in named_params}

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for n, p in self.params.items():
            self.shadow[n].lerp_(p.detach().float(), 1.0 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: t.detach().cpu().contiguous() for n, t in self.shadow.items()}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        if set(tensors) != set(self.shadow):
            raise UserError("the checkpoint's EMA weights do not match the trained parameters")
        for n, t in tensors.items():
            self.shadow[n].copy_(t)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Temporarily load the EMA weights into the parameters."""
        backup = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(self.shadow[n].to(p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(backup[n])


# ------------------------------------------------------------------------------------------------
# Checkpoints (safetensors + json, never pickle)
# ------------------------------------------------------------------------------------------------
def _json_safe(v: Any) -> Any:
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if torch.is_tensor(v) and v.numel() == 1:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"cannot store {type(v).__name__} in JSON")


def optimizer_to_flat(opt: torch.optim.Optimizer, names: list[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state -> (tensors for safetensors, JSON-safe rest). ``names``: the params' names."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = _json_safe(value)
    meta = {"param_groups": _json_safe(sd["param_groups"]), "scalars": scalars, "param_names": list(names),
            "class": type(opt).__name__}
    return tensors, meta


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict,
                        names: list[str]) -> None:
    if meta.get("param_names") != list(names):
        raise UserError("the checkpoint's optimizer state belongs to other parameters",
                        "resume with the same task and model settings, or start a new run")
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("step_") and not p.name.endswith(".partial") and (p / STATE_FILE).is_file():
            try:
                found.append((int(p.name[5:]), p))
            except ValueError:
                continue
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run folder (-> its latest checkpoint) or a checkpoint folder."""
    p = Path(path)
    if (p / STATE_FILE).is_file() and (p / MODEL_FILE).is_file():
        return p
    ck = latest_checkpoint(p)
    if ck is None:
        raise UserError(f"{path} holds no checkpoint", "pass a training run folder (its --out) or a checkpoint folder")
    return ck


def save_checkpoint(folder: str | os.PathLike, *, model: dict[str, torch.Tensor], train_state: dict, config: dict,
                    optimizer: tuple[dict[str, torch.Tensor], dict] | None = None,
                    ema: dict[str, torch.Tensor] | None = None) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    meta = {"format": "image_dynamics.training_checkpoint", "step": str(train_state.get("step"))}
    save_file({k: v.detach().cpu().contiguous() for k, v in model.items()}, str(tmp / MODEL_FILE), metadata=meta)
    if ema is not None:
        save_file(ema, str(tmp / EMA_FILE), metadata=meta)
    if optimizer is not None:
        tensors, opt_meta = optimizer
        save_file(tensors, str(tmp / OPT_FILE), metadata=meta)
        (tmp / OPT_META).write_text(json.dumps(opt_meta, indent=1))
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True))
    (tmp / STATE_FILE).write_text(json.dumps(_json_safe(train_state), indent=1))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_checkpoint(folder: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """{model, ema (or None), optimizer (tensors, meta) or None, train_state, config, path}."""
    from safetensors.torch import load_file

    folder = resolve_checkpoint(folder)
    out: dict[str, Any] = {"path": folder}
    out["model"] = load_file(str(folder / MODEL_FILE), device=str(device))
    out["ema"] = load_file(str(folder / EMA_FILE), device=str(device)) if (folder / EMA_FILE).is_file() else None
    if (folder / OPT_FILE).is_file():
        out["optimizer"] = (load_file(str(folder / OPT_FILE), device="cpu"), json.loads((folder / OPT_META).read_text()))
    else:
        out["optimizer"] = None
    out["train_state"] = json.loads((folder / STATE_FILE).read_text())
    out["config"] = json.loads((folder / CONFIG_FILE).read_text())
    return out


def model_weights(checkpoint: dict[str, Any], use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The checkpoint's weights, with the EMA copies of the trained parameters if present and asked for."""
    weights = dict(checkpoint["model"])
    if use_ema and checkpoint.get("ema"):
        for k, v in checkpoint["ema"].items():
            weights[k] = v.to(weights[k].dtype)
    return weights


# ------------------------------------------------------------------------------------------------
# The step loop
# ------------------------------------------------------------------------------------------------
class _StopFlag:
    """SIGINT / SIGTERM -> finish the step, save, exit. A second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True

    def __enter__(self) -> "_StopFlag":
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        except ValueError:  # not the main thread: no handlers, Ctrl-C behaves as usual
            self._old = {}
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """Runs ``net`` for ``settings.steps`` steps; ``net(batch, generator) -> (loss, logs)``.

    ``run()`` returns {step, interrupted, checkpoint, last_train, last_eval, seconds, net}.

    ``net`` holds every module of the task (frozen ones too: they are saved with the checkpoint,
    which makes it self-contained); the trained parameters are those with ``requires_grad``.
    ``net.evaluate(batch, generator) -> dict`` (optional) gives held-out metrics; by default the
    held-out loss is ``net(batch, generator)`` without gradients. Evaluation uses the same
    generators at every evaluation, so its numbers are comparable across steps.
    """

    def __init__(self, *, net: nn.Module, train_set, eval_set, settings: TrainSettings, runtime: Runtime,
                 config: dict, compare_keys: tuple[str, ...] = ("model", "task")) -> None:
        self.net = net
        self.train_set = train_set
        self.eval_set = eval_set
        self.s = settings
        self.rt = runtime
        self.config = config
        self.compare_keys = compare_keys
        self.run_dir = Path(settings.out)
        if settings.batch_size % runtime.world:
            raise UserError(f"--batch-size {settings.batch_size} does not split over {runtime.world} processes",
                            "use a multiple of the number of processes")
        self.local_batch = settings.batch_size // runtime.world
        per_rank = len(train_set) // runtime.world
        self.steps_per_epoch = per_rank // self.local_batch
        if self.steps_per_epoch < 1:
            raise UserError(f"the training set ({len(train_set)} items) is smaller than one batch of "
                            f"{settings.batch_size}", "use a smaller --batch-size or more data")

    # -- helpers ---------------------------------------------------------------------------
    def _loader(self, dataset, indices: list[int], batch_size: int, drop_last: bool):
        from torch.utils.data import DataLoader

        kwargs: dict[str, Any] = {}
        if self.s.workers > 0:
            kwargs["prefetch_factor"] = 2
        return DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=self.s.workers,
                          drop_last=drop_last, pin_memory=self.rt.device.type == "cuda", **kwargs)

    def _epoch_indices(self, epoch: int) -> list[int]:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(self.train_set, num_replicas=self.rt.world, rank=self.rt.rank, shuffle=True,
                                     seed=self.s.seed, drop_last=True)
        sampler.set_epoch(epoch)
        return list(sampler)[: self.steps_per_epoch * self.local_batch]

    def _batches(self, start_step: int) -> Iterator[tuple[int, Any]]:
        step = start_step
        while True:
            epoch, offset = divmod(step, self.steps_per_epoch)
            idx = self._epoch_indices(epoch)[offset * self.local_batch:]
            for batch in self._loader(self.train_set, idx, self.local_batch, True):
                yield step, batch
                step += 1

    def _write_jsonl(self, name: str, record: dict) -> None:
        with open(self.run_dir / name, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_json_safe(record)) + "\n")

    def _model_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.net.state_dict().items()}

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        if self.eval_set is None or len(self.eval_set) == 0:
            return {}
        net = self.net
        was_training = net.training
        net.eval()
        bs = self.s.eval_batch_size or self.s.batch_size
        loader = self._loader(self.eval_set, list(range(len(self.eval_set))), bs, False)
        sums: dict[str, float] = {}
        count = 0
        ctx = self.ema.applied() if self.ema is not None else contextlib.nullcontext()
        t0 = time.time()
        with ctx:
            for i, batch in enumerate(loader):
                batch = to_device(batch, self.rt.device)
                gen = step_generator(self.s.seed, 0, i, stream=1)
                n = _batch_len(batch)
                with self.rt.autocast():
                    if hasattr(net, "evaluate"):
                        logs = net.evaluate(batch, gen)
                    else:
                        loss, logs = net(batch, gen)
                        logs = {"loss": float(loss), **logs}
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * n
                count += n
        net.train(was_training)
        out = {k: v / max(count, 1) for k, v in sums.items()}
        out.update(step=step, items=count, ema=self.ema is not None, seconds=round(time.time() - t0, 2))
        return out

    def save(self, step: int, extra: dict) -> Path:
        opt = optimizer_to_flat(self.optimizer, self.param_names)
        state = {"step": step, "epoch": step // self.steps_per_epoch, "steps_per_epoch": self.steps_per_epoch,
                 "global_batch": self.s.batch_size, "world_size": self.rt.world,
                 "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
        folder = save_checkpoint(self.run_dir / CKPT_DIR / f"step_{step:08d}", model=self._model_state(),
                                 train_state=state, config=self.config, optimizer=opt,
                                 ema=self.ema.state_dict() if self.ema is not None else None)
        ckpts = list_checkpoints(self.run_dir)
        for old in ckpts[: max(0, len(ckpts) - max(1, self.s.keep))]:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def _prepare_resume(self) -> dict | None:
        existing = latest_checkpoint(self.run_dir)
        if existing is None:
            return None
        if not self.s.resume:
            raise UserError(f"{self.run_dir} already holds checkpoints (latest {existing.name})",
                            "pass --resume to continue that run, or choose another --out")
        ck = load_checkpoint(existing, device=self.rt.device)
        for key in self.compare_keys:
            if _canon(ck["config"].get(key)) != _canon(self.config.get(key)):
                raise UserError(f"cannot resume {self.run_dir}: its {key!r} settings differ from this command's",
                                "resume with the same settings, or start a new run with another --out")
        return ck

    # -- main ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from tqdm import tqdm

        s, rt = self.s, self.rt
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.net.to(rt.device)
        named = [(n, p) for n, p in self.net.named_parameters() if p.requires_grad]
        if not named:
            raise UserError("nothing to train: every parameter is frozen")
        self.param_names = [n for n, _ in named]
        self.optimizer = torch.optim.Adam([p for _, p in named], lr=s.lr, betas=s.adam_betas,
                                          weight_decay=s.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda") if rt.precision == "fp16" else None
        self.ema = EMA(named, s.ema) if s.ema > 0 else None

        start = 0
        ck = self._prepare_resume()
        if ck is not None:
            self.net.load_state_dict(ck["model"], strict=True)
            if ck["optimizer"] is None:
                raise UserError(f"{ck['path']} has no optimizer state: it cannot be resumed")
            optimizer_from_flat(self.optimizer, ck["optimizer"][0], ck["optimizer"][1], self.param_names)
            if self.ema is not None:
                if ck["ema"] is None:
                    raise UserError(f"{ck['path']} has no EMA weights but --ema is set")
                self.ema.load_state_dict(ck["ema"])
            if self.scaler is not None and ck["train_state"].get("scaler"):
                self.scaler.load_state_dict(ck["train_state"]["scaler"])
            start = int(ck["train_state"]["step"])
        n_total = sum(p.numel() for p in self.net.parameters())
        n_train = sum(p.numel() for _, p in named)
        self.config.setdefault("parameters", {})
        self.config["parameters"].update(total=n_total, trained=n_train)
        self.config["runtime"] = rt.describe()
        if rt.is_main:
            (self.run_dir / CONFIG_FILE).write_text(json.dumps(self.config, indent=1, sort_keys=True))

        if start >= s.steps:
            if rt.is_main:
                print(f"{self.run_dir}: already trained to step {start} (--steps {s.steps}); nothing to do")
            return {"step": start, "interrupted": False, "checkpoint": str(ck["path"]) if ck else None,
                    "last_train": ck["train_state"].get("last_train", {}) if ck else {},
                    "last_eval": ck["train_state"].get("last_eval", {}) if ck else {}, "seconds": 0.0,
                    "net": self.net}
        model = self.net
        if rt.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            import inspect

            # buffers (latent whitening stats) are identical on every rank: no per-step sync
            sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                    else {"broadcast_buffers": False})
            model = DDP(self.net, device_ids=[rt.device.index] if rt.device.type == "cuda" else None, **sync)
        self.net.train()

        bar = tqdm(total=s.steps, initial=start, desc=self.config.get("task", {}).get("name", "train"),
                   unit="step", disable=not (rt.is_main and s.progress), dynamic_ncols=True, mininterval=1.0)
        window: dict[str, float] = {}
        window_n = 0
        t_window = time.time()
        t_start = time.time()
        last_eval: dict = {}
        last_logs: dict = {}
        step = start
        interrupted = False
        smooth = None
        try:
            with _StopFlag() as stop:
                if step < s.steps:
                    for step_i, batch in self._batches(start):
                        lr = s.lr_at(step_i)
                        for g in self.optimizer.param_groups:
                            g["lr"] = lr
                        batch = to_device(batch, rt.device)
                        gen = step_generator(s.seed, rt.rank, step_i)
                        with rt.autocast():
                            loss, logs = model(batch, gen)
                        if not torch.isfinite(loss.detach()):
                            raise RuntimeError(f"the loss is {float(loss)} at step {step_i}: lower --lr "
                                               f"or use --precision fp32; the last checkpoint is intact")
                        if self.scaler is not None:
                            self.scaler.scale(loss).backward()
                            self.scaler.unscale_(self.optimizer)
                        else:
                            loss.backward()
                        gnorm = None
                        if s.grad_clip > 0:
                            gnorm = float(torch.nn.utils.clip_grad_norm_([p for _, p in named], s.grad_clip))
                        if self.scaler is not None:
                            self.scaler.step(self.optimizer)
                            self.scaler.update()
                        else:
                            self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                        if self.ema is not None:
                            self.ema.update(step_i)
                        step = step_i + 1

                        lv = float(loss.detach())
                        smooth = lv if smooth is None else 0.95 * smooth + 0.05 * lv
                        window["loss"] = window.get("loss", 0.0) + lv
                        for k, v in logs.items():
                            window[k] = window.get(k, 0.0) + float(v)
                        if gnorm is not None:
                            window["grad_norm"] = window.get("grad_norm", 0.0) + gnorm
                        window_n += 1
                        if rt.is_main:
                            bar.update(1)
                            bar.set_postfix(loss=f"{smooth:.4g}", lr=f"{lr:.2g}", refresh=False)
                        if rt.is_main and (step % max(1, s.log_every) == 0 or step == s.steps):
                            dt = time.time() - t_window
                            last_logs = {k: v / window_n for k, v in window.items()}
                            rec = {"step": step, "epoch": step / self.steps_per_epoch, "lr": lr, **last_logs,
                                   "sec_per_step": dt / window_n, "items_per_sec": window_n * s.batch_size / dt,
                                   "elapsed": time.time() - t_start}
                            self._write_jsonl("train.jsonl", rec)
                            window, window_n, t_window = {}, 0, time.time()
                        t_side = time.time()  # evaluation and saving are not step time
                        if rt.is_main and s.eval_every > 0 and step % s.eval_every == 0 and step < s.steps:
                            last_eval = self.evaluate(step)
                            self._write_jsonl("eval.jsonl", last_eval)
                            bar.write(_format_eval(last_eval))
                        if rt.is_main and s.ckpt_every > 0 and step % s.ckpt_every == 0 and step < s.steps:
                            self.save(step, {"last_train": last_logs, "last_eval": last_eval})
                        t_window += time.time() - t_side
                        flag = stop.set
                        if rt.distributed:
                            t = torch.tensor([1.0 if flag else 0.0], device=rt.device)
                            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
                            flag = bool(t.item() > 0)
                        if flag:
                            interrupted = True
                            break
                        if step >= s.steps:
                            break
                path = None
                if rt.is_main:
                    if not interrupted:
                        last_eval = self.evaluate(step)
                        if last_eval:
                            self._write_jsonl("eval.jsonl", last_eval)
                            bar.write(_format_eval(last_eval))
                    if step > start:
                        path = self.save(step, {"last_train": last_logs, "last_eval": last_eval,
                                                "interrupted": interrupted})
                    else:
                        path = latest_checkpoint(self.run_dir)
                rt.barrier()
        finally:
            bar.close()
        return {"step": step, "interrupted": interrupted, "checkpoint": str(path) if path else None,
                "last_train": last_logs, "last_eval": last_eval, "seconds": time.time() - t_start, "net": self.net}


def _batch_len(batch: Any) -> int:
    if torch.is_tensor(batch):
        return int(batch.shape[0])
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_len(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_len(next(iter(batch.values())))
    return 1


def _canon(v: Any) -> str:
    return json.dumps(_json_safe(v), sort_keys=True)


def _format_eval(e: dict) -> str:
    keys = [k for k in e if k not in ("step", "items", "ema", "seconds")]
    return f"eval @ {e.get('step')}: " + ", ".join(f"{k} {e[k]:.5g}" for k in keys) + (" (EMA)" if e.get("ema") else "")


def finish_distributed(rt: Runtime) -> None:
    if rt.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@contextlib.contextmanager
def training_runtime(settings: TrainSettings, runtime: Runtime | None = None) -> Iterator[Runtime]:
    """The given runtime, or one set up for ``settings`` and shut down (process group) on leaving."""
    rt = runtime or setup_runtime(settings)
    try:
        yield rt
    finally:
        if runtime is None:
            finish_distributed(rt)


__all__ += ["to_device", "model_weights", "resolve_checkpoint", "finish_distributed", "training_runtime"]
