"""A local backend started by the add-on: ``image-dynamics serve --bind tcp://127.0.0.1:0 ...``.

The process prints ``image-dynamics backend ready on ADDRESS`` once it answers; reader threads
collect its output (so pipes never fill) and catch that line. ``poll_ready()`` never blocks (for
UI timers), ``wait_ready()`` does (for scripts and tests only). Why it failed to start or exited
stays in ``last_error`` (with the tail of its stderr) until the next start, for the UI to show.
``stop_soon()`` returns at once and ``reap()`` (a timer) finishes the job; ``stop()`` blocks (for
scripts, ``atexit`` and disabling the add-on). This module is bpy-free.
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
        self.errors: collections.deque[str] = collections.deque(maxlen=50)  # stderr only
        self.last_error: BackendStartError | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # (process, its reader threads, kill after this monotonic time): told to stop, not yet gone
        self._stopping: list[tuple[subprocess.Popen, list[threading.Thread], float]] = []

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def ready(self) -> bool:
        return self.running and self.address is not None

    @property
    def stopping(self) -> bool:
        """True while a stopped process has not exited yet (``reap`` finishes it)."""
        return bool(self._stopping)

    def start(self, executable: str, *, model: str = "", tiny_seed: int | None = None, device: str = "auto",
              extra_args: list[str] | None = None, env: dict | None = None) -> None:
        """Launch the backend (returns at once; see ``poll_ready`` / ``wait_ready``)."""
        if self.running:
            return
        if self.proc is not None:  # exited but nobody noticed yet: let it go quietly
            self._forget_exited()
        self.last_error = None
        try:
            self._launch(executable, model, tiny_seed, device, extra_args, env)
        except BackendStartError as exc:
            self.last_error = exc
            raise

    def _launch(self, executable: str, model: str, tiny_seed: int | None, device: str,
                extra_args: list[str] | None, env: dict | None) -> None:
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
        self.errors.clear()
        flags = 0
        if sys.platform == "win32":
            flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                         text=True, bufsize=1, env=env, creationflags=flags)
        except OSError as exc:
            self.proc = None
            raise BackendStartError("backend_start_failed", f"{exe}: {exc}") from None
        proc = self.proc
        self._threads = [threading.Thread(target=self._read, args=(proc, proc.stdout, True), daemon=True,
                                          name="image-dynamics-backend-stdout"),
                         threading.Thread(target=self._read, args=(proc, proc.stderr, False), daemon=True,
                                          name="image-dynamics-backend-stderr")]
        for t in self._threads:
            t.start()

    def _read(self, proc: subprocess.Popen, stream, is_stdout: bool) -> None:
        try:
            for line in iter(stream.readline, ""):
                line = line.rstrip("\n")
                with self._lock:
                    if self.proc is not proc:  # a stopped one's last words: not the current backend's
                        continue
                    self.output.append(line)
                    if not is_stdout:
                        self.errors.append(line)
                    if is_stdout and self.address is None:
                        m = READY_RE.search(line)
                        if m:
                            self.address = m.group(1)
        except (OSError, ValueError):
            pass
        finally:
            # Closed here, at EOF: closing it from another thread would wait for this readline.
            _close(stream)

    def last_output(self, lines: int = 3) -> str:
        with self._lock:
            tail = [ln for ln in self.output if ln.strip()][-lines:]
        return " / ".join(tail)

    def last_errors(self, lines: int = 4) -> str:
        """The tail of the backend's stderr (where it says why it failed), else of all its output."""
        with self._lock:
            tail = [ln.strip() for ln in self.errors if ln.strip()][-lines:]
        return " / ".join(tail) if tail else self.last_output(lines)

    def _forget_exited(self) -> BackendStartError:
        """The process exited: record why (``last_error``) and forget it."""
        proc = self.proc
        code = proc.poll() if proc is not None else None
        for t in self._threads:
            t.join(timeout=0.1)  # its pipes are closed: the readers are at their last lines
        detail = self.last_errors() or "no output"
        self.proc = None
        self.address = None
        self._threads = []
        self.last_error = BackendStartError("backend_exited", f"exit status {code}: {detail}")
        return self.last_error

    def poll_ready(self) -> str | None:
        """The address once the backend is ready, None while it starts (or when there is none);
        raises ``BackendStartError`` (once) when it has exited. Never blocks."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            raise self._forget_exited()
        return self.address

    def wait_ready(self, timeout: float = 120.0) -> str:
        """Block until ready (scripts and tests only: Blender's UI must never wait here). On a
        timeout the backend keeps starting; ``stop()`` it if it is no longer wanted."""
        end = time.monotonic() + timeout
        while True:
            addr = self.poll_ready()
            if addr is not None:
                return addr
            if self.proc is None:
                raise BackendStartError("backend_start_failed", "the backend is not running")
            if time.monotonic() > end:
                raise BackendStartError("backend_start_failed", f"it was not ready within {timeout:g} s (it is still "
                                                                "starting)")
            time.sleep(0.05)

    def stop_soon(self, grace: float = 5.0) -> None:
        """Ask the backend to stop (SIGTERM) and return at once; ``reap()`` closes it once it
        exits, or kills it after ``grace`` seconds."""
        proc, self.proc = self.proc, None
        self.address = None
        threads, self._threads = self._threads, []
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.terminate()
            except OSError:
                pass
        self._stopping.append((proc, threads, time.monotonic() + grace))
        self.reap()

    def reap(self) -> bool:
        """Finish stopping (never blocks): close the exited ones, kill the overdue ones. True while
        some are still stopping."""
        now = time.monotonic()
        left = []
        for proc, threads, deadline in self._stopping:
            if proc.poll() is not None:
                continue  # its reader threads close the pipes at EOF
            if now > deadline:
                try:
                    proc.kill()
                except OSError:
                    pass
            left.append((proc, threads, deadline))
        self._stopping = left
        return bool(left)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the backend (and any still stopping) and wait: up to ``timeout`` seconds after
        SIGTERM, then SIGKILL. Blocks: for scripts, ``atexit`` and disabling the add-on."""
        self.stop_soon(grace=timeout)
        end = time.monotonic() + timeout
        for proc, threads, _ in list(self._stopping):
            try:
                proc.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    pass
            for t in threads:
                t.join(timeout=0.5)
        self.reap()


def _close(stream) -> None:
    try:
        if stream is not None:
            stream.close()
    except OSError:
        pass


LOCAL = LocalBackend()
atexit.register(LOCAL.stop)
