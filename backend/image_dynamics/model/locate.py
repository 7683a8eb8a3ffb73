"""Where the motion model is: ``--model DIR``, ``$IMAGE_DYNAMICS_MODEL`` or ``models/default``.

One rule for every command and the backend service. Kept free of torch so locating a model costs
nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError

# The files of a saved predictor (MotionPredictor.save_pretrained).
CONFIG_NAME, WEIGHTS_NAME, SCALES_NAME = "config.json", "model.safetensors", "scales.json"


def default_model_dir() -> Path:
    """``$IMAGE_DYNAMICS_MODEL``, else ``models/default`` of the package or of the repository.

    The package lives at ``<repo>/backend/image_dynamics``; an installed copy may also carry
    ``image_dynamics/models/default``. The first existing candidate wins; if none exists the
    repository path is returned (and the caller says that no model is installed there).
    """
    env = os.environ.get("IMAGE_DYNAMICS_MODEL")
    if env:
        return Path(env).expanduser()
    pkg = Path(__file__).resolve().parents[1]  # image_dynamics/
    candidates = [pkg / "models" / "default", pkg.parents[1] / "models" / "default", Path.cwd() / "models" / "default"]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[1]


def resolve_model_dir(arg: str | None) -> Path:
    """The model folder to use, or a ``UserError`` saying why there is none."""
    folder = Path(arg).expanduser() if arg else default_model_dir()
    if not folder.is_dir():
        if arg:
            raise UserError(f"no model folder at {folder}", "pass --model with a folder written by the training scripts")
        raise UserError(
            f"no default model is installed (looked for {folder})",
            "train one with `image-dynamics train` and save it to models/default "
            "(or set IMAGE_DYNAMICS_MODEL / pass --model DIR)",
        )
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME, SCALES_NAME) if not (folder / n).is_file()]
    if missing:
        raise UserError(f"{folder} is not a saved motion predictor ({', '.join(missing)} missing)",
                        "pass --model with a folder written by save_pretrained / the training scripts")
    return folder
