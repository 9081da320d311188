"""`invoke crash-test`: boot the built kernel in QEMU, crash it, capture the vmcore, prove it is ours.

One VM run (N vCPUs) per trigger does both boots. The production kernel's /init loads the
same bzImage as capture kernel (kexec -s or -c, into the crashkernel= reservation), writes
a per-run nonce to the kernel log and fires the trigger (sysrq-c or LKDTM pinned to the
last CPU, or the host's NMI); the capture kernel's /init runs the configured core_collector
into <path>/<nonce>/vmcore-incomplete on an ext4 disk and renames it. The host then reads
the disk with debugfs and verifies the dump from every side: format and completeness, the
dump's own dmesg (the trigger's signature and the nonce), VMCOREINFO OSRELEASE and BUILD-ID
against the manifest, drgn (the trigger's function on the crashed stack, the crashed CPU,
registers for every CPU, every other CPU stopped by kdump's NMI), and Debian's `crash`.
A stale, foreign or truncated dump fails.

The architecture is the manifest's (configs/arches.toml): an arm64 kernel boots as an
Image on qemu-system-aarch64 -M virt under TCG, with Debian's arm64 capture programs, and
triggers it cannot run (the NMI) are named skips in the report, never passes.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kbuild.build.verify import elf_build_id
from kbuild.configure.checkconfig import check_config
from kbuild.core import arch as archmod, fs, lock, makedumpfile, sizes, tools
from kbuild.core.errors import CheckFailed, CommandFailed, KbuildError, MissingTool
from kbuild.core.hashing import file_sha256
from kbuild.core.kconfigfile import read_values
from kbuild.core.manifest import Manifest
from kbuild.core.proc import run
from kbuild.core.source import locate
from kbuild.core.toolchain import Toolchain
from kbuild.crashtest import cpus as cpumod, crashtool, initramfs, qemu, vmcore
from kbuild.crashtest.report import Check, CrashReport, Failure, MatrixReport
from kbuild.crashtest.settings import CrashTestSettings, Need, Trigger, policy
from kbuild.crashtest.watch import ConsoleWatch, RunFacts, diagnose

MIB = sizes.MIB


class CrashTestFailed(CheckFailed):
    """The test ran and failed; carries the report (already written) and the last console lines."""

    def __init__(self, report: CrashReport | MatrixReport, tail: str):
        self.report, self.tail = report, tail
        runs = report.failed if isinstance(report, MatrixReport) else [report]
        first = runs[0]
        more = f" (also failed: {', '.join(r.trigger for r in runs[1:])})" if len(runs) > 1 else ""
        super().__init__(f"crash-test {first.trigger} failed in phase {first.failure.phase}: "
                         f"{first.failure.message}{more}")


# --- before booting --------------------------------------------------------------------------

@dataclass
class Prepared:
    """Everything one or more VM runs share: checked inputs, the initramfs, the accelerator."""

    manifest: Manifest
    release: str
    build_id: str
    kernel: Path                      # the bootable image (bzImage, arm64 Image), copied
    vmlinux: Path
    settings: CrashTestSettings
    work: Path
    image: initramfs.InitramfsImage
    capture_cmdline: str
    accel: str
    accel_why: str
    tools: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)
    module_debug: tuple[Path, ...] = ()   # host .ko files of the trigger modules, for drgn's frame names
    arch: archmod.Arch = field(default_factory=archmod.get)


def preflight() -> None:
    """Every host tool first, as one install line, before minutes are spent."""
    tools.require("crash-test")
    try:
        import drgn  # noqa: F401
    except ImportError:
        raise MissingTool("the Python module drgn is missing (pip install drgn==0.3.0; `make setup` installs it)") \
            from None


def guest_fitness(config: Path, m: Manifest, settings: CrashTestSettings,
                  arch: str = archmod.DEFAULT) -> tuple[list[str], list[str]]:
    """Refuse a kernel that cannot pass: check-config, the VM's needs, the triggers' needs, --cpus.

    Returns the =m modules both boots load, and those only LKDTM triggers load.
    """
    result = check_config(config, locate(m.tree_source), Toolchain.for_arch(archmod.get(arch)))
    if not result.ok:
        bad = [r for r in result.results if not r.ok]
        raise CheckFailed(f"refusing to boot: {config} fails check-config: "
                          + "; ".join(f"{r.capability}: {r.why}" for r in bad))
    values = read_values(config)
    modules, missing = vm_needs(values, settings.kexec, arch)
    if missing:
        raise CheckFailed(f"refusing to boot: {config} lacks what the crash test's VM needs: " + "; ".join(missing))
    runnable = tuple(t for t in settings.triggers if t.name not in archmod.get(arch).crash.skip)
    trigger_modules, missing = trigger_needs(values, runnable)
    if missing:
        raise CheckFailed(f"refusing to boot: {config} cannot run " + "; ".join(missing))
    nr = int(values.get("NR_CPUS", "1") or 1)
    if settings.cpus > nr:
        raise CheckFailed(f"refusing to boot: --cpus {settings.cpus} exceeds the kernel's CONFIG_NR_CPUS={nr}")
    return modules, trigger_modules


def trigger_needs(values: dict[str, str], triggers: tuple[Trigger, ...]) -> tuple[list[str], list[str]]:
    """(modules the LKDTM triggers load, unmet needs naming trigger and option) for a config's values."""
    modules, missing = [], []
    for t in triggers:
        for sym, reason in t.needs.items():
            v = values.get(sym, "n")
            if v == "m" and sym == "LKDTM":
                modules.append("lkdtm")
            elif v != "y":
                allowed = "=y or =m" if sym == "LKDTM" else "=y"
                missing.append(f"--trigger {t.name}: needs CONFIG_{sym}{allowed} ({reason}; the config has {v})")
    return list(dict.fromkeys(modules)), missing


def vm_needs(values: dict[str, str], kexec: str, arch: str = archmod.DEFAULT) -> tuple[list[str], list[str]]:
    """(modules to carry, unmet needs) for a config's values, the chosen kexec loader and the architecture."""
    pol = policy()
    needs = {sym: n for sym, n in pol.needs.items() if not n.arches or arch in n.arches}
    for sym, reason in pol.loader[kexec].needs.items():
        needs[sym] = Need(f"{reason} (--kexec {kexec})")
    modules, missing = [], []
    for sym, need in needs.items():
        v = values.get(sym, "n")
        if v == "y":
            continue
        if v == "m" and need.module:
            modules.append(need.module)
        else:
            missing.append(f"CONFIG_{sym}=y ({need.reason}; the config has {v})")
    return modules, missing


def _tool_versions(a: archmod.Arch, programs: initramfs.Programs) -> dict[str, str]:
    out = {}
    host = programs.source == "host"
    for name, cmd in (("qemu", [a.qemu.binary, "--version"]), ("kexec", ["kexec", "--version"]),
                      ("makedumpfile", ["makedumpfile", "-v"])):
        if name != "qemu" and not host:   # the guest's come from Debian's packages of its architecture
            out[name] = f"{Path(programs.programs[name]).name} from {programs.source}"
            continue
        try:
            out[name] = run(cmd, check=False).output.strip().splitlines()[0]
        except (KbuildError, IndexError):
            out[name] = "unknown"
    import drgn
    out["drgn"] = drgn.__version__
    out["crash"] = crashtool.installed_version()
    if not host:
        out["capture_debs"] = (Path(programs.source) / ".complete").read_text().split()
    return out


def prepare(m: Manifest, settings: CrashTestSettings, work: Path) -> Prepared:
    t0 = time.monotonic()
    preflight()
    a = archmod.get(m.arch)
    work.mkdir(parents=True, exist_ok=True)
    kernel = work / a.image_name  # a copy: what boots is what was hashed, even if a rebuild starts now
    shutil.copyfile(m.artifact(a.image_name).path, kernel)
    m.verify(("vmlinux", "config"))
    if file_sha256(kernel) != m.artifact(a.image_name).sha256:
        m.verify((a.image_name,))
    config = m.artifact("config").path
    module_names, trigger_names = guest_fitness(config, m, settings, a.name)
    modules: tuple[str, ...] = ()
    trigger_modules: tuple[str, ...] = ()
    moddir = None
    if module_names or trigger_names:
        dep = m.artifact("modules/modules.dep").path
        moddir = dep.parent
        modules = tuple(initramfs.resolve_modules(dep, module_names))
        trigger_modules = tuple(initramfs.resolve_modules(dep, trigger_names))
    k, guest = settings.kdump, policy().guest
    capture = f"{k.capture_cmdline(m.release.cpu_limit_arg)} {a.crash.console} panic=-1 rdinit=/init"
    conf = initramfs.CaptureConfig(policy().loader[settings.kexec].flag, capture, k.path,
                                   k.core_collector, k.failure_action, modules, trigger_modules)
    programs = initramfs.programs_for(a, work / "host.log")
    image = initramfs.build(work / "initrd.img", conf, modules_root=moddir, mtime=m.epoch, programs=programs)
    timings = {"prepare": round(time.monotonic() - t0, 3)}
    t = time.monotonic()
    accel, why = qemu.choose_accel(settings.accel, kernel, guest.kvm_probe_seconds, work / "kvm-probe.log", a)
    timings["accel_probe"] = round(time.monotonic() - t, 3)
    debug = tuple(moddir / rel for rel in trigger_modules) if moddir else ()
    return Prepared(m, m.release.release, m.build_id, kernel, m.artifact("vmlinux").path, settings, work,
                    image, capture, accel, why, _tool_versions(a, programs), timings, debug, a)


def make_disk(prep: Prepared, disk: Path) -> None:
    """An ext4 image holding /boot (what kexec loads) and the empty dump path, made without mounting."""
    tree = disk.with_suffix(".d")
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "boot").mkdir(parents=True)
    (tree / prep.settings.kdump.path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(prep.kernel, tree / "boot" / "vmlinuz")
    shutil.copyfile(prep.image.path, tree / "boot" / "initrd.img")
    headroom = sizes.parse(policy().guest.disk_headroom, "guest.disk_headroom")
    disk.unlink(missing_ok=True)
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "kdump", "-E", "root_owner=0:0", "-d", str(tree),
         str(disk), f"{(prep.settings.memory + headroom) // MIB}M"])
    shutil.rmtree(tree)


# --- after the VM -----------------------------------------------------------------------------

def _debugfs(disk: Path, request: str, log: Path) -> str:
    return run(["debugfs", "-R", request, str(disk)], log=log, check=False).output


def verify(prep: Prepared, trigger: Trigger, disk: Path, nonce: str, out: Path,
           log: Path) -> tuple[list[Check], dict, dict, dict]:
    """Take the vmcore off the dump disk (debugfs, no mount) and check it. Returns checks, vmcore, task, cpus."""
    k = prep.settings.kdump
    where = f"{k.path.rstrip('/')}/{nonce}"
    listing = _debugfs(disk, f"ls -p {where}", log)
    names = sorted(m.group(1) for m in re.finditer(r"^/\d+/1\d{5}/\d+/\d+/([^/]+)/", listing, re.M))
    saved = Check("vmcore-saved", names == ["vmcore"], f"{where} holds only vmcore (renamed when complete)",
                  ", ".join(names) or "no files")
    if "vmcore" not in names:
        return [saved], {}, {}, {}
    target = out / "vmcore"
    target.unlink(missing_ok=True)
    _debugfs(disk, f"dump {where}/vmcore {target}", log)
    n = prep.settings.cpus
    expect = Expected(nonce, prep.release, prep.build_id, prep.vmlinux, k.core_collector, prep.settings.memory,
                      trigger, n, n - 1 if trigger.pinned else None,
                      prep.module_debug if trigger.kind == "lkdtm" else (),
                      prep.arch.crash.stop_function, prep.arch.crash.stop_stack)
    checks, info, task, cpus = check_vmcore(target, expect, out, log)
    return [saved, *checks], info, task, cpus


@dataclass(frozen=True)
class Expected:
    """What a dump from this run must show."""

    nonce: str
    release: str
    build_id: str
    vmlinux: Path
    core_collector: str
    memory: int
    trigger: Trigger
    cpus: int
    pinned_cpu: int | None              # None: the crash may be on any CPU (the NMI)
    modules: tuple[Path, ...] = ()      # .ko files whose debug info drgn loads
    stop: str = "crash_nmi_callback"    # where every other CPU must be stopped (configs/arches.toml)
    stop_stack: str = "nmi"             # and on which stack (kbuild.crashtest.cpus)


def check_vmcore(target: Path, want: Expected, out: Path,
                 log: Path | None = None) -> tuple[list[Check], dict, dict, dict]:
    """Every check on a vmcore file, in order; each records expected and actual."""
    checks: list[Check] = []
    task: dict = {}
    dump = vmcore.read_dump(target)
    info = {"path": str(target), "format": dump.format, "size": dump.size, "ram_bytes": want.memory,
            "ram_share": round(dump.size / want.memory, 5), "dump_level": dump.dump_level,
            "machine": dump.machine}
    fmt = makedumpfile.expected_format(want.core_collector)
    checks.append(Check("vmcore-format", dump.format == fmt, f"{fmt} (core_collector: {want.core_collector})",
                        dump.format))
    checks.append(Check("vmcore-complete", dump.complete, "complete", dump.why_incomplete or "complete"))
    if dump.format not in ("kdump-compressed", "elf"):
        return checks, info, task, {}
    foreign = bool(dump.machine) and dump.machine != os.uname().machine   # makedumpfile reads its own arch only
    try:
        dmesg = (vmcore.dmesg_with_drgn(target, want.vmlinux, out / "dmesg.txt") if foreign
                 else vmcore.dump_dmesg(target, out / "dmesg.txt", log))
    except (CommandFailed, ValueError) as e:
        dmesg = ""
        checks.append(Check("dmesg-readable", False, "drgn reads the log buffer" if foreign
                            else "makedumpfile --dump-dmesg succeeds", str(e).splitlines()[0]))
    lines = want.trigger.lines(want.pinned_cpu)
    absent = [ln for ln in lines if ln not in dmesg]
    checks.append(Check("dmesg-signature", not absent, " and ".join(repr(ln) for ln in lines) + " in the dump's dmesg",
                        "all present: " + " | ".join(_grep(dmesg, ln) for ln in lines) if not absent
                        else "absent: " + " and ".join(repr(ln) for ln in absent)))
    nonce_line = f"crash-test nonce {want.nonce}"
    checks.append(Check("dmesg-nonce", nonce_line in dmesg, f"'{nonce_line}' in the dump's dmesg",
                        _grep(dmesg, "crash-test nonce") or "absent"))
    osrelease = dump.vmcoreinfo.get("OSRELEASE", "absent")
    checks.append(Check("osrelease", osrelease == want.release, want.release, osrelease))
    dump_id = dump.vmcoreinfo.get("BUILD-ID", "absent")
    file_id = elf_build_id(want.vmlinux)
    checks.append(Check("build-id", dump_id == want.build_id == file_id, f"{want.build_id} (manifest and vmlinux)",
                        f"dump {dump_id}" + ("" if file_id == want.build_id else f", vmlinux file {file_id}")))
    view = vmcore.open_with_debuginfo(target, want.vmlinux, want.modules)
    checks.append(Check("debug-vmlinux-opens", view.opened and view.release == want.release,
                        f"drgn opens the dump with {want.vmlinux} and reads release {want.release}",
                        view.error or f"opened, release {view.release}"))
    if not view.opened:
        return checks, info, task, {}
    task = {"pid": view.pid, "comm": view.task, "stack": view.stack}
    fn = want.trigger.stack
    checks.append(Check("crash-stack", fn in view.stack, f"{fn} on the crashed task's stack",
                        f"{view.task} (pid {view.pid}): " + " <- ".join(view.stack[:12])))
    survey = cpumod.survey(view.program, want.stop_stack)
    checks += cpu_checks(survey, dump, want)
    return checks, info, task, asdict(survey)


def cpu_checks(survey: cpumod.CpuSurvey, dump: vmcore.DumpFile, want: Expected) -> list[Check]:
    """The crashing CPU, a register set per CPU, and every other CPU stopped by kdump (NMI, arm64's IPI)."""
    stop = want.stop
    where = "NMI" if want.stop_stack == "nmi" else want.stop_stack.upper()
    crashed = survey.crashed_cpu
    want_cpu = "any CPU" if want.pinned_cpu is None else f"CPU {want.pinned_cpu} (the pinned one)"
    cpu_ok = crashed is not None and (crashed == want.pinned_cpu if want.pinned_cpu is not None
                                      else 0 <= crashed < want.cpus)
    checks = [Check("crashed-cpu", cpu_ok, f"panic_cpu = {want_cpu}",
                    survey.error or f"CPU {crashed}")]
    regs = dump.prstatus
    by_cpu = {c.cpu: c for c in survey.cpus}
    pid_mismatch = [i for i, p in enumerate(regs) if i in by_cpu and by_cpu[i].pid != p.pid]
    regs_ok = len(regs) == want.cpus and survey.online == list(range(want.cpus)) and not pid_mismatch
    checks.append(Check("cpu-registers", regs_ok,
                        f"{want.cpus} online CPUs and one saved register set (NT_PRSTATUS) per CPU, "
                        "each naming the task current there",
                        f"online {survey.online}, {len(regs)} register sets (pids {[p.pid for p in regs]})"
                        + (f", pid differs from the current task on CPU {pid_mismatch}" if pid_mismatch else "")))
    others = [c for c in survey.cpus if c.cpu != crashed]
    unstopped = [c.cpu for c in others if stop not in c.nmi_stack]
    checks.append(Check("cpus-stopped", bool(others) and not unstopped and len(others) == want.cpus - 1,
                        f"every CPU but {crashed} halted in {stop} (on its {where} stack)",
                        "; ".join(f"CPU {c.cpu} {c.task}: {where} stack "
                                  + (" <- ".join(reversed(c.nmi_stack[-6:])) or c.error or "empty")
                                  for c in others) or "no other CPU online"))
    return checks


def _grep(text: str, needle: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if needle in ln), "")


def _crash_tool(prep: Prepared, trigger: Trigger, nonce: str, report: CrashReport, out: Path) -> None:
    """Open the verified dump with Debian's crash; its checks join the run's (a skip adds none)."""
    tool = policy().crash_tool
    want = crashtool.CrashExpect(prep.release, prep.settings.cpus, report.crashed_cpu, trigger.crash_panic,
                                 trigger.crash_bt, prep.arch.crash.stop_function, nonce)
    result = crashtool.check(prep.vmlinux, out / "vmcore", want, out / "crash", out / "host.log",
                             tool.timeout, dict(tool.newest_kernel), guest_machine=prep.arch.host)
    report.crash_tool = result.to_dict()
    report.checks += result.checks


# --- one run, and the entry points -----------------------------------------------------------

def production_cmdline(crashkernel: str, nonce: str, trigger: Trigger, a: archmod.Arch | None = None) -> str:
    """The production kernel's command line: console, reservation, and the trigger for /init."""
    console = (a or archmod.get()).crash.console
    fire = f"crashtest.trigger={trigger.name} crashtest.fire={trigger.fire} crashtest.settle={trigger.settle:g}"
    if trigger.sysctls:
        fire += f" crashtest.sysctl={','.join(trigger.sysctls)}"
    return f"{console} crashkernel={crashkernel} panic=-1 rdinit=/init crashtest.nonce={nonce} {fire}"


def run_once(prep: Prepared, trigger: Trigger, crashkernel_bytes: int, timeout: float,
             out: Path) -> tuple[CrashReport, str]:
    """Boot, crash, capture and verify once; files go to `out`. Returns the report and the console tail."""
    trigger = trigger.for_arch(prep.arch.name)
    crashkernel = sizes.fmt(crashkernel_bytes)
    out.mkdir(parents=True, exist_ok=True)
    s = prep.settings
    nonce = uuid.uuid4().hex
    disk = prep.work / "dump.img"
    make_disk(prep, disk)
    production = production_cmdline(crashkernel, nonce, trigger, prep.arch)
    qmp_dir = Path(tempfile.mkdtemp(prefix="kbuild-qmp-"))   # a socket path must stay under 108 bytes
    sock = qmp_dir / "qmp.sock"
    spec = qemu.VmSpec(prep.kernel, prep.image.path, production, disk, f"{s.memory // MIB}M", prep.accel,
                       s.cpus, sock, prep.arch)
    report = CrashReport(
        release=prep.release, build_id=prep.build_id, nonce=nonce, accel=prep.accel, accel_why=prep.accel_why,
        settings={"memory": sizes.fmt(s.memory), "crashkernel": crashkernel, "kexec": s.kexec, "timeout": timeout,
                  "cpus": s.cpus, "trigger": trigger.name, "fire": trigger.fire, "sysctls": list(trigger.sysctls),
                  "kdump": {"path": s.kdump.path, "core_collector": s.kdump.core_collector,
                            "failure_action": s.kdump.failure_action, "cmdline_append": s.kdump.cmdline_append}},
        production_cmdline=production, capture_cmdline=f"{prep.capture_cmdline} crashtest.nonce={nonce}",
        initramfs={"size": prep.image.size, "sha256": prep.image.sha256, "uncompressed": prep.image.uncompressed,
                   "entries": prep.image.entries, "programs": prep.image.programs},
        qemu=spec.command(), tools=prep.tools, timings=dict(prep.timings),
        trigger=trigger.name, cpus=s.cpus, pinned_cpu=s.cpus - 1 if trigger.pinned else None)

    def host_fire(what: str) -> str:
        if what != "nmi":
            raise OSError(f"unknown host trigger {what!r}")
        qemu.qmp_command(sock, "inject-nmi")
        return "inject-nmi"
    watch = ConsoleWatch(policy().guest.fail_grace, host_fire)
    try:
        vm = qemu.stream(spec.command(), deadline=time.monotonic() + timeout, log=out / "console.log",
                         on_line=watch)
    finally:
        shutil.rmtree(qmp_dir, ignore_errors=True)
    split = watch.banners[1] if len(watch.banners) > 1 else len(vm.lines)
    (out / "serial-production.log").write_text("".join(ln.text + "\n" for ln in vm.lines[:split]))
    (out / "serial-capture.log").write_text("".join(ln.text + "\n" for ln in vm.lines[split:]))
    report.timings.update(watch.timings(vm))
    report.failure = diagnose(watch, vm, RunFacts(crashkernel, timeout, s.kdump.core_collector, s.kdump.failure_action,
                                                  prep.kernel.stat().st_size, prep.image.size))
    if report.failure is None:
        t = time.monotonic()
        report.checks, report.vmcore, report.crashed_task, survey = verify(prep, trigger, disk, nonce, out,
                                                                           out / "host.log")
        report.crashed_cpu = survey.get("crashed_cpu")
        report.cpu_stops = survey.get("cpus", [])
        report.timings["verify"] = round(time.monotonic() - t, 3)
        if all(c.ok for c in report.checks):
            report.timings["boot_to_verified"] = round(vm.duration + report.timings["verify"], 3)
            t = time.monotonic()
            _crash_tool(prep, trigger, nonce, report, out)
            report.timings["crash_tool"] = round(time.monotonic() - t, 3)
        bad = next((c for c in report.checks if not c.ok), None)
        if bad:
            report.failure = Failure("verify", f"verification failed: {bad.line()}")
    if not s.keep:
        disk.unlink(missing_ok=True)
    report.files = {p.name: str(p) for p in sorted(out.iterdir()) if p.is_file()}
    report.files.update({"report.json": str(out / "report.json"), "junit.xml": str(out / "junit.xml")})
    (out / "report.json").write_text(report.to_json())
    (out / "junit.xml").write_text(report.to_junit())
    return report, vm.tail(15)


def skipped_run(prep: Prepared, trigger: Trigger, why: str, out: Path) -> CrashReport:
    """A trigger this architecture cannot run: a report that says so and why, with no VM run."""
    out.mkdir(parents=True, exist_ok=True)
    s = prep.settings
    report = CrashReport(
        release=prep.release, build_id=prep.build_id, nonce="", accel=prep.accel, accel_why=prep.accel_why,
        settings={"memory": sizes.fmt(s.memory), "cpus": s.cpus, "trigger": trigger.name, "fire": trigger.fire},
        production_cmdline="", capture_cmdline="", initramfs={}, tools=prep.tools,
        trigger=trigger.name, cpus=s.cpus, skipped=f"{trigger.name} on {prep.arch.name}: {why}")
    report.files = {"report.json": str(out / "report.json"), "junit.xml": str(out / "junit.xml")}
    (out / "report.json").write_text(report.to_json())
    (out / "junit.xml").write_text(report.to_junit())
    return report


def relocate(report: CrashReport, staged: Path, final: Path) -> None:
    """Paths in the report point where the files end up, not at the staging folder."""
    def fix(p: str) -> str:
        return str(final / Path(p).relative_to(staged)) if p.startswith(str(staged)) else p
    report.files = {k: fix(v) for k, v in report.files.items()}
    if report.vmcore.get("path"):
        report.vmcore["path"] = fix(report.vmcore["path"])
    if report.crash_tool.get("files"):
        report.crash_tool["files"] = {k: fix(v) for k, v in report.crash_tool["files"].items()}


def staging(m: Manifest) -> tuple[Path, Path]:
    """A fresh staging folder beside dist/<release>/crash-test, after clearing dead runs' leftovers."""
    final = m.dist / "crash-test"
    fs.remove_leftovers(m.dist)
    staged = fs.temp_name(final)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    return staged, final


def finalize(report: CrashReport, staged: Path, final: Path, keep: bool, origin: Path | None = None) -> None:
    """Drop the work folder unless kept, point the report at its final paths, publish atomically."""
    if not keep:
        shutil.rmtree(staged / "work", ignore_errors=True)
    relocate(report, origin or staged, final)
    (staged / "report.json").write_text(report.to_json())
    fs.swap_dir(staged, final)   # dist/<release>/crash-test always describes one run


def crash_test(m: Manifest, settings: CrashTestSettings, wait: bool = True) -> MatrixReport:
    """crash-test, one run at a time per dist/<release>/ (`wait=False`: refuse at once if another holds it)."""
    with lock.exclusive(m.dist, "crash-test", wait):
        return _crash_test(m, settings)


def _crash_test(m: Manifest, settings: CrashTestSettings) -> MatrixReport:
    """The whole stage: one run per trigger, dist/<release>/crash-test/<trigger>/, one report.json and junit.xml.

    Raises CrashTestFailed if any trigger failed (every trigger still runs: one call, the whole matrix).
    """
    staged, final = staging(m)
    names = [t.name for t in settings.triggers]
    matrix = MatrixReport(m.release.release, m.build_id, settings.cpus, names)
    tails: dict[str, str] = {}
    try:
        prep = prepare(m, settings, staged / "work")
        for trigger in settings.triggers:
            why = prep.arch.crash.skip.get(trigger.name)
            if why:
                report, tails[trigger.name] = skipped_run(prep, trigger, why, staged / trigger.name), ""
            else:
                report, tails[trigger.name] = run_once(prep, trigger, settings.crashkernel, settings.timeout,
                                                       staged / trigger.name)
            relocate(report, staged / trigger.name, final / trigger.name)
            (staged / trigger.name / "report.json").write_text(report.to_json())
            matrix.runs.append(report)
        if not settings.keep:
            shutil.rmtree(staged / "work", ignore_errors=True)
        matrix.files = {"report.json": str(final / "report.json"), "junit.xml": str(final / "junit.xml")}
        (staged / "report.json").write_text(matrix.to_json())
        (staged / "junit.xml").write_text(matrix.to_junit())
        fs.swap_dir(staged, final)   # dist/<release>/crash-test always describes one call
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if not matrix.ok:
        raise CrashTestFailed(matrix, tails[matrix.failed[0].trigger])
    return matrix
