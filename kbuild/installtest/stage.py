"""`invoke install-test`: our .deb set and Debian's kdump-tools in a booted Debian 12 VM.

rootfs -> install -> guest agent -> GRUB's command line -> disk -> one QEMU run (first boot,
crash, kdump-tools' capture, reboot, second boot, power off) -> verify -> report. Results go to
dist/<release>/install-test/ (swapped in whole): report.json, junit.xml, the serial log, the
dump as kdump-tools wrote it and rebuilt, and the logs of every command.
"""
from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kbuild.crashtest import crashtool
from kbuild.crashtest.settings import policy as crashtest_policy
from kbuild.core import fs, lock, sizes, tools
from kbuild.core.errors import BadInput, CheckFailed, CommandFailed
from kbuild.core.kconfigfile import read_values
from kbuild.core.manifest import Manifest
from kbuild.crashtest import qemu
from kbuild.crashtest.report import Check, Failure
from kbuild.installtest import cmdline as grub, disk, guest, install, kdumpinitrd, purge, rootfs, verify, vm
from kbuild.installtest.report import InstallReport
from kbuild.installtest.settings import InstallTestSettings, policy
from kbuild.installtest.watch import PHASES, Watch, diagnose
from kbuild.package import bootcfg

FOLDER = "install-test"
TAIL = 25


class InstallTestFailed(CheckFailed):
    """The test ran and failed; carries the report (already written) and the last console lines."""

    def __init__(self, report: InstallReport):
        self.report = report
        what = (f"phase {report.failure.phase}: {report.failure.message}" if report.failure else
                "verify: " + "; ".join(c.line() for c in report.checks if not c.ok)[:400])
        super().__init__(f"install-test failed in {what}")


def fitness(m: Manifest) -> dict[str, str]:
    """Refuse a kernel that cannot boot the Debian root (the minimal profile); returns its config."""
    values = read_values(m.artifact("config").path)
    missing = [f"CONFIG_{sym}=y ({why})" for sym, why in policy().needs.items() if values.get(sym) != "y"]
    if missing:
        raise CheckFailed(f"refusing to boot Debian on {m.release.release}: its config lacks "
                          f"{'; '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}; build it with "
                          "`invoke build-kernel --profile server`")
    return values


@dataclass(frozen=True)
class Prepared:
    """The installed image, ready to boot: what the VM run and the checks after it need."""

    kernel: Path
    initrd: Path
    cmdline: str
    image: Path
    done: install.Installed
    want: dict[str, str]                 # /etc/default/kdump-tools as our package sets it
    coredir: str
    other: Manifest | None
    cache: kdumpinitrd.CachedInitrd
    cached: bool


def panic_timeout(append: str) -> int:
    found = re.findall(r"(?:^|\s)panic=(-?\d+)", append)
    return int(found[-1]) if found else 0


def run_once(m: Manifest, s: InstallTestSettings, crashkernel: str, staged: Path,
             tarball: rootfs.RootTarball, accel: tuple[str, str] | None = None,
             purge_proof: bool = True) -> InstallReport:
    """Install, boot, crash, capture, verify; the report is filled in whatever happens: a check or
    command that fails on the host is recorded as the failure of the phase it happened in."""
    report = InstallReport(m.release.release, m.build_id, uuid.uuid4().hex, crashkernel)
    try:
        _run(report, m, s, staged, tarball, accel, purge_proof)
    except (CheckFailed, CommandFailed) as e:
        phase = next((p for p in PHASES if p not in report.timings), "purge")
        report.failure = report.failure or Failure(phase, str(e).splitlines()[0])
        report.outcome = report.outcome if report.outcome != "not run" else f"{phase} failed"
    return report


def _run(report: InstallReport, m: Manifest, s: InstallTestSettings, staged: Path, tarball: rootfs.RootTarball,
         accel: tuple[str, str] | None, purge_proof: bool) -> None:
    report.rootfs = {"tarball": str(tarball.path), "key": tarball.key, "reused": tarball.reused}
    report.timings["rootfs"] = tarball.seconds
    t = time.monotonic()
    p = _install(report, m, s, staged, tarball)
    report.timings["install"] = round(time.monotonic() - t, 3)
    if not _boot(report, p, m, s, staged, accel):
        return
    t = time.monotonic()
    _verify(report, p, m, staged)
    report.timings["verify"] = round(time.monotonic() - t, 3)
    if purge_proof:
        purged = purge.purge_proof(tarball, p.done.debs[:3], install.package_names(m.release.release),
                                   staged / "work", staged / "commands.log")
        report.checks += purged.checks
        report.timings["purge"] = purged.seconds


def _install(report: InstallReport, m: Manifest, s: InstallTestSettings, staged: Path,
             tarball: rootfs.RootTarball) -> Prepared:
    """Fresh root, our packages (and --alongside's), the agent, GRUB's command line, the disk."""
    pol, rel, log = policy(), m.release.release, staged / "commands.log"
    work = staged / "work"
    root = work / "root"
    shutil.rmtree(work, ignore_errors=True)
    rootfs.unpack(tarball, root, log)
    fsuuid = str(uuid.uuid4())
    install.site_files(root, pol.site, fsuuid)
    other = Manifest.find(release=s.alongside) if s.alongside else None
    extra = install.deb_set(other)[:2] if other else ()          # its image and dbg; one config package
    done = install.install(root, install.deb_set(m) + extra, rel, log)
    hook_log = root / install.STATE.lstrip("/") / "kdump-hook.log"
    if hook_log.is_file():
        shutil.copyfile(hook_log, staged / "kdump-hook.log")
    want = {k: v for k, v in install.shipped_defaults(install.deb_set(m)[2], work).items() if k != "USE_KDUMP"}
    coredir = done.kdump_tools.get("KDUMP_COREDIR") or "/var/crash"
    report.install = {"debs": [d.name for d in done.debs], "kdump_tools": done.kdump_tools,
                      "hook_calls": [vars(c) for c in done.hook_calls], "seconds": done.seconds}
    report.checks += install_checks(done, want, rel)
    shipped = grub.grub_cmdline(root, rel, fsuuid).crashkernel    # what our drop-in sets
    if not report.crashkernel:
        report.crashkernel = shipped[-1] if shipped else "none"
    elif shipped != [report.crashkernel]:
        guest.set_crashkernel(root, bootcfg.load().grub_dropin.name, report.crashkernel)
    remove = install.package_names(other.release.release)[1:] if other else ()
    if other:
        report.alongside = {"release": other.release.release,
                            "installed": (root / f"boot/vmlinuz-{other.release.release}").is_file()}
    guest.add_agent(root, report.nonce, coredir, pol.guest.ready_timeout, remove)
    kernel, initrd = staged / f"vmlinuz-{rel}", staged / f"initrd.img-{rel}"
    for src, dest in ((root / f"boot/vmlinuz-{rel}", kernel), (root / f"boot/initrd.img-{rel}", initrd)):
        if not src.is_file():
            raise CheckFailed(f"/{src.relative_to(root)} is missing after the install (initramfs-tools' hook?)")
        shutil.copyfile(src, dest)
    line = grub.grub_cmdline(root, rel, fsuuid)
    report.cmdline = line.cmdline
    report.checks.append(Check("crashkernel-from-dropin", line.crashkernel == [report.crashkernel],
                               f"exactly one crashkernel={report.crashkernel} on GRUB's command line (our drop-in)",
                               " ".join(f"crashkernel={c}" for c in line.crashkernel) or "none"))
    image = work / "disk.img"
    hardware = vm.Machine(kernel, initrd, line.cmdline, image, pol.guest.memory, pol.guest.smp, "").hardware()
    cache = kdumpinitrd.cache_for(tarball.sha256, done.debs[0], hardware)
    cached = kdumpinitrd.restore(cache, root, rel)
    report.kdump_initrd = {"cache": str(cache.folder), "reused": cached}
    disk.make(root, image, fsuuid, pol.guest.disk_size, log)
    shutil.copyfile(root / f"usr/lib/debug/boot/vmlinux-{rel}", work / "vmlinux")   # the dbg package's
    shutil.rmtree(root)
    return Prepared(kernel, initrd, line.cmdline, image, done, want, coredir, other, cache, cached)


def install_checks(done: install.Installed, want: dict[str, str], rel: str) -> list[Check]:
    """ucf installed our kdump-tools settings; our postinst ran kdump-tools' hook as Debian's kernels do."""
    calls = [c for c in done.hook_calls if c.args[:1] == (rel,)]
    return [Check("kdump-settings", all(done.kdump_tools.get(k) == v for k, v in want.items()),
                  "/etc/default/kdump-tools is what our config package ships (ucf): "
                  + ", ".join(f"{k}={v}" for k, v in want.items()),
                  ", ".join(f"{k}={done.kdump_tools.get(k)}" for k in want)),
            Check("kdump-hook-called", bool(calls) and calls[0].args == (rel, f"/boot/vmlinuz-{rel}")
                  and calls[0].deb_maint_params.split()[:1] == ["configure"],
                  f"our postinst ran kdump-tools' postinst.d hook with {rel} /boot/vmlinuz-{rel}, "
                  "DEB_MAINT_PARAMS=configure",
                  "; ".join(f"{' '.join(c.args)} DEB_MAINT_PARAMS={c.deb_maint_params} rc {c.rc}"
                            for c in done.hook_calls) or "never called")]


def _boot(report: InstallReport, p: Prepared, m: Manifest, s: InstallTestSettings, staged: Path,
          accel: tuple[str, str] | None) -> bool:
    """The VM run; False if it failed (the report says where and why)."""
    pol, rel, work, log = policy(), m.release.release, staged / "work", staged / "commands.log"
    if accel is None:
        accel = qemu.choose_accel(s.accel, p.kernel, pol.guest.kvm_probe_seconds, work / "kvm-probe.log")
    machine = vm.Machine(p.kernel, p.initrd, p.cmdline, p.image, pol.guest.memory, pol.guest.smp, accel[0])
    report.accel, report.accel_why, report.qemu = accel[0], accel[1], machine.command()
    panic = panic_timeout(p.done.kdump_tools.get("KDUMP_CMDLINE_APPEND", ""))
    # With panic= the capture kernel reboots after a panic: the reset and a whole second boot follow,
    # so the capture deadline stays. Without it, a panic is the end: stop 30 s later.
    watch = Watch(pol.guest.capture_timeout, None if panic != 0 else 30.0)
    serial = staged / "serial.log"
    run = vm.boot(machine, watch, s.timeout, serial)
    report.files["serial_log"] = str(serial)
    report.events = dict(watch.at)
    report.timings.update(watch.timings(run.duration))
    report.serial_tail = [ln.text for ln in run.lines[-TAIL:]]
    report.outcome, failed = diagnose(watch, run.returncode, run.timed_out, s.timeout, run.stopped)
    report.makedumpfile = watch.makedumpfile
    if "initrd_build" in watch.at and "kdump_loaded" in watch.at and not p.cached:
        report.kdump_initrd["built_in_guest_seconds"] = round(watch.at["kdump_loaded"] - watch.at["initrd_build"], 3)
        report.kdump_initrd["saved"] = kdumpinitrd.save(p.cache, p.image, rel, work / "kdump-initrd")
    kexec_cmd = disk.fetch(p.image, f"{p.coredir}/kexec_cmd", work / "kexec_cmd", log)
    report.capture_cmdline = kexec_cmd.read_text().strip() if kexec_cmd else ""
    if p.other:
        report.checks += alongside_checks(watch.marks, rel, p.other.release.release, p.image, log)
    if failed:
        report.failure = Failure(*failed)
    return not failed


def crash_reads_up_to() -> str | None:
    """The newest kernel the installed crash reads: one table, the crash test's."""
    return crashtest_policy().crash_tool.newest_kernel.get(crashtool.installed_version())


def _verify(report: InstallReport, p: Prepared, m: Manifest, staged: Path) -> None:
    rel = m.release.release
    values = read_values(m.artifact("config").path)
    ver = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", rel).groups())
    want = verify.Expected(report.nonce, rel, m.build_id, staged / "work" / "vmlinux", p.coredir,
                           p.want["MAKEDUMP_ARGS"], verify.crash_support(values, ver, crash_reads_up_to()))
    dump_dir = staged / "dump"
    dump_dir.mkdir(exist_ok=True)
    checked = verify.verify(p.image, want, report.makedumpfile, dump_dir, staged / "commands.log")
    report.checks += checked.checks
    report.skipped.update(checked.skipped)
    report.vmcore, report.crashed_task = checked.vmcore, checked.crashed_task
    report.files.update(checked.files)


def alongside_checks(marks: dict[str, str], rel: str, other: str, image: Path, log: Path) -> list[Check]:
    """Two releases installed: kdump-tools loaded the running one; removing the other kept it ready."""
    want = f"/boot/vmlinuz-{rel} /var/lib/kdump/initrd.img-{rel}"
    left = [e.name for e in disk.listdir(image, "/boot", log) if other in e.name]
    return [Check("alongside-loads-running", marks.get("LINKS") == want,
                  f"with {other} installed too, kdump-config links {want}", marks.get("LINKS", "no LINKS line")),
            Check("alongside-removed", marks.get("REMOVED", "").startswith("rc=0") and not left
                  and marks.get("LINKS-AFTER") == want,
                  f"dpkg --purge of {other} in the running guest exits 0, leaves no /boot/*{other}, and "
                  "kdump-config is still ready with the same links",
                  f"{marks.get('REMOVED', 'not run')}; /boot left {left}; links after {marks.get('LINKS-AFTER')}")]


def finalize(report: InstallReport, staged: Path, final: Path, keep: bool) -> None:
    """Drop the work folder unless kept, write the report with final paths, swap the folder in."""
    if not keep:
        shutil.rmtree(staged / "work", ignore_errors=True)
        for p in staged.glob("vmlinuz-*"):
            p.unlink()
        for p in staged.glob("initrd.img-*"):
            p.unlink()
    report.files = {k: v.replace(str(staged), str(final)) for k, v in report.files.items()}
    for name in ("vmcore", "path"):
        if name in report.vmcore:
            report.vmcore[name] = str(report.vmcore[name]).replace(str(staged), str(final))
    report.files["report.json"] = str(final / "report.json")
    report.files["junit.xml"] = str(final / "junit.xml")
    (staged / "report.json").write_text(report.to_json())
    (staged / "junit.xml").write_text(report.to_junit())
    fs.swap_dir(staged, final)


def prepare(m: Manifest, log: Path) -> rootfs.RootTarball:
    """Everything that can refuse the run before minutes are spent; then the (cached) root."""
    if os.geteuid() != 0:
        raise BadInput("install-test must run as root: mmdebstrap --mode=root, chroot and dpkg -i into the root")
    tools.require("install-test")
    verify.require_drgn()
    fitness(m)
    install.deb_set(m)
    return rootfs.ensure(policy().rootfs, log)


def install_test(m: Manifest, s: InstallTestSettings, wait: bool = True) -> InstallReport:
    """install-test, one run at a time per dist/<release>/ (`wait=False`: refuse at once if another holds it)."""
    with lock.exclusive(m.dist, "install-test", wait):
        return _install_test(m, s)


def _install_test(m: Manifest, s: InstallTestSettings) -> InstallReport:
    """The whole stage for one reservation; writes dist/<release>/install-test/."""
    final = m.dist / FOLDER
    fs.remove_leftovers(m.dist)
    staged = fs.temp_name(final)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        tarball = prepare(m, staged / "commands.log")
        ck = sizes.fmt(s.crashkernel) if s.crashkernel else ""      # "": as our drop-in ships it
        report = run_once(m, s, ck, staged, tarball)
        finalize(report, staged, final, s.keep)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if not report.ok:
        raise InstallTestFailed(report)
    return report
