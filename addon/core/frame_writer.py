"""Write rendered frames as numbered PNG files on a worker thread (bpy-free).

Encoding hundreds of frames takes seconds; on Blender's UI thread that freezes it. ``png`` is
pure Python/numpy and zlib releases the GIL, so a plain thread can do it while the poll step only
reads ``progress`` / ``done``. ``stop()`` makes the thread end between files and removes the
folder, so a cancelled or failed job leaves no partial files behind.
"""

from __future__ import annotations

import os
import shutil
import threading
from typing import Callable

import numpy as np

from . import png

__all__ = ["FrameWriter"]


class FrameWriter:
    """``frames`` (N, H, W, 3) uint8 -> ``folder``/``pattern.format(i + 1)`` for i < N.

    ``folder`` must exist and belong to this writer: it is removed if the writer is stopped or
    fails. After ``done``: ``error`` is None and ``paths`` lists every file, or ``error`` is the
    exception and the folder is gone.
    """

    def __init__(self, frames: np.ndarray, folder: str, pattern: str,
                 write: Callable[[str, np.ndarray], None] | None = None) -> None:
        self.frames = frames
        self.folder = folder
        self.pattern = pattern
        self.total = len(frames)
        self.written = 0
        self.paths: list[str] = []
        self.error: BaseException | None = None
        self._write = write or png.write_png  # looked up now, not at import: tests may replace it
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()  # orders stop() against the thread's end (who removes the folder)
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="image-dynamics-frame-writer", daemon=True)

    def start(self) -> "FrameWriter":
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        """True once the thread ended and, if it failed or was stopped, removed the folder."""
        return self._done.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def progress(self) -> float:
        return self.written / self.total if self.total else 1.0

    def _run(self) -> None:
        try:
            for i in range(self.total):
                if self._stop.is_set():
                    break
                path = os.path.join(self.folder, self.pattern.format(i + 1))
                self._write(path, self.frames[i])
                self.paths.append(path)
                self.written = i + 1
        except BaseException as exc:  # reported to the poll step, which turns it into a message
            self.error = exc
        with self._lock:
            self._ended = True
            remove = self._stop.is_set() or self.error is not None
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)
        self._done.set()

    def stop(self, wait: float = 0.0) -> bool:
        """Stop between files and remove the folder (also after a successful end: the job that
        wanted the files was dropped). Waits up to ``wait`` seconds; True if the thread ended."""
        with self._lock:
            self._stop.set()
            ended = self._ended
        if ended or not self._thread.is_alive() and not self._thread.ident:
            # the thread ended (or never started) before it could see the flag: clean up here
            shutil.rmtree(self.folder, ignore_errors=True)
            self._done.set()
        if wait > 0 and self._thread.ident is not None:
            self._thread.join(wait)
        return self._done.is_set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return self._done.is_set()
