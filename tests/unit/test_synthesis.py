"""The synthesis network, the renderer interface and the renderer's training data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from image_dynamics.errors import UserError
from image_dynamics.render import Cancelled, make_renderer
from image_dynamics.render.quality import psnr, render_loss, ssim
from image_dynamics.render.splat import softmax_splat
from image_dynamics.render.synthesis import SynthesisConfig, SynthesisNet, load_synthesis, save_synthesis

torch.set_num_threads(1)


def tiny_net(seed=0, backward_input=False):
    torch.manual_seed(seed)
    return SynthesisNet(SynthesisConfig(channels=(4, 8, 8), backward_input=backward_input))


def test_shapes_odd_sizes_and_untrained_output_is_softmax_splat():
    net = tiny_net()
    img = torch.rand(1, 3, 13, 19)
    flow = torch.randn(3, 2, 13, 19)
    imp = torch.rand(1, 1, 13, 19)
    with torch.no_grad():
        out = net.decode(net.encode(img), flow, imp)
    assert out.shape == (3, 3, 13, 19)
    # The zero-initialised output layer makes a fresh network plain softmax splatting of the photo.
    ref, _ = softmax_splat(img.expand(3, -1, -1, -1), flow, imp * net.log_beta.exp()[0])
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("backward_input", [False, True])
def test_shared_encoding_equals_per_frame(backward_input):
    net = tiny_net(1, backward_input)
    with torch.no_grad():
        net.out.weight.normal_(0, 0.1)  # make the decoder matter
        img = torch.rand(1, 3, 16, 20)
        flow = torch.randn(2, 2, 16, 20)
        imp = torch.rand(1, 1, 16, 20)
        shared = net.decode(net.encode(img), flow, imp)
        each = torch.cat([net(img, flow[i:i + 1], imp) for i in range(2)])
    torch.testing.assert_close(shared, each, atol=1e-5, rtol=1e-5)


def test_one_training_step_reduces_loss():
    net = tiny_net(2)
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 24, 24, generator=g)
    flow = torch.randn(2, 2, 24, 24, generator=g)
    imp = torch.rand(2, 1, 24, 24, generator=g)
    target = torch.rand(2, 3, 24, 24, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(5):
        loss, _ = render_loss(net(img, flow, imp), target)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(render_loss(net(img, flow, imp), target)[0].detach()) < first


def test_weighted_loss_counts_weighted_pixels_more():
    from image_dynamics.render.train import motion_weight

    target = torch.zeros(1, 3, 16, 16)
    pred = torch.zeros(1, 3, 16, 16)
    pred[..., 8, 8] = 1.0  # one wrong pixel
    imp = torch.zeros(1, 1, 16, 16)
    w = motion_weight(imp, 4.0)
    assert torch.all(w == 1.0)
    imp[..., 8, 8] = 1.0
    w = motion_weight(imp, 4.0)
    assert w[0, 0, 6:11, 6:11].eq(5.0).all() and w.sum() == 256 + 4 * 25
    plain, _ = render_loss(pred, target)
    weighted, _ = render_loss(pred, target, w)
    assert float(weighted) > float(plain)


def test_metrics():
    a = torch.rand(2, 3, 20, 20)
    assert torch.allclose(ssim(a, a), torch.ones(2))
    b = (a + 0.1).clamp(0, 1)
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(psnr(a, b), 10 * torch.log10(1 / mse))
    assert (ssim(a, torch.rand(2, 3, 20, 20)) < 0.2).all()


def test_save_load_roundtrip_and_splat_renderer(tmp_path):
    net = tiny_net(3)
    with torch.no_grad():
        net.out.weight.normal_(0, 0.05)
    save_synthesis(net, tmp_path / "m", meta={"note": "test"})
    loaded = load_synthesis(tmp_path / "m")
    for k, v in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    r = make_renderer("splat", model_dir=tmp_path / "m")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    disp = rng.normal(0, 1.5, (5, 2, 20, 24)).astype(np.float32)
    calls = []
    frames = r.render(img, disp, progress=lambda i, n: calls.append((i, n)))
    assert frames.shape == (5, 20, 24, 3) and frames.dtype == np.uint8
    assert calls[-1] == (5, 5)
    with torch.no_grad():
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        d = torch.from_numpy(disp)
        imp = torch.sqrt((d ** 2).sum(1, keepdim=True)).mean(0, keepdim=True)
        expect = (net(x, d, imp).clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(frames.astype(int) - expect).max() <= 1


@pytest.mark.parametrize("kind", ["mesh", "backward"])
def test_baseline_renderers_identity_batches_and_cancel(kind):
    r = make_renderer(kind)
    img = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    frames = r.render(img, np.zeros((3, 2, 12, 10), np.float32))
    assert (frames == img).all()
    r.batch_size = lambda h, w: 2  # force several batches
    with pytest.raises(Cancelled):
        r.render(img, np.zeros((5, 2, 12, 10), np.float32), cancel=lambda: True)
    seen = []
    r.render(img, np.zeros((5, 2, 12, 10), np.float32), progress=lambda i, n: seen.append(i))
    assert seen == [2, 4, 5]


def test_renderer_user_errors(tmp_path):
    with pytest.raises(UserError):
        make_renderer("nope")
    with pytest.raises(UserError, match="no renderer model"):
        make_renderer("splat", model_dir=tmp_path / "missing")
    r = make_renderer("mesh")
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(UserError):
        r.render(img, np.zeros((2, 2, 8, 9), np.float32))
    with pytest.raises(UserError):
        r.render(img.astype(np.float32), np.zeros((2, 2, 8, 8), np.float32))
    bad = np.zeros((1, 2, 8, 8), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(UserError):
        r.render(img, bad)


def test_scene_triplets_are_consistent(tmp_path):
    from image_dynamics.render.data import TripletDataset, generate, scene_triplets
    from image_dynamics.synth import make_scene

    rec = scene_triplets(5, times=[3, 40], width=64, height=48, magnify=2.0)
    scene = make_scene(5, 64, 48)
    scene.A = scene.A * np.float32(2.0)
    np.testing.assert_array_equal(rec["frames"], scene.render_frames([3, 40]))
    np.testing.assert_allclose(rec["disp"].astype(np.float32), scene.displacement_gt([3, 40]), atol=2e-2)
    paths = generate(tmp_path, "train", 1, 7, times_per_scene=2, width=64, height=48, progress=False)
    ds = TripletDataset(paths, crop=(16, 24), variants=2, flip=True)
    assert len(ds) == 1 * 2 * 2 * 2
    plain, flipped = ds[0], ds[1]
    assert plain["image"].shape == (3, 16, 24) and plain["flow"].shape == (2, 16, 24)
    torch.testing.assert_close(flipped["image"], plain["image"].flip(-1))
    torch.testing.assert_close(flipped["flow"][0], -plain["flow"][0].flip(-1))
