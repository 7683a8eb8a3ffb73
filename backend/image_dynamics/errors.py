"""Errors a user can act on. The CLI prints them as one sentence plus a hint, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment: the message says what is wrong, the hint what to do about it."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class RejectedClip(UserError):
    """A video is readable but unfit for training data (camera motion, no motion)."""

    exit_code = 3
