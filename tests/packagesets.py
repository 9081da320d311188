"""The six package names one `invoke package` run must publish for a manifest, per architecture."""
import os
import shutil
import tempfile
from pathlib import Path

from kbuild.core import arch
from kbuild.core.manifest import Manifest


def expected_names(data: dict) -> list[str]:
    """DEB and RPM sets (image, debug, config) for the manifest `data`, in sorted order."""
    a = arch.get(data["toolchain"]["arch"])
    rel, debv = data["release"]["release"], data["release"]["deb_version"]
    ver, rrel = data["release"]["rpm_version"]["version"], data["release"]["rpm_version"]["release"]
    return sorted([
        f"linux-image-{rel}_{debv}_{a.deb_arch}.deb", f"linux-image-{rel}-dbg_{debv}_{a.deb_arch}.deb",
        f"kdump-pipeline-config_{debv}_all.deb",
        f"kernel-kdump-pipeline-{ver}-{rrel}.{a.rpm_arch}.rpm",
        f"kernel-kdump-pipeline-debuginfo-{ver}-{rrel}.{a.rpm_arch}.rpm",
        f"kdump-pipeline-config-{ver}-{rrel}.noarch.rpm"])


def assert_reproducible(package_into, tmp_path) -> None:
    """`package_into(folder)` twice, the second run under another umask and TMPDIR: every
    package and boot file must come out byte-identical."""
    first = package_into(tmp_path / "one")
    old_umask, old_tmp = os.umask(0o027), tempfile.tempdir
    tempfile.tempdir = str(tmp_path / "elsewhere")
    os.makedirs(tempfile.tempdir)
    try:
        second = package_into(tmp_path / "two")
    finally:
        os.umask(old_umask)
        tempfile.tempdir = old_tmp
    assert len(first.packages) == len(second.packages) == 6
    for a, b in zip(first.packages, second.packages):
        assert a.name == b.name and a.read_bytes() == b.read_bytes(), a.name
    for a, b in zip(first.boot, second.boot):
        assert a.read_bytes() == b.read_bytes()


def fresh_dist(manifest: Path, where: Path) -> Manifest:
    """A new dist/<release>/ holding only a copy of `manifest` (the artifacts stay where they are)."""
    out = where / "dist" / manifest.parent.name / "manifest.json"
    out.parent.mkdir(parents=True)
    shutil.copyfile(manifest, out)
    return Manifest.read(out)
