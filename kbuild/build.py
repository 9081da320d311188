"""The build stage: configure, refuse an unsafe release, compile out of tree, verify.

The environment is reproducible (timestamps, user, host from the tree, not the clock;
prefix maps so the build folder's path stays out of the binaries) and ccache comes in
through PATH, so `CC` stays `gcc` and the Kconfig environment does not change with it.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from . import release as relmod
from .checkconfig import check_config
from .configure import ConfigureResult, config_digest, configure
from .crosscheck import read_values
from .errors import CheckFailed, CommandFailed, MissingTool
from .hashing import digest, file_sha256 as sha256
from .proc import run
from .settings import BuildSettings
from .source import KernelTree, locate
from .toolchain import Toolchain
from . import manifest as mf, verify

CCACHE_DIRS = ("/usr/lib/ccache",)
BUILD_PACKAGES = {"make": "make", "gcc": "gcc", "bc": "bc", "bison": "bison", "flex": "flex",
                  "perl": "perl", "depmod": "kmod", "readelf": "binutils", "openssl": "openssl"}
BUILD_HEADERS = {"/usr/include/libelf.h": "libelf-dev", "/usr/include/openssl/ssl.h": "libssl-dev"}


@dataclass
class BuildResult:
    tree: KernelTree
    build_dir: Path
    release: relmod.KernelRelease
    configure: ConfigureResult
    findings: list = field(default_factory=list)  # release findings accepted with --allow-unsafe-release
    build_id: str = ""
    bzimage_version: str = ""
    artifacts: dict[str, Path] = field(default_factory=dict)
    module_files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    up_to_date: bool = False


def preflight() -> None:
    """Name every missing build dependency at once, before an hour is spent."""
    missing = sorted({pkg for prog, pkg in BUILD_PACKAGES.items() if shutil.which(prog) is None} |
                     {pkg for path, pkg in BUILD_HEADERS.items() if not os.path.exists(path)})
    if missing:
        raise MissingTool(f"kernel build dependencies are missing: apt-get install {' '.join(missing)}")


def plan_release(settings: BuildSettings, tree: KernelTree) -> tuple[relmod.KernelRelease, list]:
    """The release policy's answer, or (with --allow-unsafe-release) the release plus its findings."""
    if not settings.allow_unsafe_release:
        return relmod.compose(tree.version, settings.localversion, settings.build_number), []
    return relmod.plan(tree.version, settings.localversion, settings.build_number)


def source_date_epoch(tree: KernelTree) -> int:
    """From the tree (its top Makefile's mtime, fixed by the tarball), never the clock."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    return int(env) if env and env.isdigit() else int((tree.path / "Makefile").stat().st_mtime)


def build_env(tree: KernelTree, ccache: bool) -> dict[str, str]:
    epoch = source_date_epoch(tree)
    env = {
        "SOURCE_DATE_EPOCH": str(epoch),
        "KBUILD_BUILD_TIMESTAMP": formatdate(epoch, usegmt=True),
        "KBUILD_BUILD_USER": "kbuild",
        "KBUILD_BUILD_HOST": "kdump-pipeline",
        "KBUILD_BUILD_VERSION": "1",
        "LC_ALL": "C",
    }
    ccdir = next((d for d in CCACHE_DIRS if os.path.isdir(d)), None)
    if ccache and ccdir and shutil.which("ccache"):
        env["PATH"] = f"{ccdir}:{os.environ.get('PATH', '')}"
    else:
        env["CCACHE_DISABLE"] = "1"
    return env


def make_cmd(tree: KernelTree, build_dir: Path, toolchain: Toolchain, rel: relmod.KernelRelease,
             *targets: str, jobs: int | None = None) -> list[str]:
    # no trailing slash: DW_AT_comp_dir is the build folder itself and must be mapped too
    maps = f"-ffile-prefix-map={tree.path}=. -ffile-prefix-map={build_dir}=."
    # gcc does not hand its maps to `as`, whose DWARF for .S files records the build folder
    as_maps = f"-Wa,--debug-prefix-map={tree.path}=. -Wa,--debug-prefix-map={build_dir}=."
    cmd = ["make", "-C", str(tree.path), f"O={build_dir}", *toolchain.make_vars(),
           f"LOCALVERSION={rel.localversion}", f"KCFLAGS={maps}", f"KAFLAGS={maps} {as_maps}"]
    if jobs:
        cmd.append(f"-j{jobs}")
    return cmd + list(targets)


def write_release_fragment(build_dir: Path) -> Path:
    """Kconfig side of the release policy: no CONFIG_LOCALVERSION, no LOCALVERSION_AUTO suffixes."""
    build_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, value in relmod.KCONFIG.items():
        lines.append(f"# {name} is not set" if value == "n" else f"{name}={value}")
    path = build_dir / "release-policy.config"
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


class Progress:
    """`objects done / expected, ETA` on stderr; expected comes from the last build of this folder."""

    STEP = re.compile(r"^\s+(CC|AS|CC \[M\])\s")

    def __init__(self, expected: int | None):
        self.expected, self.done, self.start = expected, 0, time.monotonic()
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def line(self, text: str) -> None:
        if not self.STEP.match(text):
            return
        self.done += 1
        now = time.monotonic()
        if now - self._last < (0.5 if self.tty else 15):
            return
        self._last = now
        elapsed = now - self.start
        if self.expected:
            frac = min(self.done / self.expected, 0.99)
            eta = elapsed / frac * (1 - frac) if frac > 0 else 0
            bar = "#" * int(frac * 30)
            msg = f"[{bar:<30}] {self.done}/~{self.expected} objects, ETA {int(eta) // 60}m{int(eta) % 60:02d}s"
        else:
            msg = f"{self.done} objects compiled, {int(elapsed)}s (first build of this folder: no ETA yet)"
        sys.stderr.write(("\r" + msg + "   ") if self.tty else msg + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


def first_errors(log_tail: str, limit: int = 8) -> str:
    lines = [l for l in log_tail.splitlines() if re.search(r"\berror\b|Error \d", l)]
    return "\n".join(lines[:limit]) or "\n".join(log_tail.splitlines()[-limit:])


def _expected_objects(build_dir: Path) -> int | None:
    try:
        return int((build_dir / ".kbuild-objects").read_text())
    except (OSError, ValueError):
        return None


def compile_kernel(settings: BuildSettings, tree: KernelTree, build_dir: Path, rel: relmod.KernelRelease,
                   toolchain: Toolchain, env: dict[str, str], modules: bool, log: Path) -> float:
    """`make bzImage [modules]` with a progress bar; on failure, the first error lines and the log."""
    targets = ["bzImage"] + (["modules"] if modules else [])
    progress = Progress(_expected_objects(build_dir))
    t = time.monotonic()
    try:
        run(make_cmd(tree, build_dir, toolchain, rel, *targets, jobs=settings.jobs), env=env, log=log,
            on_line=progress.line, keep_output=False, package="make")
    except CommandFailed as e:
        progress.finish()
        raise CheckFailed(f"compile failed; first errors:\n{first_errors(e.tail)}\nfull log: {log}") from None
    progress.finish()
    if progress.done > (progress.expected or 0):  # first build, or a bigger one: new baseline
        (build_dir / ".kbuild-objects").write_text(str(progress.done))
    return time.monotonic() - t


def install_modules(tree, build_dir, rel, toolchain, env, log) -> Path:
    """modules_install into <build>/staging, cleaned first so no stale module survives."""
    staging = build_dir / "staging"
    shutil.rmtree(staging / "lib" / "modules" / rel.release, ignore_errors=True)
    run(make_cmd(tree, build_dir, toolchain, rel, "modules_install", f"INSTALL_MOD_PATH={staging}"),
        env=env, log=log, package="kmod")
    return staging / "lib" / "modules" / rel.release


def verify_build(tree: KernelTree, build_dir: Path, rel: relmod.KernelRelease, toolchain: Toolchain,
                 env: dict[str, str], modules: bool, log: Path) -> dict:
    """Everything that must hold before the build is declared good; CheckFailed otherwise."""
    got = run(make_cmd(tree, build_dir, toolchain, rel, "-s", "kernelrelease"), env=env, log=log).output.strip()
    if got != rel.release:
        raise CheckFailed(f"make kernelrelease says {got!r}, the release policy planned {rel.release!r}")
    bzimage = build_dir / "arch" / toolchain.srcarch / "boot" / "bzImage"
    vmlinux = build_dir / "vmlinux"
    header = verify.check_bzimage_release(bzimage, rel.release)
    verify.check_debug_info(vmlinux)
    build_id = verify.elf_build_id(vmlinux)
    cfg = check_config(build_dir / ".config", tree, toolchain)
    if not cfg.ok:
        bad = [r for r in cfg.results if not r.ok]
        raise CheckFailed(f"{build_dir / '.config'} no longer meets {bad[0].capability}: {bad[0].why}")
    moddir = build_dir / "staging" / "lib" / "modules" / rel.release
    if modules and not moddir.is_dir():
        raise CheckFailed(f"modules were installed, but not into {moddir} (named after another release?)")
    return {"bzimage": bzimage, "vmlinux": vmlinux, "header": header, "build_id": build_id, "moddir": moddir}


def _tool_versions(env: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, args in (("gcc", ["gcc", "--version"]), ("ld", ["ld", "--version"]), ("make", ["make", "--version"]),
                       ("pahole", ["pahole", "--version"]), ("ccache", ["ccache", "--version"])):
        if shutil.which(args[0]):
            lines = run(args, check=False).output.splitlines()
            out[name] = lines[0].strip() if lines else ""
    out["ccache_used"] = "CCACHE_DISABLE" not in env
    return out


# Modules whose code decides what a build produces and checks; a change to one of them
# invalidates the no-op shortcut. tests/unit/test_build_parts.py keeps the list complete.
BUILD_MODULES = ("build", "checkconfig", "configure", "crosscheck", "errors", "fragments", "hashing",
                 "kconfig_enforce", "kconfig_parse", "ledger", "manifest", "proc", "release",
                 "requirements", "settings", "source", "toolchain", "verify")


def _code_hash() -> str:
    here = Path(__file__).parent
    return digest([(m, sha256(here / f"{m}.py")) for m in BUILD_MODULES])


def reproducer(settings: BuildSettings, tree: KernelTree) -> str:
    c = settings.configure
    parts = ["invoke", "build-kernel", "--source", str(tree.tarball or tree.path)]
    parts += ["--base-config", str(c.base_config)] if c.base_config else ["--profile", c.profile.name]
    for f in c.fragments:
        parts += ["--fragment", str(f)]
    parts += ["--localversion", settings.localversion]
    if settings.build_number is not None:
        parts += ["--build-number", str(settings.build_number)]
    if not settings.ccache:
        parts.append("--no-ccache")
    if settings.allow_unsafe_release:
        parts.append("--allow-unsafe-release")
    return " ".join(parts)


def build_kernel(settings: BuildSettings, toolchain: Toolchain | None = None) -> dict:
    """configure -> release -> compile -> modules -> verify -> manifest. Returns the manifest."""
    toolchain = toolchain or Toolchain()
    t0 = time.monotonic()
    tree = locate(settings.configure.source)
    rel, findings = plan_release(settings, tree)  # an unsafe release stops here, before any work
    preflight()
    build_dir = (settings.configure.build_dir or settings.configure.default_build_dir(tree.name)).resolve()
    csettings = settings.configure.with_policy(build_dir, write_release_fragment(build_dir))
    conf = configure(csettings, toolchain)
    if conf.explanation:
        raise CheckFailed(conf.explanation.splitlines()[0])
    timings = {"configure": round(time.monotonic() - t0, 3)}
    config = build_dir / ".config"
    env = build_env(tree, settings.ccache)
    modules = read_values(config).get("MODULES") == "y"
    inputs = digest([config_digest(config), conf.ledger.to_dict(), rel, sorted(
        (k, v) for k, v in env.items() if k not in ("PATH", "CCACHE_DISABLE")), toolchain.fingerprint(),
        str(tree.path), tree.tarball_sha256, _code_hash(), findings])
    mpath = mf.path_for(settings.dist, rel.release)
    # Only a tarball tree is immutable (its sha256 is in `inputs`); in a directory tree an
    # edited .c file changes nothing we hash, so make, which compares mtimes, must decide.
    if mpath.exists() and tree.tarball_sha256:
        try:
            old = mf.read(mpath)
            if old.get("inputs") == inputs and mf.artifacts_intact(old):
                old["up_to_date"] = True
                return old
        except Exception:  # any unreadable manifest is simply rebuilt
            pass
    mf.discard(mpath)
    for stray in ("localversion",):  # the release policy forbids localversion* files in O=
        for p in build_dir.glob(stray + "*"):
            p.unlink()
    log = build_dir / "build.log"
    log.write_text("")
    timings["compile"] = round(compile_kernel(settings, tree, build_dir, rel, toolchain, env, modules, log), 3)
    t = time.monotonic()
    if modules:
        install_modules(tree, build_dir, rel, toolchain, env, log)
    timings["modules_install"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    v = verify_build(tree, build_dir, rel, toolchain, env, modules, log)
    timings["verify"] = round(time.monotonic() - t, 3)
    arts = [("bzImage", v["bzimage"]), ("vmlinux", build_dir / "vmlinux"),
            ("System.map", build_dir / "System.map"), ("config", config)]
    if modules:
        arts += [(f"modules/{p.relative_to(v['moddir'])}", p) for p in sorted(v["moddir"].rglob("*"))
                 if p.is_file() and not p.is_symlink()]
    timings["total"] = round(time.monotonic() - t0, 3)

    def fileinfo(p: Path) -> dict:
        return {"path": str(p), "sha256": sha256(p)}
    c = settings.configure
    data = {
        "schema": mf.SCHEMA,
        "status": "success",
        "inputs": inputs,
        "release": {"release": rel.release, "localversion": rel.localversion, "build": rel.build,
                    "cpu_limit_arg": rel.cpu_limit_arg, "notes": list(rel.notes),
                    "deb_version": relmod.deb_version(rel.release),
                    "rpm_version": dict(zip(("version", "release"), relmod.rpm_version(rel.release))),
                    "allow_unsafe_release": settings.allow_unsafe_release,
                    "unsafe_findings": [str(f) for f in findings]},
        "tree": {"name": tree.name, "version": str(tree.version), "path": str(tree.path),
                 "tarball": str(tree.tarball) if tree.tarball else None, "tarball_sha256": tree.tarball_sha256},
        "profile": {"name": c.profile.name, "base": c.profile.base,
                    "fragments": [fileinfo(f) for f in c.profile.fragments]} if c.profile else None,
        "base_config": fileinfo(c.base_config) if c.base_config else None,
        "fragments": [fileinfo(f) for f in c.fragments],
        "ledger": conf.ledger.to_dict(),
        "config": fileinfo(config),
        "toolchain": {"arch": toolchain.arch, **_tool_versions(env)},
        "build": {"dir": str(build_dir), "jobs": settings.jobs, "modules": modules, "build_id": v["build_id"],
                  "bzimage_version": v["header"], "log": str(log),
                  "env": {k: v2 for k, v2 in env.items() if k != "PATH"}},
        "artifacts": [{"name": n, "path": str(p), "sha256": sha256(p), "size": p.stat().st_size} for n, p in arts],
        "timings": timings,
        "reproducer": reproducer(settings, tree),
    }
    mf.write(mpath, data)
    data["up_to_date"] = False
    return data


def manifest_path(settings: BuildSettings, release: str) -> Path:
    return mf.path_for(settings.dist, release)
