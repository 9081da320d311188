"""The packaging stage: a verified build (dist/<release>/manifest.json) to DEB and RPM sets.

Everything is built in a scratch folder, checked there (lintian, rpmlint, shellcheck, layout,
build-id), and only then renamed into dist/<release>/, so dist never holds a half-written
or unchecked package. Metadata is pinned (SOURCE_DATE_EPOCH from the build, root ownership,
fixed modes and mtimes), so two runs give byte-identical files. Mechanism: docs/packaging.md.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kbuild.core import arch as archmod
from kbuild.core import fs, lock, tools
from kbuild.core.errors import BadInput
from kbuild.core.manifest import Manifest
from kbuild.package import bootcfg, deb, kdumpcfg, rpm, sizing
from kbuild.package.payload import Payload

FORMATS = ("deb", "rpm")


@dataclass(frozen=True)
class PackageResult:
    """What `package` wrote into dist/<release>/ and what it checked."""

    release: str
    dist: Path
    packages: tuple[Path, ...]
    boot: tuple[Path, ...]
    checks: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    seconds: float = 0.0

    def lines(self) -> str:
        out = [f"warning: {w}" for w in self.warnings]
        out += [f"check  {c}" for c in self.checks]
        out += [f"wrote  {p}" for p in (*self.packages, *self.boot)]
        return "\n".join(out)


def parse_formats(text: str | None) -> set[str]:
    """`deb,rpm` (default both) -> {"deb", "rpm"}; anything else is exit 2."""
    names = {f.strip() for f in (text or ",".join(FORMATS)).split(",") if f.strip()}
    bad = sorted(names - set(FORMATS))
    if bad or not names:
        raise BadInput(f"--formats {text!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    return names


def package(manifest: Manifest, formats: set[str] | None = None,
            kdump: kdumpcfg.KdumpSettings | None = None, *, checks: bool = True,
            boot_config: Path | None = None, wait: bool = True) -> PackageResult:
    """Build, check and publish the DEB and/or RPM set for the build `manifest` records.
    One run at a time per dist/<release>/ (`wait=False`: refuse at once if another holds it)."""
    formats = set(formats or FORMATS)
    if not formats or formats - set(FORMATS):
        raise BadInput(f"formats {sorted(formats)}: choose from {', '.join(FORMATS)}")
    tools.require("package", arch=manifest.arch if manifest.arch in archmod.table() else archmod.DEFAULT)
    with lock.exclusive(manifest.dist, "package", wait):
        return _package(manifest, formats, kdump, checks, boot_config)


def _package(manifest: Manifest, formats: set[str], kdump: kdumpcfg.KdumpSettings | None, checks: bool,
             boot_config: Path | None) -> PackageResult:
    started = time.monotonic()
    payload = Payload.from_manifest(manifest)
    kdump, chosen, floor = sizing.choose(kdump or kdumpcfg.load(), manifest)
    lint = kdumpcfg.check(kdump, payload.cpu_limit_arg, formats, floor)
    builders = [m for name, m in (("deb", deb), ("rpm", rpm)) if name in formats]
    work = Path(tempfile.mkdtemp(prefix=f"kdump-package-{payload.release}-"))
    try:
        entries = bootcfg.BootEntries.for_release(payload.release, kdump.crashkernel, boot_config,
                                                  archmod.get(manifest.arch))
        boot_files = bootcfg.write(entries, work / "boot")
        done = [chosen, f"boot entries: {bootcfg.validate(entries, work / 'boot-check')}; "
                        f"{bootcfg.check_efi_stub(payload.image, archmod.get(manifest.arch))}"]

        def build_and_check(m) -> tuple[list[Path], list[str]]:
            name = m.__name__.rsplit(".", 1)[1]
            files = m.build(payload, kdump, entries, work / name)
            return files, (m.check(files, payload, work / f"check-{name}") if checks else [])
        # The two families share nothing but the read-only payload: build them side by side.
        with ThreadPoolExecutor(max_workers=len(builders)) as pool:
            results = [f.result() for f in [pool.submit(build_and_check, m) for m in builders]]
        for _, lines in results:
            done += lines
        dest = payload.dist
        fs.remove_leftovers(dest)
        written = tuple(fs.publish_file(p, dest / p.name) for files, _ in results for p in files)
        boot = _replace_boot(work / "boot", dest / "boot", boot_files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return PackageResult(payload.release, payload.dist, written, boot, tuple(done),
                         lint.warnings, round(time.monotonic() - started, 1))


def _replace_boot(src: Path, dest: Path, files: tuple[Path, ...]) -> tuple[Path, ...]:
    """Swap in the new boot/ folder as a whole; it always describes one run."""
    staged = fs.temp_name(dest)
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(src, staged)
    fs.swap_dir(staged, dest)
    return tuple(dest / f.relative_to(src) for f in files)
