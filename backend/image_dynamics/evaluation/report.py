"""What the evaluate commands share: where the scored data lives by default, and strict JSON reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

_REPO = Path(__file__).resolve().parents[3]


def default_dataset() -> str:
    """The repository's ``data/synth`` (``image-dynamics synth --dataset``), else that relative path."""
    root = _REPO / "data" / "synth"
    return str(root) if root.is_dir() else "data/synth"


def strict_json(x):
    """NaN / inf -> None and numpy scalars -> Python, so the file is strict JSON."""
    if isinstance(x, dict):
        return {str(k): strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_json(path: str | Path, report: dict) -> None:
    """Write ``report`` as indented strict JSON (no NaN, which most JSON readers reject)."""
    Path(path).write_text(json.dumps(strict_json(report), indent=2, allow_nan=False), encoding="utf-8")
