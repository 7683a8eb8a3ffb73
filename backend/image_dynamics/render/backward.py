"""Backward-warp baseline: frame t samples the photo at p - D_t(p).

D_t is defined on frame 0's pixels (where a point *came from*), so reading it at the target pixel
is an approximation that is exact only for smooth motion; at motion boundaries it duplicates or
drags the wrong side. That is why it is a baseline. Bilinear sampling, border pixels repeated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["backward_warp"]


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """image (1 or B, C, H, W), flow (B, 2, H, W) pixels -> (B, C, H, W)."""
    B, _, H, W = flow.shape
    dev = flow.device
    gy, gx = torch.meshgrid(torch.arange(H, device=dev, dtype=torch.float32),
                            torch.arange(W, device=dev, dtype=torch.float32), indexing="ij")
    sx = gx[None] - flow[:, 0].float()
    sy = gy[None] - flow[:, 1].float()
    grid = torch.stack([sx / max(W - 1, 1) * 2 - 1, sy / max(H - 1, 1) * 2 - 1], -1)
    grid = torch.nan_to_num(grid, nan=0.0)
    if image.shape[0] == 1 and B > 1:
        image = image.expand(B, -1, -1, -1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True)
