"""The crash test's initramfs: Debian's own busybox, kexec and makedumpfile in a deterministic cpio.

One image serves both boots. /init looks for /proc/vmcore: absent, it is the production
kernel and loads the capture kernel, then crashes; present, it is the capture kernel and
runs the configured core_collector. What varies per run (the nonce) comes on the kernel
command line, so the same settings always give byte-identical images (sorted entries,
fixed mtimes, inode numbers in order, gzip with mtime 0).

The programs are the host's own for the host's architecture (x86_64 here); for another
(arm64) they are Debian's packages of that architecture, unpacked by kbuild.crashtest.debs,
whose busybox cannot be run on the host to list its applets: /init installs them instead.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path

from kbuild.core import arch as archmod, fs, tools
from kbuild.core.errors import BadInput, MissingTool
from kbuild.core.proc import run
from kbuild.crashtest import debs

LOADER = archmod.get().crash.loader   # the host's (x86_64)
# What the guest's /init needs from the host, and the Debian package of each.
PROGRAMS = ("busybox", "kexec", "makedumpfile")   # packages: configs/tools.toml
MARK = "KDUMPTEST:"

# POSIX sh run by busybox. Every line the host acts on starts with MARK (kbuild/crashtest.py
# parses them); stdout and stderr are the serial console.
INIT = r"""#!/bin/sh
# /init of the crash-test initramfs (written by kbuild/initramfs.py; settings in /etc/crashtest.conf)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export LD_LIBRARY_PATH=/lib/@MULTIARCH@:/usr/lib/@MULTIARCH@
# a foreign busybox's applets could not be listed on the host: it installs its own links
[ -e /bin/mount ] || /bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
. /etc/crashtest.conf
say() { echo "KDUMPTEST: $*"; }
uptime_s() { read -r u _ < /proc/uptime; echo "$u"; }
nonce=$(sed -n 's/.*crashtest\.nonce=\([0-9a-f]*\).*/\1/p' /proc/cmdline)
for m in $MODULES; do insmod "/lib/modules/$m" || say "FAIL insmod $m"; done

wait_disk() {
    n=0
    while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do usleep 100000; n=$((n + 1)); done
}

failure() {
    say "FAIL $1; failure_action=$FAILURE_ACTION"
    sync
    umount /mnt 2>/dev/null
    case "$FAILURE_ACTION" in
        halt) halt -f ;;
        poweroff) poweroff -f ;;
        shell) exec sh ;;
        dump_to_rootfs) say "dump_to_rootfs: the test VM has no root file system"; reboot -f ;;
        *) reboot -f ;;
    esac
    sleep 3600
}

production() {
    say "production init uptime=$(uptime_s)"
    say "crashkernel bytes=$(cat /sys/kernel/kexec_crash_size)"
    wait_disk
    mount -t ext4 /dev/vda /mnt || { say "FAIL cannot mount the dump disk /dev/vda"; reboot -f; }
    say "kexec-load start"
    kexec $KEXEC_FLAG -p /mnt/boot/vmlinuz --initrd=/mnt/boot/initrd.img \
        --append="$CAPTURE_CMDLINE crashtest.nonce=$nonce" 2>&1
    rc=$?
    umount /mnt
    say "kexec-load rc=$rc loaded=$(cat /sys/kernel/kexec_crash_loaded)"
    if [ "$(cat /sys/kernel/kexec_crash_loaded)" != 1 ]; then
        say "FAIL capture kernel not loaded"
        reboot -f
    fi
    echo "crash-test nonce $nonce" > /dev/kmsg
    fire_trigger
}

# The crash path comes on the command line (crashtest.trigger/fire/sysctl/settle), so one
# image serves every trigger. A pinned trigger runs on the last online CPU.
arg() { sed -n "s/.*crashtest\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
fire_trigger() {
    trigger=$(arg trigger); fire=$(arg fire); settle=$(arg settle)
    cpu=$(( $(nproc) - 1 ))
    # The boot's own switch from tsc-early to the refined tsc (about 1 s after boot) runs
    # stop_machine, which needs every CPU: a trigger that holds a CPU (a soft lockup) would make
    # the waiting CPU report the lockup instead. Let it finish first (at most 5 s).
    n=0
    cs=/sys/devices/system/clocksource/clocksource0/current_clocksource
    while [ "$(cat $cs 2> /dev/null)" = tsc-early ] && [ $n -lt 50 ]; do usleep 100000; n=$((n + 1)); done
    # Without an RTC driver (arm64 has no other persistent clock) the wall clock starts at 0 at
    # boot: a crash in the first second writes VMCOREINFO CRASHTIME=0, which makedumpfile refuses
    # ("Invalid data ... CRASHTIME=0"). Fire no earlier than wall-clock second 2 (x86: at once).
    n=0
    while [ "$(date +%s)" -lt 2 ] && [ $n -lt 30 ]; do usleep 100000; n=$((n + 1)); done
    say "cpus online=$(nproc) clocksource=$(cat $cs 2> /dev/null)"
    for s in $(arg sysctl | tr , ' '); do
        sysctl -w "$s" > /dev/null || { say "FAIL cannot set sysctl $s"; reboot -f; }
    done
    case "$fire" in
        sysrq)
            say "crashing trigger=$trigger cpu=$cpu"
            taskset -c "$cpu" sh -c 'echo c > /proc/sysrq-trigger' &
            ;;
        lkdtm:*)
            for m in $TRIGGER_MODULES; do insmod "/lib/modules/$m" || { say "FAIL insmod $m"; reboot -f; }; done
            mount -t debugfs debugfs /sys/kernel/debug 2> /dev/null
            [ -w /sys/kernel/debug/provoke-crash/DIRECT ] || { say "FAIL no LKDTM trigger file"; reboot -f; }
            say "crashing trigger=$trigger cpu=$cpu"
            taskset -c "$cpu" sh -c "echo ${fire#lkdtm:} > /sys/kernel/debug/provoke-crash/DIRECT" &
            ;;
        nmi)
            say "crashing trigger=$trigger cpu=any host=nmi"
            ;;
        *)
            say "FAIL unknown trigger $fire"; reboot -f ;;
    esac
    sleep "$settle"
    say "FAIL the trigger did not crash the kernel ($trigger, ${settle}s after it fired)"
    reboot -f
}

capture() {
    say "capture init uptime=$(uptime_s)"
    wait_disk
    mount -t ext4 /dev/vda /mnt || failure "cannot mount the dump disk /dev/vda"
    dir="$DUMP_PATH/$nonce"
    mkdir -p "/mnt$dir" || failure "cannot create $dir on the dump disk"
    say "dump start"
    set -f
    $CORE_COLLECTOR /proc/vmcore "/mnt$dir/vmcore-incomplete"
    rc=$?
    set +f
    [ $rc = 0 ] || failure "collector exited $rc"
    [ -f "/mnt$dir/vmcore-incomplete" ] || failure "collector exited 0 but wrote no vmcore-incomplete"
    mv "/mnt$dir/vmcore-incomplete" "/mnt$dir/vmcore" || failure "cannot rename vmcore-incomplete"
    size=$(stat -c %s "/mnt$dir/vmcore")
    sync
    umount /mnt || failure "cannot unmount the dump disk"
    say "dump complete path=$dir/vmcore bytes=$size"
    reboot -f
}

if [ -e /proc/vmcore ]; then capture; else production; fi
"""


@dataclass(frozen=True)
class CaptureConfig:
    """What /init reads from /etc/crashtest.conf (all of it from the settings, none per run)."""

    kexec_flag: str            # -s or -c
    capture_cmdline: str       # without the nonce
    dump_path: str
    core_collector: str
    failure_action: str
    modules: tuple[str, ...] = ()  # paths under /lib/modules, in load order
    trigger_modules: tuple[str, ...] = ()  # loaded only before an LKDTM trigger (lkdtm.ko and its deps)

    def render(self) -> str:
        q = shlex.quote
        return (f"KEXEC_FLAG={q(self.kexec_flag)}\nCAPTURE_CMDLINE={q(self.capture_cmdline)}\n"
                f"DUMP_PATH={q(self.dump_path)}\nCORE_COLLECTOR={q(self.core_collector)}\n"
                f"FAILURE_ACTION={q(self.failure_action)}\nMODULES={q(' '.join(self.modules))}\n"
                f"TRIGGER_MODULES={q(' '.join(self.trigger_modules))}\n")


@dataclass(frozen=True)
class InitramfsImage:
    path: Path
    size: int
    sha256: str
    uncompressed: int
    entries: int
    programs: dict[str, str] = field(default_factory=dict)  # name -> host path


def host_program(name: str) -> Path:
    found = tools.which(name)
    if not found:
        raise MissingTool(f"`{name}` is not installed (install the Debian package `{tools.package_for(name)}`); "
                          "`invoke doctor` lists everything needed")
    return Path(found)


def shared_libraries(program: Path) -> list[str]:
    """Absolute paths the dynamic loader resolves for `program` (ldd), loader included."""
    out = run(["ldd", str(program)], check=False).output
    if "not a dynamic executable" in out or "statically linked" in out:
        return []
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*(?:\S+ => )?(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
        elif "=> not found" in line:
            raise BadInput(f"{program}: needs {line.split()[0]}, which is not installed")
    return libs


def resolve_modules(modules_dep: Path, wanted: list[str]) -> list[str]:
    """modules.dep paths for `wanted` module names, each after its own dependencies."""
    deps: dict[str, list[str]] = {}
    for line in modules_dep.read_text().splitlines():
        if ":" in line:
            mod, rest = line.split(":", 1)
            deps[mod.strip()] = rest.split()
    by_name = {re.sub(r"\.ko(\.\w+)?$", "", os.path.basename(m)).replace("-", "_"): m for m in deps}
    order: list[str] = []

    def visit(path: str, chain: tuple[str, ...]) -> None:
        if path in order:
            return
        if path in chain:
            raise BadInput(f"{modules_dep}: circular module dependency through {path}")
        for d in deps.get(path, []):
            visit(d, chain + (path,))
        order.append(path)

    for name in wanted:
        path = by_name.get(name.replace("-", "_"))
        if path is None:
            raise BadInput(f"{modules_dep}: no module {name}.ko, but the kernel config builds it as =m")
        visit(path, ())
    for path in order:
        if not path.endswith(".ko"):
            raise BadInput(f"{path}: compressed module; busybox insmod in the capture initramfs "
                           "needs plain .ko files (set CONFIG_MODULE_COMPRESS_NONE=y)")
    return order


class _Cpio:
    """newc writer: the format the kernel unpacks (Documentation/driver-api/early-userspace)."""

    def __init__(self, mtime: int):
        self.mtime, self.ino, self.chunks, self.raw = mtime, 0, [], 0

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self.ino += 1
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = (self.ino, mode, 0, 0, nlink, self.mtime, len(data), 0, 0, rdev[0], rdev[1],
                  len(name) + 1, 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
        self.chunks += [header, b"\0" * (-len(header) % 4), data, b"\0" * (-len(data) % 4)]

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self.chunks)


@dataclass
class Programs:
    """The initramfs's programs and libraries (guest path -> file on the host), for one architecture."""

    programs: dict[str, Path]                 # busybox, kexec, makedumpfile
    libraries: dict[str, Path]                # the loader and every library they need
    applets: list[str]                        # busybox applets to link in /bin ("sh" only: /init installs the rest)
    multiarch: str
    source: str                               # "host" or the unpacked .deb root


def host_programs() -> Programs:
    """The host's own programs and what `ldd` says they load."""
    progs = {name: host_program(name) for name in PROGRAMS}
    libs: dict[str, Path] = {}
    for name in ("kexec", "makedumpfile"):
        for lib in shared_libraries(progs[name]):
            libs[lib] = Path(lib)
    libs[LOADER] = Path(LOADER)
    applets = [a for a in run([str(progs["busybox"]), "--list"]).output.split()
               if re.fullmatch(r"[\w.\[-]+", a) and a != "busybox"]
    return Programs(progs, libs, applets, archmod.get().multiarch, "host")


def foreign_programs(a: archmod.Arch, log: Path | None = None) -> Programs:
    """`a`'s programs from its Debian packages; every DT_NEEDED must resolve inside them (else exit 2)."""
    root = debs.unpack(a, log)
    progs = {name: debs.inside(root, "/" + rel) for name, rel in debs.PROGRAM_PATHS.items()}
    absent = [str(p) for p in progs.values() if not p.is_file()]
    if absent:
        raise BadInput(f"the {a.name} capture packages lack {', '.join(absent)} (configs/arches.toml capture_debs)")
    found = debs.resolve(root, [progs["kexec"], progs["makedumpfile"], progs["busybox"]], a.multiarch)
    if found.missing:
        raise BadInput(f"{a.name} capture programs need {', '.join(found.missing)}, which none of "
                       f"[{a.name}.crash] capture_debs ships (configs/arches.toml): add its package")
    loader = debs.inside(root, a.crash.loader)
    if not loader.is_file():
        raise BadInput(f"{a.crash.loader} is not in the {a.name} capture packages (libc6:{a.deb_arch})")
    return Programs(progs, {**found.libraries, a.crash.loader: loader}, ["sh"], a.multiarch, str(root))


def programs_for(a: archmod.Arch, log: Path | None = None) -> Programs:
    return host_programs() if a.host == os.uname().machine else foreign_programs(a, log)


def build(out: Path, conf: CaptureConfig, *, modules_root: Path | None = None, mtime: int = 0,
          programs: Programs | None = None) -> InitramfsImage:
    """Write `out` (gzip cpio); `modules_root` is lib/modules/<release> when conf.modules is set.

    `programs` defaults to the host's own (host_programs).
    """
    found = programs or host_programs()
    progs = found.programs
    files: dict[str, tuple] = {"dev/console": (stat.S_IFCHR | 0o600, b"", (5, 1))}  # path -> cpio.add args
    dirs = {"bin", "dev", "etc", "mnt", "proc", "sys", "tmp", "root", "lib", "lib64", "usr", "usr/bin",
            "usr/sbin", "sbin"}

    def put(path: str, mode: int, data: bytes) -> None:
        path = path.lstrip("/")
        files[path] = (mode, data)
        parent = os.path.dirname(path)
        while parent:
            dirs.add(parent)
            parent = os.path.dirname(parent)

    def put_file(dest: str, src: Path | str, mode: int | None = None) -> None:
        real = Path(os.path.realpath(src))
        put(dest, mode if mode is not None else (stat.S_IFREG | (0o755 if os.access(real, os.X_OK) else 0o644)),
            real.read_bytes())

    put_file("/bin/busybox", progs["busybox"], stat.S_IFREG | 0o755)
    for applet in found.applets:
        put(f"/bin/{applet}", stat.S_IFLNK | 0o777, b"busybox")
    for name in ("kexec", "makedumpfile"):
        put_file(f"/usr/sbin/{name}" if name == "kexec" else f"/usr/bin/{name}", progs[name],
                 stat.S_IFREG | 0o755)
    for dest, src in sorted(found.libraries.items()):
        put_file(dest, src, stat.S_IFREG | 0o755 if dest.rsplit("/", 1)[-1].startswith("ld-") else None)
    for rel in dict.fromkeys(conf.modules + conf.trigger_modules):
        put_file(f"/lib/modules/{rel}", modules_root / rel, stat.S_IFREG | 0o644)
    put("/init", stat.S_IFREG | 0o755, INIT.replace("@MULTIARCH@", found.multiarch).encode())
    put("/etc/crashtest.conf", stat.S_IFREG | 0o644, conf.render().encode())

    cpio = _Cpio(mtime)
    for path in sorted(dirs | set(files)):
        if path in files:
            cpio.add(path, *files[path])
        else:
            cpio.add(path, stat.S_IFDIR | 0o755)
    raw = cpio.finish()
    data = gzip.compress(raw, compresslevel=6, mtime=0)
    fs.write_atomic(out, data)
    return InitramfsImage(out, len(data), hashlib.sha256(data).hexdigest(), len(raw), cpio.ino - 1,
                          {k: str(v) for k, v in progs.items()})
