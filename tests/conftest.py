"""Shared test set-up: keep every cache the code under test might write inside a temp folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _private_caches(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("caches")
    os.environ["XDG_CACHE_HOME"] = str(root / "xdg-cache")
    os.environ["BLENDER_USER_RESOURCES"] = str(root / "blender-user")
    yield


def cli_path() -> list[str]:
    """The installed console script when present, else the module (same code)."""
    exe = Path(sys.executable).with_name("image-dynamics")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "image_dynamics.cli"]


@pytest.fixture
def run_cli():
    """Run ``image-dynamics ARGS`` as a real subprocess; returns CompletedProcess (text)."""

    def _run(*args: str, timeout: float = 300, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            cli_path() + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd
        )

    return _run


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return REPO / "backend" / "image_dynamics" / "assets" / "photos"
