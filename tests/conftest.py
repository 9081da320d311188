"""Shared fixtures: handmade Kconfig trees for unit tests, real Debian trees for integration."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kbuild.source import KernelTree, KernelVersion

REPO = Path(__file__).resolve().parent.parent


def make_tree(root: Path, kconfig: str, files: dict[str, str] | None = None,
              version=(6, 1, 0)) -> KernelTree:
    """A tiny kernel-shaped tree: Makefile with a version, Kconfig, scripts/kconfig/."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Makefile").write_text(
        f"VERSION = {version[0]}\nPATCHLEVEL = {version[1]}\nSUBLEVEL = {version[2]}\nEXTRAVERSION =\n")
    (root / "scripts" / "kconfig").mkdir(parents=True, exist_ok=True)
    (root / "Kconfig").write_text(textwrap.dedent(kconfig))
    for name, text in (files or {}).items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return KernelTree(root, KernelVersion(*version))


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KBUILD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"
