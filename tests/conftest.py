"""Shared fixtures: handmade Kconfig trees for unit tests, real Debian trees for integration."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import settings

from kbuild.core.hashing import file_sha256
from kbuild.core.source import KernelTree, KernelVersion

REPO = Path(__file__).resolve().parent.parent
# Property tests judge results, never speed: a loaded 2-core CI box must not turn into failures.
settings.register_profile("kbuild", deadline=None)
settings.load_profile("kbuild")


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


FAKE_EPOCH = 1794824260


def _fake_manifest(root: Path, release: str = "6.1.192-kdump", **release_fields) -> Path:
    """A manifest in <root>/dist/<release>/ whose artifacts are small files under <root>/art."""
    art = root / "art"
    art.mkdir(parents=True, exist_ok=True)
    files = {"bzImage": b"bz", "vmlinux": b"\x7fELF", "System.map": b"map", "config": b"CONFIG_X=y\n",
             "modules/kernel/drivers/block/loop.ko": b"ko", "modules/modules.dep": b"dep"}
    artifacts = []
    for name, data in files.items():
        p = art / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        artifacts.append({"name": name, "path": str(p), "sha256": file_sha256(p), "size": len(data)})
    data = {"schema": 1, "status": "success",
            "inputs": "0" * 64, "tree": {"name": "linux-6.1.192", "path": None, "tarball": None},
            "release": {"release": release, "localversion": "kdump", "build": None, "cpu_limit_arg": "nr_cpus=1",
                        "deb_version": release, "rpm_version": {"version": "6.1.192", "release": "kdump"},
                        **release_fields},
            "toolchain": {"arch": "x86_64"},
            "build": {"dir": str(root / "build"), "build_id": "ab" * 20,
                      "env": {"SOURCE_DATE_EPOCH": str(FAKE_EPOCH)}},
            "artifacts": artifacts}
    path = root / "dist" / release / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def fake_manifest():
    """Write a small but complete build manifest: fake_manifest(root, release, **release_fields)."""
    return _fake_manifest


@pytest.fixture(scope="session")
def default_build():
    """The default kernel (Debian's linux-source-6.1, minimal profile), built once per session.

    Any test that needs a real build asks for this; none waits for another test module's output.
    The build folder and ccache persist, so with nothing changed this is the no-op shortcut
    (well under a second); a first build on a fresh machine takes minutes.
    """
    from kbuild.build.stage import build_kernel
    from kbuild.core.settings import BuildSettings, ConfigureSettings
    return build_kernel(BuildSettings.from_flags(ConfigureSettings.from_flags())).manifest


@pytest.fixture(scope="session")
def arm64_build():
    """The arm64 kernel (Debian's linux-source-6.1, minimal profile, cross-compiled with
    aarch64-linux-gnu-gcc), built once per session like `default_build`; the arm64 crash test uses it.

    Its folder is build/linux-<ver>-minimal-arm64 and its release <ver>-arm64.kdump, apart from the
    x86_64 build's; with ccache warm and nothing changed this is the no-op shortcut.
    """
    from kbuild.build.stage import build_kernel
    from kbuild.core.settings import BuildSettings, ConfigureSettings
    return build_kernel(BuildSettings.from_flags(ConfigureSettings.from_flags(arch="arm64"))).manifest
