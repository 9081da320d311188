"""`invoke install-test --find-crashkernel`: the smallest reservation with which Debian's kdump-tools,
with its real kdump initrd, still saves a dump that passes every check.

Each trial is a whole install test at one crashkernel= (our drop-in edited as an admin would),
without the purge proof. `[find] high` must pass; `[find] low` is assumed to fail. With panic=
on the capture command line a failing trial ends in a reboot, so it costs about as much as a
passing one. The result is recorded in the manifest as `install_test_crashkernel`.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kbuild.core import fs, lock
from kbuild.core.errors import CheckFailed
from kbuild.core.manifest import Manifest
from kbuild.core.sizes import fmt as fmt_size, parse as parse_size
from kbuild.installtest.report import InstallReport
from kbuild.installtest.settings import InstallTestSettings, policy
from kbuild.installtest.stage import FOLDER, InstallTestFailed, finalize, prepare, run_once

KEY = "install_test_crashkernel"


@dataclass
class Sizing:
    minimum: str
    recommended: str
    trials: list[dict]
    report: InstallReport       # the run at the minimum, published in dist/<release>/install-test/


def bisect(low: int, high: int, step: int, works) -> int:
    """Smallest multiple of `step` above `low` for which works(size) holds; works(high) must hold."""
    lo, hi = low, high
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if mid <= lo:
            mid = lo + step
        if works(mid):
            hi = mid
        else:
            lo = mid
    return hi


def find_crashkernel(m: Manifest, s: InstallTestSettings, wait: bool = True) -> Sizing:
    """install-test, one run at a time per dist/<release>/ (`wait=False`: refuse at once if another holds it)."""
    with lock.exclusive(m.dist, "install-test", wait):
        return _find_crashkernel(m, s)


def _find_crashkernel(m: Manifest, s: InstallTestSettings) -> Sizing:
    find = policy().find
    step, low, high = (parse_size(getattr(find, k), f"find.{k}") for k in ("step", "low", "high"))
    final = m.dist / FOLDER
    fs.remove_leftovers(m.dist)
    staged = fs.temp_name(final)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    trials: list[dict] = []
    results: dict[int, tuple[InstallReport, Path]] = {}
    accel: list[tuple[str, str]] = []
    try:
        tarball = prepare(m, staged / "commands.log")

        def works(size: int) -> bool:
            out = staged / "trials" / f"crashkernel-{fmt_size(size)}"
            out.mkdir(parents=True)
            report = run_once(m, s, fmt_size(size), out, tarball, accel[0] if accel else None, purge_proof=False)
            accel[:] = [(report.accel, report.accel_why)]
            results[size] = (report, out)
            trials.append({"crashkernel": fmt_size(size), "ok": report.ok, "outcome": report.outcome,
                           "phase": report.failure.phase if report.failure else None,
                           "message": report.failure.message if report.failure else "verified",
                           "seconds": round(sum(report.timings.values()), 1)})
            shutil.rmtree(out / "work", ignore_errors=True)
            return report.ok

        if not works(high):
            raise InstallTestFailed(results[high][0])
        best = bisect(low, high, step, works)
        recommended = -(-int(best * find.headroom_factor) // parse_size(find.round_to)) * parse_size(find.round_to)
        report, best_dir = results[best]
        report.search = trials
        for size, (r, d) in results.items():
            if size != best:
                shutil.rmtree(d / "dump", ignore_errors=True)
                r.files = {}
                (d / "report.json").write_text(r.to_json())
        record(m, fmt_size(best), fmt_size(recommended), trials, report)
        for child in best_dir.iterdir():
            shutil.move(str(child), staged / child.name)
        best_dir.rmdir()
        report.files = {k: v.replace(str(best_dir), str(staged)) for k, v in report.files.items()}
        if report.vmcore.get("path"):
            report.vmcore["path"] = report.vmcore["path"].replace(str(best_dir), str(staged))
        finalize(report, staged, final, s.keep)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return Sizing(fmt_size(best), fmt_size(recommended), trials, report)


def record(m: Manifest, minimum: str, recommended: str, trials: list[dict], report: InstallReport) -> None:
    """The measurement in the manifest, if the build is still the one tested."""
    now = Manifest.read(m.path)
    if now.build_id != m.build_id or now.inputs != m.inputs:
        raise CheckFailed(f"{m.path} changed during the measurement (a rebuild?); "
                          f"minimum crashkernel={minimum} was not recorded")
    now.updated(**{KEY: {
        "minimum": minimum, "recommended": recommended, "service": "Debian kdump-tools",
        "memory": policy().guest.memory, "smp": policy().guest.smp, "accel": report.accel,
        "kdump_initrd": report.kdump_initrd.get("cache", ""), "rootfs": report.rootfs.get("key", ""),
        "step": policy().find.step, "trials": trials,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }})
