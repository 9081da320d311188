"""`invoke crash-test --find-crashkernel`: the smallest crashkernel= that still yields a verified dump.

Each trial is a full crash test (boot, crash, capture, every verification), so "works" means
exactly what the crash test means. The bisection trusts the search's upper bound (it must
pass) and treats `[find] low` as the floor; failing trials get a short deadline, because a
capture kernel that is short of memory may hang rather than fail.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kbuild.core import arch, lock
from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.manifest import Manifest
from kbuild.core.sizes import fmt as fmt_size, parse as parse_size
from kbuild.crashtest.report import PHASES, CrashReport
from kbuild.crashtest.settings import CrashTestSettings, policy
from kbuild.crashtest.stage import CrashTestFailed, Prepared, finalize, prepare, relocate, run_once, staging


@dataclass
class CrashkernelSizing:
    minimum: str
    recommended: str
    trials: list[dict]
    report: CrashReport  # the run at the minimum, as published in dist/<release>/crash-test/
    note: str = ""


def find_crashkernel(m: Manifest, settings: CrashTestSettings, wait: bool = True) -> CrashkernelSizing:
    """crash-test, one run at a time per dist/<release>/ (`wait=False`: refuse at once if another holds it)."""
    with lock.exclusive(m.dist, "crash-test", wait):
        return _find_crashkernel(m, settings)


def _find_crashkernel(m: Manifest, settings: CrashTestSettings) -> CrashkernelSizing:
    """Bisect the smallest crashkernel= that still gives a verified dump; record it in the manifest."""
    find = policy().find
    step = parse_size(find.step, "find.step")
    low = parse_size(find.low, "find.low")
    high = settings.crashkernel   # bytes, parsed once with the kernel's grammar
    if len(settings.triggers) != 1:
        raise BadInput("--find-crashkernel measures one trigger; give --trigger NAME, not a list or all")
    skip = arch.get(m.arch).crash.skip.get(settings.triggers[0].name)
    if skip:
        raise BadInput(f"--find-crashkernel --trigger {settings.triggers[0].name}: not on {m.arch} ({skip})")
    staged, final = staging(m)
    trials: list[dict] = []
    try:
        prep = prepare(m, settings, staged / "work")
        results: dict[int, tuple[CrashReport, str, Path]] = {}

        def trial(size: int, timeout: float) -> bool:
            out = staged / "trials" / f"crashkernel-{fmt_size(size)}"
            report, tail = run_once(prep, settings.triggers[0], size, timeout, out)
            results[size] = (report, tail, out)
            trials.append({"crashkernel": fmt_size(size), "ok": report.ok,
                           "phase": report.failure.phase if report.failure else None,
                           "message": report.failure.message if report.failure else "verified",
                           "seconds": report.timings.get("boot_to_verified")})
            return report.ok

        if not trial(high, settings.timeout):
            report, tail, _ = results[high]
            raise CrashTestFailed(report, tail)
        # A failing size may hang until its deadline: allow a few times the passing run, not the full timeout.
        quick = min(settings.timeout, max(60.0, 4 * sum(results[high][0].timings.get(p, 0) for p in PHASES)))
        lo, hi = low, high
        note = ""
        if low < high and trial(low, quick):
            hi, note = low, f"the search's floor {fmt_size(low)} passed; the true minimum may be lower"
        while hi - lo > step:
            mid = (lo + hi) // 2 // step * step
            if mid <= lo:
                mid = lo + step
            if trial(mid, quick):
                hi = mid
            else:
                lo = mid
        best, _, best_dir = results[hi]
        for size, (report, _, d) in results.items():
            if size != hi:
                (d / "vmcore").unlink(missing_ok=True)  # one vmcore is published: the minimum's
                report.files.pop("vmcore", None)
                relocate(report, d, final / "trials" / d.name)
                (d / "report.json").write_text(report.to_json())
        factor, round_to = find.headroom_factor, parse_size(find.round_to, "find.round_to")
        recommended = -(-int(hi * factor) // round_to) * round_to
        best.search = trials
        sizing = CrashkernelSizing(fmt_size(hi), fmt_size(recommended), trials, best, note)
        _record(m, prep, sizing)
        for child in best_dir.iterdir():
            os.replace(child, staged / child.name)
        best_dir.rmdir()
        finalize(best, staged, final, settings.keep, origin=best_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return sizing


def _record(m: Manifest, prep: Prepared, sizing: CrashkernelSizing) -> None:
    """Write the measurement under `crashkernel` in the manifest, if the build is still the one tested."""
    now = Manifest.read(m.path)
    if now.inputs != prep.manifest.inputs or now.build_id != prep.build_id:
        raise CheckFailed(f"{m.path} changed during the measurement (a rebuild?); "
                          f"minimum crashkernel={sizing.minimum} was not recorded")
    now.updated(crashkernel={
        "minimum": sizing.minimum, "recommended": sizing.recommended,
        "memory": fmt_size(prep.settings.memory), "kexec": prep.settings.kexec, "accel": prep.accel,
        "cpus": prep.settings.cpus, "trigger": prep.settings.triggers[0].name,
        "core_collector": prep.settings.kdump.core_collector,
        "initramfs": {"size": prep.image.size, "sha256": prep.image.sha256},
        "step": policy().find.step, "trials": sizing.trials, "note": sizing.note,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
