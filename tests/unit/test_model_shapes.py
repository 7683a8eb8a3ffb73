"""Networks of the motion predictor, with the tiny preset: shapes, frequency attention, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from image_dynamics.model import (
    Denoiser,
    DiffusionConfig,
    FrequencyAttention,
    ImageEncoder,
    KLVAE,
    ModelConfig,
    MotionPredictor,
)
from image_dynamics.model.losses import diffusion_loss, vae_loss
from image_dynamics.model.schedule import NoiseSchedule
from image_dynamics.motion.resample import resample_volume

K = 16


@pytest.fixture(autouse=True)
def _few_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread beats two (no OpenMP spin on a shared CPU)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    return ModelConfig.preset("tiny")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _latent_hw(cfg: ModelConfig) -> tuple[int, int]:
    w, h = cfg.latent_size
    return h, w


# -- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "small", "paper"])
def test_config_json_round_trip(name):
    cfg = ModelConfig.preset(name)
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.preset == name
    assert isinstance(again.denoiser.channel_mults, tuple)


def test_config_rejects_inconsistent_settings():
    cfg = ModelConfig.preset("tiny")
    d = cfg.to_dict()
    d["denoiser"]["cond_channels"] = 7
    with pytest.raises(ValueError, match="cond_channels"):
        ModelConfig.from_dict(d)
    d = cfg.to_dict()
    d["vae"]["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        ModelConfig.from_dict(d)
    with pytest.raises(ValueError):
        DiffusionConfig(prediction_type="x0")
    with pytest.raises(ValueError, match="preset"):
        ModelConfig.preset("huge")


def test_paper_preset_matches_the_paper_sizes():
    cfg = ModelConfig.preset("paper")
    assert cfg.vae.base_channels == 128 and cfg.vae.channel_mults == (1, 2, 4)
    assert cfg.vae.downsample_factor == 4 and cfg.vae.latent_channels == 4
    assert cfg.denoiser.base_channels == 128 and cfg.denoiser.channel_mults == (1, 4, 8)
    assert cfg.image_encoder.out_channels == 16 and cfg.latent_size == (64, 40)
    assert cfg.diffusion.num_train_steps == 1000 and cfg.diffusion.beta_schedule == "scaled_linear"


# -- VAE ---------------------------------------------------------------------------------------
def test_vae_shapes_and_loss(cfg):
    torch.manual_seed(0)
    vae = KLVAE(cfg.vae)
    W, H = cfg.resolution
    h, w = _latent_hw(cfg)
    x = torch.randn(3, 4, H, W)
    post = vae.encode(x)
    assert post.mean.shape == (3, 4, h, w) and post.logvar.shape == (3, 4, h, w)
    assert post.kl().shape == (3,) and bool((post.kl() >= 0).all())
    z1, z2 = post.sample(_gen(1)), post.sample(_gen(1))
    assert torch.equal(z1, z2) and not torch.equal(z1, post.sample(_gen(2)))
    recon, post = vae(x, generator=_gen(0))
    assert recon.shape == x.shape
    loss, logs = vae_loss(x, recon, post)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(logs) == {"l1", "grad", "kl", "total"}
    loss.backward()
    assert vae.decoder.conv_out.weight.grad is not None
    with pytest.raises(ValueError):
        vae.encode(torch.randn(1, 4, H + 2, W))


def test_latent_whitening(cfg):
    torch.manual_seed(0)
    vae = KLVAE(cfg.vae).eval()
    W, H = cfg.resolution
    data = [torch.randn(8, 4, H, W) * 0.5 + 0.2 for _ in range(2)]
    mean, std = vae.fit_latent_stats(data)
    assert mean.shape == (4,) and std.shape == (4,)
    with torch.no_grad():
        z = torch.cat([vae.to_latent(x) for x in data])
        per_channel = z.transpose(0, 1).reshape(4, -1)
        assert torch.allclose(per_channel.mean(1), torch.zeros(4), atol=1e-4)
        assert torch.allclose(per_channel.std(1), torch.ones(4), atol=1e-3)
        # from_latent undoes the whitening before decoding
        assert torch.allclose(vae.from_latent(vae.to_latent(data[0])), vae.decode(vae.encode(data[0]).mode()), atol=1e-5)
    assert "latent_mean" in vae.state_dict() and "latent_std" in vae.state_dict()


# -- image encoder -----------------------------------------------------------------------------
def test_image_encoder_shape(cfg):
    torch.manual_seed(0)
    enc = ImageEncoder(cfg.image_encoder)
    W, H = cfg.resolution
    h, w = _latent_hw(cfg)
    out = enc(torch.rand(2, 3, H, W) * 2 - 1)
    assert out.shape == (2, 16, h, w)


# -- denoiser ----------------------------------------------------------------------------------
def _denoiser(cfg, seed=0) -> Denoiser:
    torch.manual_seed(seed)
    return Denoiser(cfg.denoiser, K).eval()


def _randomise_frequency_attention(den: Denoiser) -> None:
    g = _gen(123)
    for layer in den.frequency_attention_layers():
        with torch.no_grad():
            layer.proj.weight.copy_(torch.randn(layer.proj.weight.shape, generator=g) * 0.5)


def test_denoiser_shapes(cfg):
    den = _denoiser(cfg)
    h, w = _latent_hw(cfg)
    z = torch.randn(2 * K, 4, h, w)
    cond = torch.randn(2, 16, h, w)
    with torch.no_grad():
        assert den(z, torch.tensor([10, 500]), cond).shape == z.shape  # t per volume
        assert den(z, 999, None).shape == z.shape  # scalar t, unconditional
        assert den(z, torch.full((2 * K,), 3), cond, cond_mask=torch.tensor([False, True])).shape == z.shape
    assert any(m.attn is not None for m in den.modules() if hasattr(m, "attn"))
    with pytest.raises(ValueError):
        den(torch.randn(K + 1, 4, h, w), 1, None)  # not whole volumes
    with pytest.raises(ValueError):
        den(z, 1, torch.randn(2, 16, h + 1, w))
    # stage 1: independent slices need frequency attention off
    fi = torch.tensor([0, 5, 15])
    with pytest.raises(ValueError):
        den(torch.randn(3, 4, h, w), 1, torch.randn(3, 16, h, w), freq_index=fi)
    den.set_frequency_attention(False)
    with torch.no_grad():
        assert den(torch.randn(3, 4, h, w), 1, torch.randn(3, 16, h, w), freq_index=fi).shape == (3, 4, h, w)


def test_condition_and_null_embedding_matter(cfg):
    den = _denoiser(cfg)
    h, w = _latent_hw(cfg)
    z = torch.randn(K, 4, h, w)
    cond = torch.randn(1, 16, h, w)
    with torch.no_grad():
        a = den(z, 500, cond)
        b = den(z, 500, None)
        c = den(z, 500, cond, cond_mask=torch.tensor([True]))
    assert not torch.allclose(a, b)
    assert torch.equal(b, c)  # a masked condition is exactly the null condition


def test_frequency_attention_mixes_frequencies_only_when_enabled(cfg):
    den = _denoiser(cfg)
    _randomise_frequency_attention(den)
    h, w = _latent_hw(cfg)
    z = torch.randn(2 * K, 4, h, w, generator=_gen(0))
    cond = torch.randn(2, 16, h, w, generator=_gen(1))
    z2 = z.clone()
    z2[3] += 1.0  # volume 0, frequency 3
    for enabled in (True, False):
        den.set_frequency_attention(enabled)
        with torch.no_grad():
            diff = (den(z2, 400, cond) - den(z, 400, cond)).flatten(1).abs().amax(1)
        others = torch.cat([diff[:3], diff[4:K]])
        assert diff[3] > 1e-3
        if enabled:
            assert bool((others > 1e-6).all()), "every other frequency of the volume must see the change"
        else:
            assert torch.equal(others, torch.zeros_like(others))
        assert torch.equal(diff[K:], torch.zeros(K)), "volumes must never see each other"


def test_zero_init_frequency_attention_preserves_stage1_model(cfg):
    den = _denoiser(cfg)
    h, w = _latent_hw(cfg)
    z = torch.randn(2 * K, 4, h, w)
    cond = torch.randn(2, 16, h, w)
    with torch.no_grad():
        den.set_frequency_attention(False)
        stage1 = den(z, 250, cond)
        den.set_frequency_attention(True)
        stage2 = den(z, 250, cond)
    assert torch.equal(stage1, stage2)


def test_stage2_trains_only_frequency_attention(cfg):
    den = _denoiser(cfg).train()
    fa = list(den.frequency_attention_parameters())
    fa_ids = {id(p) for p in fa}
    assert fa and len(fa_ids) == len(fa)
    n_layers = len(den.frequency_attention_layers())
    assert n_layers >= 4 and all(isinstance(m, FrequencyAttention) for m in den.frequency_attention_layers())
    for p in den.parameters():
        p.requires_grad_(id(p) in fa_ids)
    h, w = _latent_hw(cfg)
    sched = NoiseSchedule.from_config(cfg.diffusion)
    loss = diffusion_loss(den, torch.randn(K, 4, h, w), torch.randn(1, 16, h, w), sched, generator=_gen(0))
    loss.backward()
    assert all(p.grad is not None for p in fa)
    assert all(p.grad is None for p in den.parameters() if id(p) not in fa_ids)


def test_diffusion_loss_stage1_slices(cfg):
    den = _denoiser(cfg).train()
    den.set_frequency_attention(False)
    h, w = _latent_hw(cfg)
    sched = NoiseSchedule.from_config(cfg.diffusion)
    loss = diffusion_loss(
        den, torch.randn(4, 4, h, w), torch.randn(4, 16, h, w), sched, generator=_gen(0), freq_index=torch.tensor([0, 1, 7, 15])
    )
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()


# -- pipeline: save / load ---------------------------------------------------------------------
def _photo(h=40, w=60, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_save_load_round_trip_without_pickle(tmp_path):
    pred = MotionPredictor.random_init("tiny", seed=3)
    _randomise_frequency_attention(pred.denoiser)
    with torch.no_grad():
        pred.vae.latent_mean.fill_(0.1)
        pred.vae.latent_std.fill_(1.5)
    folder = pred.save_pretrained(tmp_path / "model")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "model.safetensors", "scales.json"]
    for p in folder.iterdir():
        head = p.read_bytes()[:2]
        assert head[:1] != b"\x80" and not head.startswith(b"PK"), f"{p.name} looks like a pickle / torch zip"
    loaded = MotionPredictor.from_pretrained(folder)
    assert loaded.config == pred.config
    np.testing.assert_array_equal(loaded.scales.scales, pred.scales.scales)
    sd1, sd2 = pred.state_dict(), loaded.state_dict()
    assert sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    img = _photo()
    a = pred.predict(img, seed=5, steps=3)
    b = loaded.predict(img, seed=5, steps=3)
    assert a.dtype == np.complex64 and a.shape == (K, 2, 32, 48)
    np.testing.assert_array_equal(a, b)


def test_from_pretrained_reports_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        MotionPredictor.from_pretrained(tmp_path)


def test_predict_output_size_and_input_checks():
    pred = MotionPredictor.random_init("tiny", seed=0)
    img = _photo()
    native = pred.predict(img, seed=1, steps=2)
    big = pred.predict(img, seed=1, steps=2, size=(60, 40))
    assert big.shape == (K, 2, 40, 60)
    # the volume is resampled with vectors rescaled per axis (x by 60/48, y by 40/32)
    np.testing.assert_array_equal(big, resample_volume(native, 60, 40))
    uniform = np.zeros((K, 2, 32, 48), np.complex64)
    uniform[1, 0], uniform[1, 1] = 1 + 1j, 2.0
    scaled = resample_volume(uniform, 60, 40)
    np.testing.assert_allclose(scaled[1, 0], (1 + 1j) * 60 / 48, rtol=1e-5)
    np.testing.assert_allclose(scaled[1, 1], 2.0 * 40 / 32, rtol=1e-5)
    with pytest.raises(ValueError, match="RGB uint8"):
        pred.predict(img.astype(np.float32), seed=1, steps=2)
    with pytest.raises(ValueError, match="sampler"):
        pred.predict(img, seed=1, steps=2, sampler="euler")
