"""Real Debian kernel trees (linux-source-6.1 and -6.12), installed by `make setup`."""
from __future__ import annotations

import glob
import subprocess
from pathlib import Path

import pytest

from kbuild.core import source

TARBALLS = {"6.1": "/usr/src/linux-source-6.1.tar.xz", "6.12": "/usr/src/linux-source-6.12.tar.xz"}


@pytest.fixture(scope="session", params=sorted(TARBALLS))
def real_tree(request):
    return source.locate(TARBALLS[request.param])


@pytest.fixture(scope="session")
def tree61():
    return source.locate(TARBALLS["6.1"])


@pytest.fixture(scope="session")
def debian_config_61() -> Path:
    """/boot/config-* from Debian's current 6.1 kernel package (apt-get download + dpkg -x)."""
    cache = source.cache_root() / "debian-config"
    found = sorted(glob.glob(str(cache / "boot" / "config-6.1.*-amd64")))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        dep = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True,
                             text=True, check=True).stdout
        pkg = next(l.split(":", 1)[1].strip() for l in dep.splitlines()
                   if l.strip().startswith("Depends:") and "linux-image-6.1" in l)
        subprocess.run(["apt-get", "download", pkg], cwd=cache, check=True, capture_output=True)
        deb = sorted(cache.glob(f"{pkg}_*.deb"))[-1]
        subprocess.run(["dpkg", "-x", str(deb), str(cache)], check=True)
        deb.unlink()
        found = sorted(glob.glob(str(cache / "boot" / "config-6.1.*-amd64")))
    assert found, "Debian's linux-image package carried no /boot/config-*"
    return Path(found[-1])
