"""Softmax splatting (Niklaus & Liu 2020), written from the formula in plain torch.

Forward warping: source pixel p (integer coordinates, x right, y down) moves to p + D(p) and
spreads over the four integer pixels q around that point with bilinear weights b(p, q). With an
importance Z(p) per source pixel, the splatted value at q is the softmax-weighted mean

    out(q) = sum_p exp(Z(p)) b(p, q) x(p) / sum_p exp(Z(p)) b(p, q)

so where several sources land on one pixel (a collision) the one with the larger Z wins smoothly;
with equal Z it is plain normalised bilinear splatting. We use Z = beta * mean_t |D_t(p)|
("larger motion is nearer", the paper's choice; beta learnt by the synthesis network).

Numerics: the softmax is unchanged by subtracting a constant per *target* pixel, so we subtract
m(q) = max of Z over the sources reaching q (one ``scatter_reduce`` amax pass). This is exact and
cannot underflow, unlike subtracting one global max, which would zero every weight more than ~87
below it (float32) and open false holes. Contributions that land outside the image, or come from
non-finite motion, are dropped. Pixels nothing reaches get 0; ``coverage`` (the plain sum of the
bilinear weights, 0 at holes, ~1 where the motion is smooth, > 1 at collisions) says where.

Everything is vectorised with ``index_add_`` / ``scatter_reduce_`` over flat indices, so the same
code runs on CPU and CUDA (and is differentiable w.r.t. x, Z and D).
"""

from __future__ import annotations

import torch

__all__ = ["softmax_splat", "motion_importance"]


def motion_importance(displacements: torch.Tensor) -> torch.Tensor:
    """Mean over frames of |D_t(p)| in pixels: (N, 2, H, W) -> (1, 1, H, W)."""
    mag = torch.sqrt((displacements.float() ** 2).sum(dim=1, keepdim=True))
    return mag.mean(dim=0, keepdim=True)


def _corners(flow: torch.Tensor):
    """Flat target indices (4, B*H*W) and bilinear weights (4, B*H*W) of every source pixel."""
    B, _, H, W = flow.shape
    dev = flow.device
    gy, gx = torch.meshgrid(torch.arange(H, device=dev, dtype=flow.dtype),
                            torch.arange(W, device=dev, dtype=flow.dtype), indexing="ij")
    tx = (gx + flow[:, 0]).reshape(-1)
    ty = (gy + flow[:, 1]).reshape(-1)
    finite = torch.isfinite(tx) & torch.isfinite(ty)
    tx = torch.where(finite, tx, torch.full_like(tx, -10.0))
    ty = torch.where(finite, ty, torch.full_like(ty, -10.0))
    x0 = torch.floor(tx)
    y0 = torch.floor(ty)
    ax = tx - x0
    ay = ty - y0
    batch = torch.arange(B, device=dev).repeat_interleave(H * W)
    idx, wts = [], []
    for dy, dx, w in ((0, 0, (1 - ax) * (1 - ay)), (0, 1, ax * (1 - ay)), (1, 0, (1 - ax) * ay), (1, 1, ax * ay)):
        xi = (x0 + dx).long()
        yi = (y0 + dy).long()
        inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H) & finite
        # Outside targets get weight 0 and a harmless in-range index: static shapes, no boolean
        # indexing, so CPU and CUDA take the same path.
        flat = batch * (H * W) + yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1)
        idx.append(flat)
        wts.append(torch.where(inside, w, torch.zeros_like(w)))
    return torch.stack(idx), torch.stack(wts)


def softmax_splat(x: torch.Tensor, flow: torch.Tensor, z: torch.Tensor | None = None,
                  eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward-warp x (B, C, H, W) by flow (B, 2, H, W) pixels with importance z (B, 1, H, W).

    Returns (out (B, C, H, W), coverage (B, 1, H, W)). z=None means equal importance (average
    splatting). flow and z are broadcast over the batch when their batch is 1.
    """
    B, C, H, W = x.shape
    if flow.shape[0] == 1 and B > 1:
        flow = flow.expand(B, -1, -1, -1)
    if flow.shape != (B, 2, H, W):
        raise ValueError(f"flow must have shape {(B, 2, H, W)}, got {tuple(flow.shape)}")
    flow = flow.to(x.dtype)
    idx, bil = _corners(flow)  # (4, N)
    n = B * H * W
    rows = x.permute(0, 2, 3, 1).reshape(n, C)  # channels last: one row per source pixel
    if z is None:
        ez = torch.ones(4, n, device=x.device, dtype=x.dtype)
    else:
        if z.shape[0] == 1 and B > 1:
            z = z.expand(B, -1, -1, -1)
        zf = z.to(x.dtype).reshape(1, n).expand(4, n)
        # Per-target max of Z over the sources that reach it (with nonzero weight).
        reach = bil > 0
        neg = torch.full_like(zf, -torch.finfo(x.dtype).max)
        zmax = torch.full((n,), -torch.finfo(x.dtype).max, device=x.device, dtype=x.dtype)
        zmax.scatter_reduce_(0, idx.reshape(-1), torch.where(reach, zf, neg).detach().reshape(-1), reduce="amax")
        shift = zmax.gather(0, idx.reshape(-1)).reshape(4, n)
        ez = torch.exp(torch.where(reach, zf - shift, torch.zeros_like(zf)))
    w = (ez * bil).reshape(-1, 1)  # (4N, 1)
    vals = torch.cat([rows.repeat(4, 1) * w, w, bil.reshape(-1, 1)], dim=1)  # (4N, C + 2)
    acc = torch.zeros(n, C + 2, device=x.device, dtype=x.dtype)
    acc.index_add_(0, idx.reshape(-1), vals)
    out = acc[:, :C] / acc[:, C:C + 1].clamp_min(eps)
    out = out.reshape(B, H, W, C).permute(0, 3, 1, 2)
    coverage = acc[:, C + 1].reshape(B, 1, H, W)
    return out, coverage
