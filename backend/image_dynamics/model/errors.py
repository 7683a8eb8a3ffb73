"""Exceptions of the predictor (importing this module does not import torch)."""

from __future__ import annotations

__all__ = ["SamplingCancelled"]


class SamplingCancelled(Exception):
    """``should_stop()`` returned True: sampling stopped before model call ``step`` of ``total``."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"sampling cancelled before step {step + 1} of {total}")
        self.step = step
        self.total = total
