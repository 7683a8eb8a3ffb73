"""A local backend started by the add-on: ``image-dynamics serve --bind tcp://127.0.0.1:0 ...``.

The process prints ``image-dynamics backend ready on ADDRESS`` once it answers; reader threads
collect its output (so pipes never fill) and catch that line. ``poll_ready()`` never blocks (for
UI timers), ``wait_ready()`` does (for scripts and tests). The backend is stopped when Blender
exits (``atexit``) and when the add-on is disabled. This module is bpy-free.
"""

from __future__ import annotations

import atexit
import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time

READY_RE = re.compile(r"image-dynamics backend ready on (\S+)")


class BackendStartError(RuntimeError):
    """The local backend could not be started or exited: ``code`` for ``core.errors``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def find_executable(path: str = "") -> str | None:
    """The ``image-dynamics`` executable: ``path`` if given (a file), else the one on PATH."""
    if path:
        path = os.path.expanduser(path)
        if os.path.isdir(path):  # a venv or its bin/ folder
            for cand in ("bin/image-dynamics", "Scripts/image-dynamics.exe", "image-dynamics",
                         "image-dynamics.exe"):
                full = os.path.join(path, cand)
                if os.path.isfile(full):
                    return full
            return None
        return path if os.path.isfile(path) else None
    return shutil.which("image-dynamics")


class LocalBackend:
    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.address: str | None = None
        self.command: list[str] = []
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def ready(self) -> bool:
        return self.running and self.address is not None

    def start(self, executable: str, *, model: str = "", tiny_seed: int | None = None, device: str = "auto",
              extra_args: list[str] | None = None, env: dict | None = None) -> None:
        """Launch the backend (returns at once; see ``poll_ready`` / ``wait_ready``)."""
        if self.running:
            return
        exe = find_executable(executable)
        if exe is None:
            where = executable or "PATH"
            raise BackendStartError("backend_start_failed",
                                    f"no image-dynamics executable found at {where}: set the path of the backend "
                                    "environment's image-dynamics in the add-on preferences")
        cmd = [exe, "serve", "--bind", "tcp://127.0.0.1:0", "--device", device or "auto"]
        if tiny_seed is not None:
            cmd += ["--tiny-model", str(int(tiny_seed))]
        elif model:
            cmd += ["--model", model]
        else:
            raise BackendStartError("backend_start_failed",
                                    "no model chosen: pick a model folder (or the tiny test model) in the preferences")
        cmd += list(extra_args or [])
        self.command = cmd
        self.address = None
        self.output.clear()
        flags = 0
        if sys.platform == "win32":
            flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                         text=True, bufsize=1, env=env, creationflags=flags)
        except OSError as exc:
            self.proc = None
            raise BackendStartError("backend_start_failed", f"{exe}: {exc}") from None
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)]
        for t in self._threads:
            t.start()

    def _read(self, stream, is_stdout: bool) -> None:
        try:
            for line in iter(stream.readline, ""):
                line = line.rstrip("\n")
                with self._lock:
                    self.output.append(line)
                    if is_stdout and self.address is None:
                        m = READY_RE.search(line)
                        if m:
                            self.address = m.group(1)
        except (OSError, ValueError):
            pass

    def last_output(self, lines: int = 3) -> str:
        with self._lock:
            tail = [ln for ln in self.output if ln.strip()][-lines:]
        return " / ".join(tail)

    def poll_ready(self) -> str | None:
        """The address once the backend is ready, None while it starts; raises if it exited."""
        if self.proc is None:
            return None
        if self.address is not None and self.proc.poll() is None:
            return self.address
        code = self.proc.poll()
        if code is not None:
            for t in self._threads:
                t.join(timeout=1.0)
            detail = self.last_output() or "no output"
            self.proc = None
            self.address = None
            raise BackendStartError("backend_exited", f"exit status {code}: {detail}")
        return None

    def wait_ready(self, timeout: float = 120.0) -> str:
        end = time.monotonic() + timeout
        while True:
            addr = self.poll_ready()
            if addr is not None:
                return addr
            if self.proc is None:
                raise BackendStartError("backend_start_failed", "the backend is not running")
            if time.monotonic() > end:
                self.stop()
                raise BackendStartError("backend_start_failed", f"it did not become ready within {timeout:g} s")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        self.address = None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        for stream in (proc.stdout, proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


LOCAL = LocalBackend()
atexit.register(LOCAL.stop)
