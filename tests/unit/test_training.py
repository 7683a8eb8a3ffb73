"""Training: cache building, datasets and flips, losses falling, exact resume, checkpoints, export."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from image_dynamics.model import ModelConfig, MotionPredictor
from image_dynamics.model.regression import RegressionConfig, RegressionNet, RegressionPredictor
from image_dynamics.motion.normalize import normalize
from image_dynamics.motion.resample import resample_image, resample_volume
from image_dynamics.synth.dataset import ShardDataset, build_dataset
from image_dynamics.training import data as tdata
from image_dynamics.training.loop import (EMA, TrainSettings, Trainer, list_checkpoints, optimizer_from_flat,
                                          optimizer_to_flat, setup_runtime, step_generator)

W, H = 48, 32  # the tiny preset's resolution
QUIET = dict(progress=False, log_every=1, eval_size=8, threads=1, keep=10)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    build_dataset(root, train_count=6, test_count=3, workers=1, shard_size=4, width=96, height=64, progress=False)
    return root


@pytest.fixture(scope="module")
def cache(shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "c"
    tdata.build_cache([shards], out, (W, H), workers=1, progress=False, task_size=3)
    return out


@pytest.fixture(scope="module")
def vae_run(cache, tmp_path_factory) -> Path:
    from image_dynamics.training.train_vae import train_vae

    out = tmp_path_factory.mktemp("runs") / "vae"
    s = TrainSettings(out=str(out), steps=3, batch_size=4, eval_every=0, ckpt_every=0, **QUIET)
    train_vae(str(cache), s, ModelConfig.preset("tiny"))
    return out


# -- cache -------------------------------------------------------------------------------------
def test_cache_layout_and_values(cache, shards):
    c = tdata.TrainingCache(cache)
    info = json.loads((cache / "cache.json").read_text())
    assert info["resolution"] == [W, H] and info["splits"] == {"train": {"count": 6}, "test": {"count": 3}}
    assert info["scales"]["fit"]["split"] == "train" and (cache / "scales.json").is_file()
    assert c.array("train", "images").shape == (6, H, W, 3)
    vols = c.array("train", "volumes")
    assert vols.shape == (6, 16, 4, H, W) and vols.dtype == np.float16
    assert np.array_equal(c.array("test", "index")[:, 1], np.arange(3))
    # item 5 equals resize + normalize of the source pair (float16 rounding aside)
    img, S = ShardDataset(shards, "train")[5]
    ref = normalize(resample_volume(S, W, H), c.scales)
    got = vols[5].astype(np.float32)
    assert np.allclose(got, ref, rtol=2e-3, atol=2e-3)
    assert np.array_equal(c.array("train", "images")[5], resample_image(img, W, H))
    assert not any(p.name.endswith(".partial") for p in cache.parent.iterdir())


def test_flip_negates_x_and_mirrors(cache):
    ds = tdata.VAESliceDataset(cache, "train", flip=True)
    a, b = ds[2 * (16 * 1 + 3)], ds[2 * (16 * 1 + 3) + 1]  # pair 1, frequency 3, flip 0 / 1
    assert np.array_equal(b[[0, 2]], -a[[0, 2], :, ::-1])  # x_re, x_im: mirrored and negated
    assert np.array_equal(b[[1, 3]], a[[1, 3], :, ::-1])  # y_re, y_im: mirrored
    vol = tdata.VolumeDataset(cache, "train", flip=True, flat=True)
    img0, v0 = vol[2]
    img1, v1 = vol[3]
    assert v0.shape == (64, H, W) and np.array_equal(img1, img0[:, :, ::-1])
    s = tdata.SliceDataset(cache, "train", flip=False)
    image, target, k = s[16 * 2 + 5]
    assert k == 5 and target.shape == (4, H, W) and image.shape == (3, H, W) and -1 <= image.min() <= image.max() <= 1


# -- losses fall, optimizer state round trip ------------------------------------------------------
def test_vae_loss_falls_on_a_fixed_batch(cache):
    from image_dynamics.model.vae import KLVAE
    from image_dynamics.training.train_vae import VAENet

    torch.manual_seed(0)
    net = VAENet(KLVAE(ModelConfig.preset("tiny").vae))
    ds = tdata.VAESliceDataset(cache, "train", flip=False)
    x = torch.from_numpy(np.stack([ds[i] for i in (3, 20, 40, 77)]))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for step in range(6):
        loss, _ = net(x, step_generator(0, 0, 0))
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.9 * losses[0], losses


def test_optimizer_state_round_trips_through_safetensors_and_json():
    from safetensors.torch import load, save

    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = optimizer_to_flat(opt, ["w", "b"])
    tensors = load(save(tensors))
    meta = json.loads(json.dumps(meta))
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=5.0)
    optimizer_from_flat(opt2, tensors, meta, ["w", "b"])
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(a["state"][i][k], b["state"][i][k])


# -- reproducibility: resume = uninterrupted ------------------------------------------------------
def _stage1(cache, vae_run, out, steps, resume=False):
    from image_dynamics.training.train_denoiser import train_denoiser

    s = TrainSettings(out=str(out), steps=steps, batch_size=4, ema=0.9, eval_every=0, ckpt_every=3,
                      resume=resume, **QUIET)
    return train_denoiser(str(cache), s, stage=1, vae_run=str(vae_run), latent_stats_slices=32)


def test_resume_continues_bit_identically(cache, vae_run, tmp_path):
    from safetensors.torch import load_file

    full = _stage1(cache, vae_run, tmp_path / "full", 5)
    part = _stage1(cache, vae_run, tmp_path / "part", 3)
    assert part["step"] == 3
    with pytest.raises(Exception, match="already holds checkpoints"):
        _stage1(cache, vae_run, tmp_path / "part", 5)
    resumed = _stage1(cache, vae_run, tmp_path / "part", 5, resume=True)
    assert resumed["step"] == 5
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        a = load_file(str(Path(full["checkpoint"]) / name))
        b = load_file(str(Path(resumed["checkpoint"]) / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    # training moved the weights, and frozen parts (VAE, frequency attention) stayed put
    first = load_file(str(list_checkpoints(tmp_path / "full")[0] / "model.safetensors"))
    last = load_file(str(Path(full["checkpoint"]) / "model.safetensors"))
    assert not torch.equal(first["denoiser.conv_in.weight"], last["denoiser.conv_in.weight"])
    assert torch.equal(first["vae.encoder.conv_in.weight"], last["vae.encoder.conv_in.weight"])
    fa = [k for k in last if ".freq_attn." in k]
    assert fa and all(torch.equal(first[k], last[k]) for k in fa)


def test_checkpoints_hold_no_pickle(vae_run):
    files = [p for p in Path(vae_run).rglob("*") if p.is_file()]
    assert files and {p.suffix for p in files} <= {".safetensors", ".json", ".jsonl"}
    for p in files:
        head = p.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", p  # pickle protocol 2+ / torch zip archive
    cfg = json.loads((Path(vae_run) / "config.json").read_text())
    assert {"task", "model", "data", "train", "parameters", "runtime"} <= set(cfg)
    assert cfg["model"]["preset"] == "tiny" and cfg["train"]["seed"] == 0


def test_ctrl_c_finishes_the_step_and_saves(cache, tmp_path):
    from image_dynamics.model.vae import KLVAE
    from image_dynamics.training.train_vae import VAENet

    class Interrupting(VAENet):
        calls = 0

        def forward(self, x, generator=None):
            Interrupting.calls += 1
            if Interrupting.calls == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return super().forward(x, generator)

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job
    s = TrainSettings(out=str(tmp_path / "r"), steps=50, batch_size=2, eval_every=0, ckpt_every=0, **QUIET)
    torch.manual_seed(0)
    net = Interrupting(KLVAE(ModelConfig.preset("tiny").vae))
    trainer = Trainer(net=net, train_set=tdata.VAESliceDataset(cache, "train"), eval_set=None, settings=s,
                      runtime=setup_runtime(s), config={"task": {"name": "vae"}, "model": {}})
    result = trainer.run()
    assert result["interrupted"] and result["step"] == 2
    state = json.loads((list_checkpoints(tmp_path / "r")[-1] / "train_state.json").read_text())
    assert state["step"] == 2 and state["interrupted"]
    assert signal.getsignal(signal.SIGINT) is before  # the trainer puts back what it found


def test_lr_schedule_and_ema():
    s = TrainSettings(steps=100, lr=1.0, warmup=10, lr_decay="cosine", min_lr_ratio=0.1)
    assert s.lr_at(0) == pytest.approx(0.1) and s.lr_at(9) == pytest.approx(1.0)
    assert s.lr_at(99) == pytest.approx(0.1, abs=1e-3)
    p = torch.nn.Parameter(torch.zeros(3))
    ema = EMA([("p", p)], 0.5)
    with torch.no_grad():
        p.fill_(1.0)
    ema.update(1000)
    with ema.applied():
        assert torch.allclose(p, torch.full((3,), 0.5))
    assert torch.equal(p.detach(), torch.ones(3))


# -- the whole recipe, tiny: stage 2, export, predict; the baseline ---------------------------------
def test_stage2_export_predict_and_regression(cache, vae_run, tmp_path):
    from image_dynamics.training.export import export_predictor, export_regression
    from image_dynamics.training.train_denoiser import train_denoiser
    from image_dynamics.training.train_regression import train_regression

    s1 = _stage1(cache, vae_run, tmp_path / "d1", 2)
    s = TrainSettings(out=str(tmp_path / "d2"), steps=2, batch_size=2, ema=0.9, eval_every=0, ckpt_every=0, **QUIET)
    s2 = train_denoiser(str(cache), s, stage=2, init=str(tmp_path / "d1"))
    assert s1["step"] == 2 and s2["step"] == 2
    folder = export_predictor(tmp_path / "d2", tmp_path / "model", vae_run=str(vae_run))
    pred = MotionPredictor.from_pretrained(folder)
    assert pred.denoiser.frequency_attention_enabled
    assert not torch.equal(pred.vae.latent_std, torch.ones_like(pred.vae.latent_std))  # fitted whitening
    img = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    S = pred.predict(img, steps=2, size=(96, 64))
    assert S.shape == (16, 2, 64, 96) and S.dtype == np.complex64 and np.all(np.isfinite(S))
    assert json.loads((folder / "training.json").read_text())["runs"][0]["step"] == 2

    rs = TrainSettings(out=str(tmp_path / "reg"), steps=2, batch_size=2, eval_every=0, ckpt_every=0, **QUIET)
    train_regression(str(cache), rs, model_config=ModelConfig.preset("tiny"))
    reg = RegressionPredictor.from_pretrained(export_regression(tmp_path / "reg", tmp_path / "regmodel"))
    assert reg.predict(img, size=(96, 64)).shape == (16, 2, 64, 96)


def test_regression_net_is_sized_like_the_denoiser():
    mc = ModelConfig.preset("cpu")
    cfg = RegressionConfig.matching(mc)
    with torch.device("meta"):
        n = sum(p.numel() for p in RegressionNet(cfg).parameters())
    target = cfg.matched_to["parameters"]
    assert abs(n - target) < 0.15 * target
    assert tuple(cfg.resolution) == (128, 80) and cfg.out_channels == 64


def test_cli_cache_and_vae(shards, tmp_path, run_cli):
    cache_dir, run = tmp_path / "cache", tmp_path / "vae"
    r = run_cli("train", "cache", "--data", shards, "--out", cache_dir, "--resolution", "48x32", "--workers", "1",
                "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "6 training + 3 test pairs at 48x32" in r.stdout
    args = ["train", "vae", "--cache", cache_dir, "--out", run, "--preset", "tiny", "--steps", "2", "--batch-size", "2",
            "--threads", "1", "--no-progress", "--eval-size", "4"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "finished at step 2" in r.stdout and (run / "checkpoints" / "step_00000002" / "model.safetensors").is_file()
    r = run_cli(*args)  # the run folder is taken: a sentence and a hint, no traceback
    assert r.returncode == 2 and "already holds checkpoints" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train", "vae", "--cache", cache_dir, "--out", tmp_path / "x", "--preset", "cpu", "--steps", "1")
    assert r.returncode == 2 and "48x32" in r.stderr and "128x80" in r.stderr


def test_cache_accepts_extracted_video_shards(shards, tmp_path):
    """A flat folder of extract shards joins a synthetic dataset; its split goes by source video."""
    import zlib

    pytest.importorskip("image_dynamics.extract.shards")
    names = [f"clip{i}.mp4" for i in range(200)]
    test_video = next(n for n in names if zlib.crc32(n.encode()) % 20 == 0)
    train_video = next(n for n in names if zlib.crc32(n.encode()) % 20 != 0)
    rng = np.random.default_rng(0)
    dense = tmp_path / "dense"
    dense.mkdir()
    videos = [train_video, train_video, test_video]
    S = rng.normal(0, 0.3, (3, 16, 4, 64, 96)).astype(np.float16)
    np.savez_compressed(dense / "shard_0000.npz", images=rng.integers(0, 256, (3, 64, 96, 3), dtype=np.uint8), S=S,
                        videos=np.array(videos), start_frames=np.array([0, 10, 0], np.int32), fps=np.float32(30),
                        num_frames=np.int32(150), channel_order=np.array("x_re,y_re,x_im,y_im"))
    info = tdata.build_cache([shards, dense], tmp_path / "c", (W, H), workers=1, progress=False)
    assert [(s["kind"], s["train"], s["test"]) for s in info["sources"]] == [("synth", 6, 3), ("dense", 2, 1)]
    c = tdata.TrainingCache(tmp_path / "c")
    assert c.count("train") == 8 and c.array("test", "index")[-1].tolist() == [1, 2]
    packed = S[2].astype(np.float32)
    ref = normalize(resample_volume((packed[:, 0:2] + 1j * packed[:, 2:4]).astype(np.complex64), W, H), c.scales)
    assert np.allclose(c.array("test", "volumes")[-1].astype(np.float32), ref, rtol=2e-3, atol=2e-3)
