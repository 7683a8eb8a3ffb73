"""Which torch device a ``--device`` value means: one rule for predict, serve, animate and train.

``auto`` is CUDA when torch sees a GPU, else the CPU. An explicit ``cuda``/``cuda:N`` without a GPU
is an error rather than a quiet fall-back, so a user who asked for the GPU learns that it is not used.
"""

from __future__ import annotations

from .errors import UserError


def resolve_device(device: str | None) -> str:
    """``auto``/``cpu``/``mps``/``cuda``/``cuda:N`` -> the device string to use, or a ``UserError``."""
    import torch

    dev = (device or "auto").strip().lower()
    if dev == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda"):
        index = dev[len("cuda"):]
        if index and not (index.startswith(":") and index[1:].isdigit()):
            raise UserError(f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N")
        if not torch.cuda.is_available():
            raise UserError(f"--device {device} was asked for, but this torch build sees no CUDA GPU",
                            "pass --device cpu (or auto), or install a CUDA build of torch")
        return dev
    if dev not in ("cpu", "mps"):
        raise UserError(f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N")
    return dev
