"""kdump-tools' kdump initrd, built by kdump-config on a first boot and cached for later runs.

kdump-config builds /var/lib/kdump/initrd.img-<release> with its own postinst.d hook inside the
booted guest (MODULES=dep needs the real root device), and records /etc/kdump/sysctl.conf as
latest_sysctls-<release>; when both are present at boot it loads without rebuilding. The pair
is kept under ~/.cache/kdump-pipeline/install-test/kdump-initrd/<key>/, keyed by everything the
image depends on: the root tarball, our image package, and the guest's hardware.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from kbuild.core import fs
from kbuild.core.hashing import digest, file_sha256
from kbuild.core.source import cache_root
from kbuild.installtest import disk

KDUMP_DIR = "/var/lib/kdump"


@dataclass(frozen=True)
class CachedInitrd:
    key: str
    folder: Path

    def names(self, release: str) -> tuple[str, str]:
        return f"initrd.img-{release}", f"latest_sysctls-{release}"

    def present(self, release: str) -> bool:
        return all((self.folder / n).is_file() for n in self.names(release))


def cache_for(root_sha256: str, image_deb: Path, hardware: dict) -> CachedInitrd:
    key = digest({"root": root_sha256, "image": file_sha256(image_deb), "hardware": hardware})[:16]
    return CachedInitrd(key, cache_root() / "install-test" / "kdump-initrd" / key)


def restore(c: CachedInitrd, root: Path, release: str) -> bool:
    """Put a cached pair into the root before the disk is made; False if there is none."""
    if not c.present(release):
        return False
    dest = root / KDUMP_DIR.lstrip("/")
    dest.mkdir(parents=True, exist_ok=True)
    for name in c.names(release):
        shutil.copyfile(c.folder / name, dest / name)
    return True


def save(c: CachedInitrd, image: Path, release: str, work: Path) -> bool:
    """Keep the pair the guest built; False if the guest did not build both."""
    work.mkdir(parents=True, exist_ok=True)
    got = [disk.fetch(image, f"{KDUMP_DIR}/{n}", work / n) for n in c.names(release)]
    if not all(got):
        return False
    with fs.atomic_path(c.folder) as tmp:
        tmp.mkdir(parents=True)
        for p in got:
            shutil.copyfile(p, tmp / p.name)
    return True
