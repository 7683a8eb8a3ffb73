"""The image plane as a regular vertex grid, and the spectral volume sampled at its vertices (bpy-free).

Conventions (the add-on's, written down once here):

* The plane lies in the object's local XY plane, facing +Z, centred on the origin: ``width`` along
  +X (the photo's left-to-right), ``height`` along +Y (the photo's bottom-to-top).
* Vertices form an ``nx`` x ``ny`` grid spanning the whole plane; vertex ``j * nx + i`` sits at
  normalised position (u, v) = (i / (nx - 1), j / (ny - 1)), row j = 0 at the *bottom*. Its UV is
  (u, v) (Blender images start at the bottom row too).
* A vertex at (u, v) looks at volume pixel (x, y) = (u W - 0.5, (1 - v) H - 0.5) of a W x H volume
  (pixel centres at integers, y down: row 0 is the top of the photo), clamped to the image, with
  bilinear interpolation. The plane's edge is the photo's edge.
* Units: volume displacements are pixels of the W x H volume grid; on the mesh they are Blender
  units of the object's local space: dx_local = dx_px * width / W, dy_local = -dy_px * height / H
  (minus: image rows go down, local Y goes up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "PlaneGrid",
    "grid_for_photo",
    "sample_bilinear",
    "vertex_bases",
    "pin_weights",
    "vertex_amplitude",
    "moving_mask",
    "basis_attribute_names",
    "MOVING_THRESHOLD_PX",
]

MOVING_THRESHOLD_PX = 1e-3  # peak motion (pixels) above which a vertex counts as moving


def basis_attribute_names(k: int) -> tuple[str, str]:
    """Mesh attribute names of mode k: (real part, imaginary part), FLOAT_VECTOR on points."""
    return f"id_re_{k:02d}", f"id_im_{k:02d}"


@dataclass(frozen=True)
class PlaneGrid:
    nx: int
    ny: int
    width: float
    height: float

    def __post_init__(self) -> None:
        if self.nx < 2 or self.ny < 2:
            raise ValueError(f"a plane grid needs at least 2 x 2 vertices, got {self.nx} x {self.ny}")
        if not (self.width > 0 and self.height > 0):
            raise ValueError(f"plane size must be positive, got {self.width} x {self.height}")

    @property
    def num_vertices(self) -> int:
        return self.nx * self.ny

    def vertex_uv(self) -> np.ndarray:
        """(N, 2) float64 normalised (u, v) of every vertex, row-major from the bottom row."""
        u = np.linspace(0.0, 1.0, self.nx)
        v = np.linspace(0.0, 1.0, self.ny)
        uu, vv = np.meshgrid(u, v)  # (ny, nx)
        return np.stack([uu.reshape(-1), vv.reshape(-1)], axis=1)

    def vertex_positions(self) -> np.ndarray:
        """(N, 3) float32 local rest positions."""
        uv = self.vertex_uv()
        out = np.zeros((uv.shape[0], 3), dtype=np.float64)
        out[:, 0] = (uv[:, 0] - 0.5) * self.width
        out[:, 1] = (uv[:, 1] - 0.5) * self.height
        return out.astype(np.float32)

    def faces(self) -> np.ndarray:
        """(F, 4) int32 quads, counter-clockwise seen from +Z (normals face +Z)."""
        i, j = np.meshgrid(np.arange(self.nx - 1), np.arange(self.ny - 1))
        a = (j * self.nx + i).reshape(-1)
        return np.stack([a, a + 1, a + 1 + self.nx, a + self.nx], axis=1).astype(np.int32)

    def pixel_coords(self, vol_width: int, vol_height: int) -> np.ndarray:
        """(N, 2) float64 volume pixel position (x right, y down) each vertex samples."""
        uv = self.vertex_uv()
        return np.stack([uv[:, 0] * vol_width - 0.5, (1.0 - uv[:, 1]) * vol_height - 0.5], axis=1)

    def pixel_scale(self, vol_width: int, vol_height: int) -> tuple[float, float]:
        """Local units per volume pixel along x and y (y negative: rows go down)."""
        return self.width / vol_width, -self.height / vol_height

    def local_to_pixel(self, x: float, y: float, vol_width: int, vol_height: int) -> tuple[float, float]:
        """Volume pixel (x right, y down) under a local-space point of the plane."""
        u = x / self.width + 0.5
        v = y / self.height + 0.5
        return u * vol_width - 0.5, (1.0 - v) * vol_height - 0.5

    def local_dir_to_pixel(self, dx: float, dy: float, vol_width: int, vol_height: int) -> tuple[float, float]:
        """A local-space direction (in the plane) as a pixel-space direction (not normalised)."""
        sx, sy = self.pixel_scale(vol_width, vol_height)
        return dx / sx, dy / sy


def grid_for_photo(photo_width: int, photo_height: int, resolution: int, height: float = 2.0) -> PlaneGrid:
    """The grid for a photo: ``resolution`` vertices along its longer side, square-ish cells,
    plane ``height`` Blender units tall and as wide as the photo's aspect ratio says."""
    if photo_width < 1 or photo_height < 1:
        raise ValueError(f"photo size must be positive, got {photo_width} x {photo_height}")
    resolution = max(2, int(resolution))
    aspect = photo_width / photo_height
    if aspect >= 1.0:
        nx = resolution
        ny = max(2, int(round((nx - 1) / aspect)) + 1)
    else:
        ny = resolution
        nx = max(2, int(round((ny - 1) * aspect)) + 1)
    return PlaneGrid(nx, ny, float(height) * aspect, float(height))


def sample_bilinear(S: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """S (K, C, H, W) at pixel positions (px, py) (each (N,)), clamped, bilinear: (K, C, N)."""
    S = np.asarray(S)
    H, W = S.shape[-2:]
    x = np.clip(np.asarray(px, dtype=np.float64), 0.0, W - 1.0)
    y = np.clip(np.asarray(py, dtype=np.float64), 0.0, H - 1.0)
    x0 = np.floor(x).astype(np.intp)
    y0 = np.floor(y).astype(np.intp)
    x1 = np.minimum(x0 + 1, W - 1)
    y1 = np.minimum(y0 + 1, H - 1)
    fx = (x - x0)
    fy = (y - y0)
    work = S.astype(np.complex128) if np.iscomplexobj(S) else S.astype(np.float64)
    out = (
        work[..., y0, x0] * ((1 - fx) * (1 - fy))
        + work[..., y0, x1] * (fx * (1 - fy))
        + work[..., y1, x0] * ((1 - fx) * fy)
        + work[..., y1, x1] * (fx * fy)
    )
    return out.astype(np.complex64 if np.iscomplexobj(S) else np.float32)


def vertex_bases(S: np.ndarray, grid: PlaneGrid) -> tuple[np.ndarray, np.ndarray]:
    """Modal bases at the vertices in local units: (re, im), each (K, N, 3) float32.

    ``re[k, n] = (Re S_kx, Re S_ky, 0)`` scaled by ``grid.pixel_scale`` (y flipped), same for im,
    so the local displacement is ``sum_k re_k Re(q_k) - im_k Im(q_k)``.
    """
    S = np.asarray(S)
    if S.ndim != 4 or S.shape[1] != 2:
        raise ValueError(f"spectral volume must have shape (K, 2, H, W), got {S.shape}")
    K, _, H, W = S.shape
    pc = grid.pixel_coords(W, H)
    samples = sample_bilinear(S, pc[:, 0], pc[:, 1]).astype(np.complex128)  # (K, 2, N)
    sx, sy = grid.pixel_scale(W, H)
    re = np.zeros((K, grid.num_vertices, 3), dtype=np.float32)
    im = np.zeros((K, grid.num_vertices, 3), dtype=np.float32)
    re[:, :, 0] = samples[:, 0].real * sx
    re[:, :, 1] = samples[:, 1].real * sy
    im[:, :, 0] = samples[:, 0].imag * sx
    im[:, :, 1] = samples[:, 1].imag * sy
    return re, im


def _pin_smoothstep(u: np.ndarray, v: np.ndarray, width: float, height: float, border: float) -> np.ndarray:
    dx = np.minimum(u, 1.0 - u) * width
    dy = np.minimum(v, 1.0 - v) * height
    s = np.clip(np.minimum(dx, dy) / (float(border) * min(width, height)), 0.0, 1.0)
    return (s * s * (3.0 - 2.0 * s)).astype(np.float32)


def pin_weights(grid: PlaneGrid, border: float) -> np.ndarray:
    """(N,) float32 motion weight: 0 on the plane's outline, rising smoothly (smoothstep) to 1 at
    ``border`` x (the plane's shorter side) inside it. ``border <= 0``: 1 everywhere."""
    if border <= 0:
        return np.ones(grid.num_vertices, dtype=np.float32)
    uv = grid.vertex_uv()
    return _pin_smoothstep(uv[:, 0], uv[:, 1], grid.width, grid.height, border)


def pin_weight_image(grid: PlaneGrid, vol_width: int, vol_height: int, border: float) -> np.ndarray:
    """(H, W) float32: ``pin_weights``' rule at the centre of every volume pixel (row 0 = top), so a
    volume multiplied by it moves like the pinned mesh (frames rendered by the backend)."""
    if border <= 0:
        return np.ones((vol_height, vol_width), dtype=np.float32)
    u = (np.arange(vol_width) + 0.5) / vol_width  # the inverse of pixel_coords: x = u W - 0.5
    v = 1.0 - (np.arange(vol_height) + 0.5) / vol_height
    uu, vv = np.meshgrid(u, v)
    return _pin_smoothstep(uu, vv, grid.width, grid.height, border)


def vertex_amplitude(S: np.ndarray, grid: PlaneGrid, skip_dc: bool = False) -> np.ndarray:
    """(N,) float32 upper bound of the motion at each vertex in volume pixels: sum_k c_k |S_k|."""
    S = np.asarray(S)
    K, _, H, W = S.shape
    pc = grid.pixel_coords(W, H)
    samples = sample_bilinear(S, pc[:, 0], pc[:, 1])  # (K, 2, N)
    mag = np.sqrt((np.abs(samples.astype(np.complex128)) ** 2).sum(axis=1))  # (K, N)
    c = np.full((K, 1), 2.0)
    c[0] = 0.0 if skip_dc else 1.0
    return (c * mag).sum(axis=0).astype(np.float32)


def moving_mask(amplitude: np.ndarray, threshold: float = MOVING_THRESHOLD_PX) -> np.ndarray:
    """(N,) float32: 1 where a vertex can move more than ``threshold`` pixels, else 0."""
    return (np.asarray(amplitude) > threshold).astype(np.float32)
