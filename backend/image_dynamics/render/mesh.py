"""Mesh-warp baseline: what the displaced image plane in Blender (and the paper's demo) shows.

The photo is a triangle mesh with one vertex per pixel centre (two triangles per 2x2 block of
pixels, split along the same diagonal everywhere). Frame t moves vertex p to p + D_t(p); each
displaced triangle is rasterised at the integer pixel centres it covers (edges inclusive) and
texture-mapped: the barycentric mix of its vertices' original positions is where the photo is
sampled (bilinearly). Folds, where triangles overlap, are resolved by a z-buffer whose depth is
the interpolated motion importance (mean |D| over the clip: larger motion in front, as the
official demo does); exact ties go to the later triangle. Pixels no triangle covers (where the
mesh edge moved inward) keep the photo's own pixel, the static background a plane in front of
a copy of the photo would show.

Vectorised torch: candidates (triangle, pixel) are enumerated from each triangle's bounding box
with ``repeat_interleave``; the z-buffer is one ``scatter_reduce_`` amax over an int64 key
(quantised depth, then candidate number), which is deterministic on CPU and CUDA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mesh_warp"]

_DEPTH_QUANTUM = 1e-4  # pixels of importance per key step


def _triangles(H: int, W: int, device) -> torch.Tensor:
    """Vertex indices (T, 3) of the pixel-grid mesh, counter-clockwise in image coordinates."""
    ys, xs = torch.meshgrid(torch.arange(H - 1, device=device), torch.arange(W - 1, device=device), indexing="ij")
    v00 = (ys * W + xs).reshape(-1)
    v10, v01, v11 = v00 + 1, v00 + W, v00 + W + 1
    return torch.cat([torch.stack([v00, v10, v01], 1), torch.stack([v10, v11, v01], 1)], 0)


def _sample(image: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (C, n) of image (C, H, W) at pixel coordinates (clamped to the image)."""
    C, H, W = image.shape
    grid = torch.stack([sx / max(W - 1, 1) * 2 - 1, sy / max(H - 1, 1) * 2 - 1], -1).view(1, 1, -1, 2)
    return F.grid_sample(image[None], grid.to(image.dtype), mode="bilinear", padding_mode="border",
                         align_corners=True)[0, :, 0]


def _vertices(H: int, W: int, device) -> torch.Tensor:
    """Original vertex positions (V, 2) = (x, y) of every pixel centre."""
    gy, gx = torch.meshgrid(torch.arange(H, device=device, dtype=torch.float32),
                            torch.arange(W, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


def _warp_one(image: torch.Tensor, flow: torch.Tensor, depth: torch.Tensor, tris: torch.Tensor,
              src: torch.Tensor) -> torch.Tensor:
    C, H, W = image.shape
    dev = image.device
    pos = src + flow.float().reshape(2, -1).t()  # displaced vertex positions
    dep = depth.float().reshape(-1)
    P = pos[tris]  # (T, 3, 2)
    ok = torch.isfinite(P).all(dim=(1, 2))
    P = torch.where(ok[:, None, None], P, torch.zeros_like(P))
    lo = torch.ceil(P.amin(1) - 1e-6)
    hi = torch.floor(P.amax(1) + 1e-6)
    lo = torch.maximum(lo, torch.zeros_like(lo))
    hi = torch.minimum(hi, torch.tensor([W - 1, H - 1], device=dev, dtype=hi.dtype))
    size = (hi - lo + 1).clamp_min(0)
    a, b, c = P[:, 0], P[:, 1], P[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    count = (size[:, 0] * size[:, 1]).long() * (ok & (area.abs() > 1e-9)).long()
    tri_id = torch.repeat_interleave(torch.arange(len(tris), device=dev), count)
    if tri_id.numel() == 0:
        return image.clone()
    start = torch.cumsum(count, 0) - count
    local = torch.arange(tri_id.numel(), device=dev) - start[tri_id]
    bw = size[tri_id, 0].long()
    px = lo[tri_id, 0] + (local % bw).float()
    py = lo[tri_id, 1] + torch.div(local, bw, rounding_mode="floor").float()
    a, b, c, ar = a[tri_id], b[tri_id], c[tri_id], area[tri_id]
    # Barycentric coordinates from signed sub-areas (edge functions).
    l0 = ((b[:, 0] - px) * (c[:, 1] - py) - (b[:, 1] - py) * (c[:, 0] - px)) / ar
    l1 = ((c[:, 0] - px) * (a[:, 1] - py) - (c[:, 1] - py) * (a[:, 0] - px)) / ar
    l2 = 1.0 - l0 - l1
    tol = -1e-5
    inside = (l0 >= tol) & (l1 >= tol) & (l2 >= tol)
    vid = tris[tri_id]  # (n, 3)
    lam = torch.stack([l0, l1, l2], 1)
    z = (lam * dep[vid]).sum(1)
    key = torch.round(z.clamp_min(0) / _DEPTH_QUANTUM).long() * (tri_id.numel() + 1) + torch.arange(
        tri_id.numel(), device=dev)
    key = torch.where(inside, key, torch.full_like(key, -1))
    pix = py.long() * W + px.long()
    best = torch.full((H * W,), -1, dtype=torch.long, device=dev)
    best.scatter_reduce_(0, pix, key, reduce="amax")
    win = inside & (key == best[pix])
    uv = (lam[win, :, None] * src[vid[win]]).sum(1)  # texture coordinates of the winners
    out = image.reshape(C, -1).clone()
    out[:, pix[win]] = _sample(image, uv[:, 0], uv[:, 1])
    return out.reshape(C, H, W)


def mesh_warp(image: torch.Tensor, flow: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Frames (B, C, H, W) of image (1 or B, C, H, W) forward-warped as a mesh by flow (B, 2, H, W).

    depth (1 or B, 1, H, W): the z-buffer value per vertex (larger is nearer).
    """
    B, _, H, W = flow.shape
    tris = _triangles(H, W, flow.device)
    src = _vertices(H, W, flow.device)
    frames = []
    for i in range(B):
        img = image[i if image.shape[0] > 1 else 0]
        dep = depth[i if depth.shape[0] > 1 else 0]
        frames.append(_warp_one(img, flow[i], dep, tris, src))
    return torch.stack(frames)
