"""Softmax splatting against a per-pixel python reference, and the mesh / backward baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from image_dynamics.render.backward import backward_warp
from image_dynamics.render.mesh import mesh_warp
from image_dynamics.render.splat import motion_importance, softmax_splat

torch.set_num_threads(1)


def reference_splat(x, flow, z):
    """Brute force: every source pixel, every bilinear corner, python floats (no max shift)."""
    C, H, W = x.shape
    num = np.zeros((C, H, W))
    den = np.zeros((H, W))
    cov = np.zeros((H, W))
    for y in range(H):
        for xx in range(W):
            tx, ty = xx + float(flow[0, y, xx]), y + float(flow[1, y, xx])
            x0, y0 = math.floor(tx), math.floor(ty)
            ax, ay = tx - x0, ty - y0
            for qy, qx, b in ((y0, x0, (1 - ax) * (1 - ay)), (y0, x0 + 1, ax * (1 - ay)),
                              (y0 + 1, x0, (1 - ax) * ay), (y0 + 1, x0 + 1, ax * ay)):
                if 0 <= qx < W and 0 <= qy < H:
                    w = math.exp(float(z[y, xx])) * b
                    num[:, qy, qx] += w * x[:, y, xx].numpy()
                    den[qy, qx] += w
                    cov[qy, qx] += b
    out = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
    return out, cov


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_random(seed):
    g = torch.Generator().manual_seed(seed)
    H, W, C = 7, 9, 3
    x = torch.rand(1, C, H, W, generator=g, dtype=torch.float64)
    # Large enough to push pixels over the borders and onto each other.
    flow = torch.randn(1, 2, H, W, generator=g, dtype=torch.float64) * 2.5
    z = torch.randn(1, 1, H, W, generator=g, dtype=torch.float64) * 3
    out, cov = softmax_splat(x, flow, z)
    ref, ref_cov = reference_splat(x[0], flow[0], z[0, 0])
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-10)
    np.testing.assert_allclose(cov[0, 0].numpy(), ref_cov, atol=1e-10)
    assert (ref_cov == 0).any() and (ref_cov > 1.2).any(), "the case must have holes and collisions"


def test_zero_motion_is_identity():
    x = torch.rand(2, 4, 6, 5)
    out, cov = softmax_splat(x, torch.zeros(2, 2, 6, 5), torch.rand(2, 1, 6, 5) * 50)
    torch.testing.assert_close(out, x)
    torch.testing.assert_close(cov, torch.ones(2, 1, 6, 5))


def test_integer_shift_moves_and_drops_at_border():
    x = torch.arange(20.0).reshape(1, 1, 4, 5)
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 0] = 2.0  # two pixels right
    flow[:, 1] = -1.0  # one up
    out, cov = softmax_splat(x, flow)
    expect = torch.zeros(1, 1, 4, 5)
    expect[0, 0, :3, 2:] = x[0, 0, 1:, :3]
    torch.testing.assert_close(out, expect)
    assert cov[0, 0, :3, 2:].eq(1).all() and cov[0, 0, 3].eq(0).all() and cov[0, 0, :, :2].eq(0).all()


def test_collision_larger_importance_wins():
    x = torch.tensor([[[[1.0, 5.0, 0.0]]]])  # pixel 0 moves onto pixel 1
    flow = torch.tensor([[[[1.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]]])
    near = torch.tensor([[[[30.0, 0.0, 0.0]]]])
    out, _ = softmax_splat(x, flow, near)
    assert abs(float(out[0, 0, 0, 1]) - 1.0) < 1e-6
    out, _ = softmax_splat(x, flow, -near)
    assert abs(float(out[0, 0, 0, 1]) - 5.0) < 1e-6
    out, _ = softmax_splat(x, flow)  # equal importance: the average
    assert abs(float(out[0, 0, 0, 1]) - 3.0) < 1e-6


def test_huge_importance_range_does_not_underflow():
    # A global max shift would give exp(-1000) = 0 to the static pixels and open holes.
    x = torch.rand(1, 3, 5, 6)
    z = torch.zeros(1, 1, 5, 6)
    z[0, 0, 0, 0] = 1000.0
    out, _ = softmax_splat(x, torch.zeros(1, 2, 5, 6), z)
    torch.testing.assert_close(out, x)


def test_gradients_flow_to_features_and_importance():
    x = torch.rand(1, 2, 5, 5, requires_grad=True)
    z = torch.rand(1, 1, 5, 5, requires_grad=True)
    flow = torch.full((1, 2, 5, 5), 0.3)
    flow[0, 0, 2, 2] = -1.0  # a collision, so Z matters
    out, _ = softmax_splat(x, flow, z)
    out.sum().backward()
    assert x.grad.abs().sum() > 0 and z.grad.abs().sum() > 0


def test_motion_importance():
    d = torch.zeros(3, 2, 2, 2)
    d[0, 0] = 3.0
    d[0, 1] = 4.0
    imp = motion_importance(d)
    assert imp.shape == (1, 1, 2, 2)
    torch.testing.assert_close(imp, torch.full((1, 1, 2, 2), 5.0 / 3))


def test_mesh_warp_identity_and_integer_shift():
    img = torch.rand(1, 3, 6, 7)
    torch.testing.assert_close(mesh_warp(img, torch.zeros(2, 2, 6, 7), torch.zeros(1, 1, 6, 7)),
                               img.expand(2, -1, -1, -1))
    flow = torch.zeros(1, 2, 6, 7)
    flow[:, 0] = 2.0
    out = mesh_warp(img, flow, torch.zeros(1, 1, 6, 7))
    torch.testing.assert_close(out[..., 2:], img[..., :5])
    torch.testing.assert_close(out[..., :2], img[..., :2])  # uncovered: the photo's own pixels


def test_mesh_warp_fold_nearer_wins():
    # A 1-pixel-wide strip in column 3 jumps two pixels right, over static columns 5..: the
    # covered pixels take the strip's colour where its importance (depth) is larger.
    img = torch.zeros(1, 1, 5, 9)
    img[..., 3] = 1.0
    flow = torch.zeros(1, 2, 5, 9)
    flow[0, 0, :, 3] = 2.0
    depth = flow[:, :1].abs()
    out = mesh_warp(img, flow, depth)
    assert torch.all(out[0, 0, :, 5] == 1.0)
    out_behind = mesh_warp(img, flow, -depth)  # strip behind: column 5 stays the static scene
    assert torch.all(out_behind[0, 0, :, 5] == 0.0)


def test_backward_warp_shift():
    img = torch.rand(1, 3, 5, 8)
    flow = torch.zeros(1, 2, 5, 8)
    flow[:, 0] = 1.0
    out = backward_warp(img, flow)
    torch.testing.assert_close(out[..., 1:], img[..., :-1])
    torch.testing.assert_close(backward_warp(img, torch.zeros(1, 2, 5, 8)), img)
