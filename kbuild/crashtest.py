"""`invoke crash-test`: boot the built kernel in QEMU, crash it, capture the vmcore, prove it is ours.

One VM run does both boots. The production kernel's /init loads the same bzImage as
capture kernel (kexec -s or -c, into the crashkernel= reservation), writes a per-run nonce
to the kernel log and triggers sysrq-c; the capture kernel's /init runs the configured
core_collector into <path>/<nonce>/vmcore-incomplete on an ext4 disk and renames it. The
host then reads the disk with debugfs and verifies the dump from every side: format and
completeness, the dump's own dmesg (sysrq line and nonce), VMCOREINFO OSRELEASE and
BUILD-ID against the manifest, and drgn opening it with the debug vmlinux and finding
sysrq_handle_crash on the crashed task's stack. A stale, foreign or truncated dump fails.
"""
from __future__ import annotations

import os
import re
import shutil
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import bootcfg, initramfs, kdumpcfg, manifest as mf, qemu, vmcore
from .checkconfig import check_config
from .crashreport import Check, CrashReport, Failure
from .crashwatch import ConsoleWatch, RunFacts, diagnose
from .crosscheck import read_values
from .errors import BadInput, CheckFailed, CommandFailed, KbuildError, MissingTool
from .hashing import file_sha256
from .proc import run
from .requirements import CONFIGS
from .source import locate
from .verify import elf_build_id

POLICY_FILE = CONFIGS / "crashtest.toml"
MIB = 1 << 20
_SIZE = re.compile(r"^(\d+)([KMG]?)$", re.I)
_UNITS = {"": 1, "K": 1 << 10, "M": MIB, "G": 1 << 30}
def parse_size(text: str | int, what: str) -> int:
    """'1G', '256M', '4096K' or bytes -> bytes."""
    m = _SIZE.match(str(text).strip())
    if not m:
        raise BadInput(f"{what} {text!r}: expected a size such as 256M or 1G")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def fmt_size(n: int) -> str:
    for unit in ("G", "M", "K"):
        if n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return str(n)


def load_policy() -> dict:
    try:
        return tomllib.loads(POLICY_FILE.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BadInput(f"{POLICY_FILE}: cannot read ({e})") from None


@dataclass(frozen=True)
class CrashTestSettings:
    """Validated flags plus the kdump settings model the guest follows."""

    kdump: kdumpcfg.KdumpSettings
    memory: int = 1 << 30
    crashkernel: str = "256M"
    kexec: str = "file"
    timeout: float = 300.0
    accel: str = "auto"
    keep: bool = False

    @classmethod
    def from_flags(cls, memory=None, crashkernel=None, kexec=None, timeout=None, accel=None, keep=False,
                   kdump_config=None) -> "CrashTestSettings":
        guest = load_policy()["guest"]
        kdump = kdumpcfg.load(Path(kdump_config) if kdump_config else None)
        mem = parse_size(memory or guest["memory"], "--memory")
        if mem < 256 * MIB:
            raise BadInput(f"--memory {memory}: at least 256M (the guest holds a crashkernel reservation)")
        ck = str(crashkernel or kdump.crashkernel).strip()
        try:
            parsed = bootcfg.parse_crashkernel(ck)  # the kernel's own grammar, shared with packaging
        except CheckFailed as e:
            raise BadInput(f"--crashkernel: {e}") from None
        if parsed.ranges:
            raise BadInput(f"--crashkernel {ck}: range syntax reserves nothing below its lower bound, "
                           "a trap in a small VM; give an explicit size such as 256M")
        size = parsed.size
        if not 0 < size < mem:
            raise BadInput(f"--crashkernel {ck}: must be above 0 and below the guest memory ({fmt_size(mem)})")
        kexec = kexec or guest["kexec"]
        if kexec not in load_policy()["loader"]:
            raise BadInput(f"--kexec {kexec!r}: choose file (kexec -s) or classic (kexec -c)")
        accel = accel or guest["accel"]
        if accel not in ("auto", "kvm", "tcg"):
            raise BadInput(f"--accel {accel!r}: choose auto, kvm or tcg")
        try:
            timeout = float(timeout if timeout is not None else guest["timeout"])
        except ValueError:
            raise BadInput(f"--timeout {timeout!r}: expected seconds") from None
        if timeout <= 0:
            raise BadInput(f"--timeout {timeout:g}: must be positive")
        return cls(kdump, mem, ck, kexec, timeout, accel, bool(keep))


class CrashTestFailed(CheckFailed):
    """The test ran and failed; carries the report (already written) and the last console lines."""

    def __init__(self, report: CrashReport, tail: str):
        self.report, self.tail = report, tail
        super().__init__(f"crash-test failed in phase {report.failure.phase}: {report.failure.message}")


def find_manifest(manifest: str | None, release: str | None, dist: str | None = None) -> Path:
    """--manifest, else dist/<release>/manifest.json, else the newest manifest under dist/."""
    if manifest:
        return Path(manifest)
    root = Path(dist or os.environ.get("KBUILD_DIST_DIR") or CONFIGS.parent / "dist")
    if release:
        return mf.path_for(root, release)
    found = sorted(root.glob(f"*/{mf.MANIFEST}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise BadInput(f"no build manifest under {root}; run `invoke build-kernel` first")
    return found[-1]


# --- before booting --------------------------------------------------------------------------

@dataclass
class Prepared:
    """Everything one or more VM runs share: checked inputs, the initramfs, the accelerator."""

    manifest_path: Path
    data: dict
    release: str
    build_id: str
    bzimage: Path
    vmlinux: Path
    settings: CrashTestSettings
    work: Path
    image: initramfs.InitramfsImage
    capture_cmdline: str
    accel: str
    accel_why: str
    tools: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)


def _artifact(data: dict, name: str) -> dict:
    for a in data.get("artifacts", []):
        if a.get("name") == name:
            return a
    raise BadInput(f"the manifest lists no {name} artifact; rebuild with `invoke build-kernel`")


def preflight() -> None:
    """Every host tool first, as one install line, before minutes are spent."""
    missing = sorted({pkg for tool, pkg in load_policy()["tools"].items()
                      if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")})
    if missing:
        raise MissingTool(f"the crash test needs: apt-get install {' '.join(missing)}")
    try:
        import drgn  # noqa: F401
    except ImportError:
        raise MissingTool("the Python module drgn is missing (pip install drgn==0.3.0; `make setup` installs it)") \
            from None


def guest_fitness(config: Path, data: dict, kexec: str) -> list[str]:
    """Refuse a kernel that cannot pass: check-config, then what the test VM needs. Returns =m modules."""
    tree_info = data.get("tree") or {}
    source = tree_info.get("path") if tree_info.get("path") and Path(tree_info["path"]).is_dir() \
        else tree_info.get("tarball")
    result = check_config(config, locate(source))
    if not result.ok:
        bad = [r for r in result.results if not r.ok]
        raise CheckFailed(f"refusing to boot: {config} fails check-config: "
                          + "; ".join(f"{r.capability}: {r.why}" for r in bad))
    modules, missing = vm_needs(read_values(config), kexec)
    if missing:
        raise CheckFailed(f"refusing to boot: {config} lacks what the crash test's VM needs: " + "; ".join(missing))
    return modules


def vm_needs(values: dict[str, str], kexec: str) -> tuple[list[str], list[str]]:
    """(modules to carry, unmet needs) for a config's values and the chosen kexec loader."""
    policy = load_policy()
    needs = dict(policy["needs"])
    for sym, reason in policy["loader"][kexec]["needs"].items():
        needs[sym] = {"reason": f"{reason} (--kexec {kexec})"}
    modules, missing = [], []
    for sym, spec in needs.items():
        v = values.get(sym, "n")
        if v == "y":
            continue
        if v == "m" and spec.get("module"):
            modules.append(spec["module"])
        else:
            missing.append(f"CONFIG_{sym}=y ({spec['reason']}; the config has {v})")
    return modules, missing


def _tool_versions() -> dict[str, str]:
    out = {}
    for name, cmd in (("qemu", [qemu.QEMU, "--version"]), ("kexec", ["kexec", "--version"]),
                      ("makedumpfile", ["makedumpfile", "-v"])):
        try:
            out[name] = run(cmd, check=False).output.strip().splitlines()[0]
        except (KbuildError, IndexError):
            out[name] = "unknown"
    import drgn
    out["drgn"] = drgn.__version__
    return out


def prepare(manifest_path: Path, settings: CrashTestSettings, work: Path) -> Prepared:
    t0 = time.monotonic()
    data = mf.read(manifest_path)
    release = data["release"]["release"]
    preflight()
    arts = {n: _artifact(data, n) for n in ("bzImage", "vmlinux", "config")}
    work.mkdir(parents=True, exist_ok=True)
    bzimage = work / "bzImage"  # a copy: what boots is what was hashed, even if a rebuild starts now
    shutil.copyfile(arts["bzImage"]["path"], bzimage)
    for name, a in arts.items():
        p = bzimage if name == "bzImage" else Path(a["path"])
        if not p.is_file() or file_sha256(p) != a["sha256"]:
            raise BadInput(f"{a['path']}: {name} changed or vanished since {manifest_path} was written "
                           "(a rebuild in progress?); run `invoke build-kernel` again")
    config = Path(arts["config"]["path"])
    module_names = guest_fitness(config, data, settings.kexec)
    modules: tuple[str, ...] = ()
    moddir = None
    if module_names:
        dep = _artifact(data, "modules/modules.dep")
        moddir = Path(dep["path"]).parent
        modules = tuple(initramfs.resolve_modules(Path(dep["path"]), module_names))
    k = settings.kdump
    console = load_policy()["guest"]["console"]
    capture = f"{k.capture_cmdline(data['release']['cpu_limit_arg'])} {console} panic=-1 rdinit=/init"
    conf = initramfs.CaptureConfig(load_policy()["loader"][settings.kexec]["flag"], capture, k.path,
                                   k.core_collector, k.failure_action, modules)
    epoch = int((data.get("build") or {}).get("env", {}).get("SOURCE_DATE_EPOCH", 0))
    image = initramfs.build(work / "initrd.img", conf, modules_root=moddir, mtime=epoch)
    timings = {"prepare": round(time.monotonic() - t0, 3)}
    t = time.monotonic()
    guest = load_policy()["guest"]
    accel, why = qemu.choose_accel(settings.accel, bzimage, guest["kvm_probe_seconds"], work / "kvm-probe.log")
    timings["accel_probe"] = round(time.monotonic() - t, 3)
    return Prepared(manifest_path, data, release, data["build"]["build_id"], bzimage,
                    Path(arts["vmlinux"]["path"]), settings, work, image, capture, accel, why,
                    _tool_versions(), timings)


def make_disk(prep: Prepared, disk: Path) -> None:
    """An ext4 image holding /boot (what kexec loads) and the empty dump path, made without mounting."""
    tree = disk.with_suffix(".d")
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "boot").mkdir(parents=True)
    (tree / prep.settings.kdump.path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(prep.bzimage, tree / "boot" / "vmlinuz")
    shutil.copyfile(prep.image.path, tree / "boot" / "initrd.img")
    headroom = parse_size(load_policy()["guest"]["disk_headroom"], "disk_headroom")
    disk.unlink(missing_ok=True)
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "kdump", "-E", "root_owner=0:0", "-d", str(tree),
         str(disk), f"{(prep.settings.memory + headroom) // MIB}M"], package="e2fsprogs")
    shutil.rmtree(tree)


# --- after the VM -----------------------------------------------------------------------------

def _debugfs(disk: Path, request: str, log: Path) -> str:
    return run(["debugfs", "-R", request, str(disk)], log=log, check=False, package="e2fsprogs").output


def verify(prep: Prepared, disk: Path, nonce: str, out: Path, log: Path) -> tuple[list[Check], dict, dict]:
    """Take the vmcore off the dump disk (debugfs, no mount) and check it. Returns checks, vmcore, task."""
    k = prep.settings.kdump
    where = f"{k.path.rstrip('/')}/{nonce}"
    listing = _debugfs(disk, f"ls -p {where}", log)
    names = sorted(m.group(1) for m in re.finditer(r"^/\d+/1\d{5}/\d+/\d+/([^/]+)/", listing, re.M))
    saved = Check("vmcore-saved", names == ["vmcore"], f"{where} holds only vmcore (renamed when complete)",
                  ", ".join(names) or "no files")
    if "vmcore" not in names:
        return [saved], {}, {}
    target = out / "vmcore"
    target.unlink(missing_ok=True)
    _debugfs(disk, f"dump {where}/vmcore {target}", log)
    expect = Expected(nonce, prep.release, prep.build_id, prep.vmlinux, k.core_collector, prep.settings.memory)
    checks, info, task = check_vmcore(target, expect, out, log)
    return [saved, *checks], info, task


@dataclass(frozen=True)
class Expected:
    """What a dump from this run must show."""

    nonce: str
    release: str
    build_id: str
    vmlinux: Path
    core_collector: str
    memory: int


def check_vmcore(target: Path, want: Expected, out: Path, log: Path | None = None) -> tuple[list[Check], dict, dict]:
    """Every check on a vmcore file, in order; each records expected and actual."""
    checks: list[Check] = []
    task: dict = {}
    dump = vmcore.read_dump(target)
    info = {"path": str(target), "format": dump.format, "size": dump.size, "ram_bytes": want.memory,
            "ram_share": round(dump.size / want.memory, 5), "dump_level": dump.dump_level}
    fmt = vmcore.expected_format(want.core_collector)
    checks.append(Check("vmcore-format", dump.format == fmt, f"{fmt} (core_collector: {want.core_collector})",
                        dump.format))
    checks.append(Check("vmcore-complete", dump.complete, "complete", dump.why_incomplete or "complete"))
    if dump.format not in ("kdump-compressed", "elf"):
        return checks, info, task
    try:
        dmesg = vmcore.dump_dmesg(target, out / "dmesg.txt", log)
    except CommandFailed as e:
        dmesg = ""
        checks.append(Check("dmesg-readable", False, "makedumpfile --dump-dmesg succeeds", str(e).splitlines()[0]))
    checks.append(Check("dmesg-sysrq", "sysrq: Trigger a crash" in dmesg,
                        "'sysrq: Trigger a crash' in the dump's dmesg", _grep(dmesg, "sysrq") or "absent"))
    nonce_line = f"crash-test nonce {want.nonce}"
    checks.append(Check("dmesg-nonce", nonce_line in dmesg, f"'{nonce_line}' in the dump's dmesg",
                        _grep(dmesg, "crash-test nonce") or "absent"))
    osrelease = dump.vmcoreinfo.get("OSRELEASE", "absent")
    checks.append(Check("osrelease", osrelease == want.release, want.release, osrelease))
    dump_id = dump.vmcoreinfo.get("BUILD-ID", "absent")
    file_id = elf_build_id(want.vmlinux)
    checks.append(Check("build-id", dump_id == want.build_id == file_id, f"{want.build_id} (manifest and vmlinux)",
                        f"dump {dump_id}" + ("" if file_id == want.build_id else f", vmlinux file {file_id}")))
    view = vmcore.open_with_debuginfo(target, want.vmlinux)
    checks.append(Check("debug-vmlinux-opens", view.opened and view.release == want.release,
                        f"drgn opens the dump with {want.vmlinux} and reads release {want.release}",
                        view.error or f"opened, release {view.release}"))
    if view.opened:
        task = {"pid": view.pid, "comm": view.task, "stack": view.stack}
        checks.append(Check("crash-stack", "sysrq_handle_crash" in view.stack,
                            "sysrq_handle_crash on the crashed task's stack",
                            f"{view.task} (pid {view.pid}): " + " <- ".join(view.stack[:8])))
    return checks, info, task


def _grep(text: str, needle: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if needle in ln), "")


# --- one run, and the entry points -----------------------------------------------------------

def run_once(prep: Prepared, crashkernel: str, timeout: float, out: Path) -> tuple[CrashReport, str]:
    """Boot, crash, capture and verify once; files go to `out`. Returns the report and the console tail."""
    out.mkdir(parents=True, exist_ok=True)
    s = prep.settings
    nonce = uuid.uuid4().hex
    disk = prep.work / "dump.img"
    make_disk(prep, disk)
    console = load_policy()["guest"]["console"]
    production = f"{console} crashkernel={crashkernel} panic=-1 rdinit=/init crashtest.nonce={nonce}"
    spec = qemu.VmSpec(prep.bzimage, prep.image.path, production, disk, f"{s.memory // MIB}M", prep.accel)
    report = CrashReport(
        release=prep.release, build_id=prep.build_id, nonce=nonce, accel=prep.accel, accel_why=prep.accel_why,
        settings={"memory": fmt_size(s.memory), "crashkernel": crashkernel, "kexec": s.kexec, "timeout": timeout,
                  "kdump": {"path": s.kdump.path, "core_collector": s.kdump.core_collector,
                            "failure_action": s.kdump.failure_action, "cmdline_append": s.kdump.cmdline_append}},
        production_cmdline=production, capture_cmdline=f"{prep.capture_cmdline} crashtest.nonce={nonce}",
        initramfs={"size": prep.image.size, "sha256": prep.image.sha256, "uncompressed": prep.image.uncompressed,
                   "entries": prep.image.entries, "programs": prep.image.programs},
        qemu=spec.command(), tools=prep.tools, timings=dict(prep.timings))
    watch = ConsoleWatch(load_policy()["guest"]["fail_grace"])
    vm = qemu.stream(spec.command(), deadline=time.monotonic() + timeout, log=out / "console.log", on_line=watch)
    split = watch.banners[1] if len(watch.banners) > 1 else len(vm.lines)
    (out / "serial-production.log").write_text("".join(ln.text + "\n" for ln in vm.lines[:split]))
    (out / "serial-capture.log").write_text("".join(ln.text + "\n" for ln in vm.lines[split:]))
    report.timings.update(watch.timings(vm))
    report.failure = diagnose(watch, vm, RunFacts(crashkernel, timeout, s.kdump.core_collector, s.kdump.failure_action,
                                                  prep.bzimage.stat().st_size, prep.image.size))
    if report.failure is None:
        t = time.monotonic()
        report.checks, report.vmcore, report.crashed_task = verify(prep, disk, nonce, out, out / "host.log")
        report.timings["verify"] = round(time.monotonic() - t, 3)
        bad = next((c for c in report.checks if not c.ok), None)
        if bad:
            report.failure = Failure("verify", f"verification failed: {bad.line()}")
        else:
            report.timings["boot_to_verified"] = round(vm.duration + report.timings["verify"], 3)
    if not s.keep:
        disk.unlink(missing_ok=True)
    report.files = {p.name: str(p) for p in sorted(out.iterdir()) if p.is_file()}
    report.files.update({"report.json": str(out / "report.json"), "junit.xml": str(out / "junit.xml")})
    (out / "report.json").write_text(report.to_json())
    (out / "junit.xml").write_text(report.to_junit())
    return report, vm.tail(15)


def publish(staged: Path, final: Path) -> None:
    """Replace dist/<release>/crash-test as a whole, so it always describes one run."""
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    if final.exists():
        os.replace(final, old)
    os.replace(staged, final)
    shutil.rmtree(old, ignore_errors=True)


def relocate(report: CrashReport, staged: Path, final: Path) -> None:
    """Paths in the report point where the files end up, not at the staging folder."""
    def fix(p: str) -> str:
        return str(final / Path(p).relative_to(staged)) if p.startswith(str(staged)) else p
    report.files = {k: fix(v) for k, v in report.files.items()}
    if report.vmcore.get("path"):
        report.vmcore["path"] = fix(report.vmcore["path"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def stage(manifest_path: Path) -> tuple[Path, Path]:
    final = manifest_path.parent / "crash-test"
    for stale in manifest_path.parent.glob(".crash-test.*"):  # left by a run that was killed
        m = re.match(r"\.crash-test\.(\d+)\.(tmp|old)$", stale.name)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(stale, ignore_errors=True)
    staged = manifest_path.parent / f".crash-test.{os.getpid()}.tmp"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    return staged, final


def finalize(report: CrashReport, staged: Path, final: Path, keep: bool, origin: Path | None = None) -> None:
    """Drop the work folder unless kept, point the report at its final paths, publish atomically."""
    if not keep:
        shutil.rmtree(staged / "work", ignore_errors=True)
    relocate(report, origin or staged, final)
    (staged / "report.json").write_text(report.to_json())
    publish(staged, final)


def crash_test(manifest_path: Path, settings: CrashTestSettings) -> CrashReport:
    """The whole stage; writes dist/<release>/crash-test/. Raises CrashTestFailed on a failed test."""
    staged, final = stage(Path(manifest_path))
    try:
        prep = prepare(Path(manifest_path), settings, staged / "work")
        report, tail = run_once(prep, settings.crashkernel, settings.timeout, staged)
        finalize(report, staged, final, settings.keep)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if not report.ok:
        raise CrashTestFailed(report, tail)
    return report
