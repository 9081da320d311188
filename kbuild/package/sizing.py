"""Which crashkernel= the packages carry: the settings' value, else what was measured for this build.

crash-test --find-crashkernel records `crashkernel` and install-test --find-crashkernel records
`install_test_crashkernel` in the manifest, each with the smallest reservation that still gave a
verified dump and a recommendation with headroom. The largest of each pair is the one to trust:
Debian's real kdump initrd needs more than our minimal capture initramfs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from kbuild.core import sizes
from kbuild.core.manifest import Manifest
from kbuild.package import kdumpcfg

RECORDS = {"crashkernel": "crash-test", "install_test_crashkernel": "install-test"}


@dataclass(frozen=True)
class Measured:
    minimum: int
    minimum_by: str
    recommended: int
    recommended_by: str


def measured(m: Manifest) -> Measured | None:
    """The largest measured minimum and recommendation recorded for this build, if any."""
    found = []
    for key, who in RECORDS.items():
        rec = m.record.get(key)
        if isinstance(rec, dict) and rec.get("minimum") and rec.get("recommended"):
            try:
                found.append((sizes.parse(rec["minimum"]), sizes.parse(rec["recommended"]), who))
            except sizes.SizeError:
                continue
    if not found:
        return None
    low, high = max(found, key=lambda f: f[0]), max(found, key=lambda f: f[1])
    return Measured(low[0], low[2], high[1], high[2])


def choose(kdump: kdumpcfg.KdumpSettings, m: Manifest) -> tuple[kdumpcfg.KdumpSettings, str, tuple[int, str] | None]:
    """(settings with the reservation to ship, a line saying where it came from, the warning floor)."""
    got = measured(m)
    floor = None if got is None else (
        got.minimum, f"the smallest reservation that still gave a dump in this build's {got.minimum_by} "
                     "--find-crashkernel")
    if kdump.crashkernel is not None:
        return kdump, f"crashkernel={kdump.crashkernel} from the kdump settings", floor
    if got is None:
        return (replace(kdump, crashkernel=kdumpcfg.DEFAULT_CRASHKERNEL),
                f"crashkernel={kdumpcfg.DEFAULT_CRASHKERNEL}: the default (no measurement recorded for "
                "this build; crash-test or install-test --find-crashkernel measures one)", floor)
    ck = sizes.fmt(got.recommended)
    return (replace(kdump, crashkernel=ck),
            f"crashkernel={ck}: the largest measured recommendation ({got.recommended_by} "
            f"--find-crashkernel); set crashkernel in the kdump settings to override", floor)
