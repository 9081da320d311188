"""Read kdump-tools' result off the disk (debugfs, no mount) and prove the dump is this run's.

kdump-tools writes /var/crash/<YYYYMMDDHHMM>/dump.<stamp> in makedumpfile's flattened format
(it always adds -F) and dmesg.<stamp>; makedumpfile -R rebuilds a readable dump. Checks: the
files are there; kdump-tools ran makedumpfile with the MAKEDUMP_ARGS our package configured and
the dump header agrees; the dump's dmesg has the nonce and the sysrq line; VMCOREINFO names our
release and build-id; our dbg package's vmlinux opens it with drgn, and with crash where crash
supports the kernel, with sysrq_handle_crash on the crashing stack.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from kbuild.build.verify import read_build_id
from kbuild.core import makedumpfile
from kbuild.core.errors import CommandFailed, MissingTool
from kbuild.core.proc import run
from kbuild.crashtest import vmcore
from kbuild.crashtest.report import Check
from kbuild.installtest import disk
from kbuild.installtest.guest import NONCE_LINE

SYSRQ_LINE = "sysrq: Trigger a crash"


@dataclass(frozen=True)
class Expected:
    nonce: str
    release: str
    build_id: str
    vmlinux: Path                    # our dbg package's /usr/lib/debug/boot/vmlinux-<release>
    coredir: str                     # KDUMP_COREDIR
    makedump_args: str               # MAKEDUMP_ARGS our package configured
    crash_supported: str             # "" if crash can read this kernel, else why not


@dataclass
class Verified:
    checks: list[Check] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)   # name -> host path
    vmcore: dict = field(default_factory=dict)
    crashed_task: dict = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # check -> reason

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def kdump_args(makedump_args: str) -> str:
    """What kdump-config runs: MAKEDUMP_ARGS with -F appended unless it starts with -F."""
    return makedump_args if makedump_args.startswith("-F") else f"{makedump_args} -F"


def verify(image: Path, want: Expected, ran_with: str | None, out: Path, log: Path) -> Verified:
    v = Verified()
    stamps = [e for e in disk.listdir(image, want.coredir, log) if e.is_dir and re.fullmatch(r"2\d{11}", e.name)]
    names = [e.name for e in disk.listdir(image, f"{want.coredir}/{stamps[0].name}", log)] if len(stamps) == 1 else []
    stamp = stamps[0].name if len(stamps) == 1 else ""
    dump_name, dmesg_name = f"dump.{stamp}", f"dmesg.{stamp}"
    v.checks.append(Check("dump-saved", len(stamps) == 1 and dump_name in names and dmesg_name in names,
                          f"{want.coredir}/<YYYYMMDDHHMM>/ with dump.<stamp> and dmesg.<stamp>, once",
                          f"{[s.name for s in stamps]}: {sorted(names)}" if stamps else "no dump folder"))
    if not v.checks[-1].ok:
        return v
    where = f"{want.coredir}/{stamp}"
    flat = disk.fetch(image, f"{where}/{dump_name}", out / dump_name, log)
    saved_dmesg = disk.fetch(image, f"{where}/{dmesg_name}", out / dmesg_name, log)
    v.files.update({"dump": str(flat), "kdump_dmesg": str(saved_dmesg)})
    expect_args = kdump_args(want.makedump_args)
    v.checks.append(Check("makedump-args", ran_with == expect_args,
                          f"kdump-tools ran `makedumpfile {expect_args}` (MAKEDUMP_ARGS from our package)",
                          f"makedumpfile {ran_with}" if ran_with is not None else "no makedumpfile line on the console"))
    raw = vmcore.read_dump(flat)
    v.checks.append(Check("dump-format", raw.format == "flattened", "flattened (kdump-tools adds -F)", raw.format))
    target = out / "vmcore"
    try:
        target.unlink(missing_ok=True)
        rebuild(flat, target, log)
    except CommandFailed as e:
        v.checks.append(Check("dump-rebuilt", False, "makedumpfile -R rebuilds the dump", str(e).splitlines()[0]))
        return v
    dump = vmcore.read_dump(target)
    collector = makedumpfile.parse(f"makedumpfile {want.makedump_args}")
    level = collector.dump_levels[0] if collector.dump_levels else 0
    v.files["vmcore"] = str(target)
    v.vmcore = {"path": str(target), "flattened_bytes": flat.stat().st_size, "bytes": dump.size,
                "format": dump.format, "dump_level": dump.dump_level}
    v.checks.append(Check("dump-rebuilt", dump.format == "kdump-compressed" and dump.complete
                          and dump.dump_level == level,
                          f"makedumpfile -R gives a complete kdump-compressed dump with dump level {level}",
                          f"{dump.format}, {'complete' if dump.complete else dump.why_incomplete}, "
                          f"dump level {dump.dump_level}"))
    dmesg = _dmesg(target, out / "dmesg.txt", log, v)
    nonce_line = NONCE_LINE.format(nonce=want.nonce)
    v.checks.append(Check("dmesg-nonce", nonce_line in dmesg, f"'{nonce_line}' in the dump's dmesg",
                          _grep(dmesg, "install-test nonce") or "absent"))
    v.checks.append(Check("dmesg-sysrq", SYSRQ_LINE in dmesg, f"'{SYSRQ_LINE}' in the dump's dmesg",
                          _grep(dmesg, "sysrq") or "absent"))
    kd = saved_dmesg.read_text(errors="replace") if saved_dmesg else ""
    v.checks.append(Check("kdump-dmesg", nonce_line in kd and SYSRQ_LINE in kd,
                          f"kdump-tools' {dmesg_name} has the nonce and the sysrq line",
                          "both" if nonce_line in kd and SYSRQ_LINE in kd else "missing"))
    osrelease = dump.vmcoreinfo.get("OSRELEASE", "absent")
    v.checks.append(Check("osrelease", osrelease == want.release, want.release, osrelease))
    dump_id, file_id = dump.vmcoreinfo.get("BUILD-ID", "absent"), read_build_id(want.vmlinux)
    v.checks.append(Check("build-id", dump_id == want.build_id == file_id,
                          f"{want.build_id} (manifest and our dbg package's vmlinux)",
                          f"dump {dump_id}, dbg vmlinux {file_id}"))
    view = vmcore.open_with_debuginfo(target, want.vmlinux)
    v.checks.append(Check("drgn-opens", view.opened and view.release == want.release,
                          f"drgn opens the dump with the dbg package's vmlinux and reads {want.release}",
                          view.error or f"opened, release {view.release}"))
    if view.opened:
        v.crashed_task = {"pid": view.pid, "comm": view.task, "stack": view.stack}
        v.checks.append(Check("drgn-stack", "sysrq_handle_crash" in view.stack,
                              "sysrq_handle_crash on the crashing task's stack (drgn)",
                              f"{view.task} (pid {view.pid}): " + " <- ".join(view.stack[:8])))
    if want.crash_supported:
        v.skipped["crash-bt"] = want.crash_supported
    else:
        bt = crash_bt(want.vmlinux, target, log)
        v.files["crash_bt"] = str(out / "crash-bt.txt")
        (out / "crash-bt.txt").write_text(bt)
        v.checks.append(Check("crash-bt", "sysrq_handle_crash" in bt and "PANIC:" in bt,
                              "crash -s: `sys` shows the PANIC and `bt` has sysrq_handle_crash",
                              _grep(bt, "PANIC:") + " / " + (_grep(bt, "sysrq_handle_crash") or "no sysrq_handle_crash")))
    return v


def rebuild(flat: Path, target: Path, log: Path) -> None:
    """makedumpfile -R reads the flattened stream on stdin."""
    run(["sh", "-c", 'exec makedumpfile -R "$1" < "$2"', "sh", str(target), str(flat)], log=log,
        package="makedumpfile")


def crash_bt(vmlinux: Path, dump: Path, log: Path) -> str:
    """`sys` and `bt` from the crash utility, batch mode."""
    script = dump.with_name("crash.cmds")
    script.write_text("sys\nbt\nquit\n")
    return run(["crash", "-s", "-i", str(script), str(vmlinux), str(dump)], log=log, check=False,
               package="crash").output


def _dmesg(target: Path, out: Path, log: Path, v: Verified) -> str:
    try:
        return vmcore.dump_dmesg(target, out, log)
    except CommandFailed as e:
        v.checks.append(Check("dmesg-readable", False, "makedumpfile --dump-dmesg succeeds",
                              str(e).splitlines()[0]))
        return ""


def _grep(text: str, needle: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if needle in ln), "")


def crash_support(config_values: dict[str, str], version: tuple[int, int], up_to: str | None) -> str:
    """'' if Debian's crash can open this kernel's dumps, else the reason for a named skip.
    `up_to`: the newest kernel the installed crash reads (configs/crashtest.toml [crash_tool]), if known."""
    if config_values.get("SMP", "n") != "y":
        return "crash 8.0.2 cannot open dumps of uniprocessor kernels (no task_struct.cpu)"
    if up_to is None:
        return ""
    major, minor = (int(x) for x in up_to.split(".")[:2])
    if version > (major, minor):
        return f"Debian 12's crash knows Linux up to {up_to}; this is {version[0]}.{version[1]}"
    return ""


def require_drgn() -> None:
    try:
        import drgn  # noqa: F401
    except ImportError:
        raise MissingTool("the Python module drgn is missing; `make setup` installs it") from None
