"""The build stage: configure, refuse an unsafe release, compile out of tree, verify.

The environment is reproducible (timestamps, user, host from the tree, not the clock;
prefix maps so the build folder's path stays out of the binaries) and ccache comes in
through PATH, so `CC` stays `gcc` and the Kconfig environment does not change with it.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass, replace
from email.utils import formatdate
from pathlib import Path

from kbuild.build import distcc
from kbuild.build import release as relmod
from kbuild.build import ccache as ccache_mod
from kbuild.build import verify
from kbuild.build import progress as progress_mod
from kbuild.build.progress import Progress
from kbuild.configure.checkconfig import check_config
from kbuild.configure.stage import config_digest, configure
from kbuild.core import fs, lock, tools
from kbuild.core.arch import DEFAULT as DEFAULT_ARCH, Arch
from kbuild.core import manifest as mf
from kbuild.core.errors import BadInput, CheckFailed, CommandFailed
from kbuild.core.hashing import digest, file_sha256 as sha256, tree_digest
from kbuild.core.kconfigfile import parse_values, read_values
from kbuild.core.manifest import Manifest
from kbuild.core.proc import run
from kbuild.core.settings import BuildSettings
from kbuild.core.source import KernelTree, locate
from kbuild.core.toolchain import Toolchain

PREFIX_MAP_MARKER = "-DKBUILD_PREFIX_MAPPED_TO_DOT"
NO_COLUMNS = "-gno-column-info"
# distcc's settings decide where a job runs, never what it produces: not a build input
ENGINE_ENV = ("PATH", "CCACHE_DISABLE", "CCACHE_PREFIX", "DISTCC_HOSTS", "DISTCC_DIR", "DISTCC_LOG",
              "DISTCC_NO_REWRITE_CROSS")
KBUILD = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BuildContext:
    """What every step of one build shares: the tree, the folder, the release, the toolchain."""

    settings: BuildSettings
    tree: KernelTree
    build_dir: Path
    rel: relmod.KernelRelease
    toolchain: Toolchain
    env: dict[str, str]
    log: Path
    jobs: int = 0
    farm: distcc.Farm | None = None

    @property
    def arch(self) -> Arch:
        return self.settings.configure.arch

    def make(self, *targets: str, jobs: int | None = None) -> list[str]:
        return make_cmd(self.tree, self.build_dir, self.toolchain, self.rel, *targets, jobs=jobs)

    @property
    def distcc_log(self) -> Path:
        return self.build_dir / "distcc" / "client.log"

    def run_make(self, *targets: str, **kw):
        return run(self.make(*targets), env=self.env, log=self.log, **kw)


@dataclass(frozen=True)
class BuildOutcome:
    manifest: Manifest
    up_to_date: bool      # nothing changed: the recorded build was reused without running make
    seconds: float
    warnings: tuple[str, ...] = ()   # e.g. distcc hosts refused by the probe


def plan_release(settings: BuildSettings, tree: KernelTree) -> tuple[relmod.KernelRelease, list]:
    """The release policy's answer, or (with --allow-unsafe-release) the release plus its findings."""
    if not settings.allow_unsafe_release:
        return relmod.compose(tree.version, settings.localversion, settings.build_number), []
    return relmod.plan(tree.version, settings.localversion, settings.build_number)


def source_date_epoch(tree: KernelTree) -> int:
    """From the tree (its top Makefile's mtime, fixed by the tarball), never the clock."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    return int(env) if env and env.isdigit() else int((tree.path / "Makefile").stat().st_mtime)


def build_env(tree: KernelTree, ccache: bool, masquerade: str | None = None) -> dict[str, str]:
    """`masquerade`: a folder of gcc -> distcc links that leads PATH when ccache does not."""
    epoch = source_date_epoch(tree)
    env = {
        "SOURCE_DATE_EPOCH": str(epoch),
        "KBUILD_BUILD_TIMESTAMP": formatdate(epoch, usegmt=True),
        "KBUILD_BUILD_USER": "kbuild",
        "KBUILD_BUILD_HOST": "kdump-pipeline",
        "KBUILD_BUILD_VERSION": "1",
        "LC_ALL": "C",
    }
    ccdir = ccache_mod.path_head() if ccache else None
    if ccdir:
        env["PATH"] = f"{ccdir}:{os.environ.get('PATH', '')}"
        env.update(ccache_mod.SETTINGS)
    else:
        env["CCACHE_DISABLE"] = "1"
        if masquerade:
            env["PATH"] = f"{masquerade}:{os.environ.get('PATH', '')}"
    return env


def make_cmd(tree: KernelTree, build_dir: Path, toolchain: Toolchain, rel: relmod.KernelRelease,
             *targets: str, jobs: int | None = None) -> list[str]:
    # no trailing slash: DW_AT_comp_dir is the build folder itself and must be mapped too.
    # No DWARF columns: distcc compiles preprocessed text, where a macro's expansion moves every
    # later token on its line, so columns (and the build-id) would depend on the engine.
    maps = f"-ffile-prefix-map={tree.path}=. -ffile-prefix-map={build_dir}=. {PREFIX_MAP_MARKER}"
    # gcc does not hand its maps to `as`, whose DWARF for .S files records the build folder
    as_maps = f"-Wa,--debug-prefix-map={tree.path}=. -Wa,--debug-prefix-map={build_dir}=."
    cmd = ["make", "-C", str(tree.path), f"O={build_dir}", *toolchain.make_vars(), *ccache_mod.policy().make_args(),
           f"LOCALVERSION={rel.localversion}", f"KCFLAGS={maps} {NO_COLUMNS}", f"KAFLAGS={maps} {as_maps}"]
    if jobs:
        cmd.append(f"-j{jobs}")
    return cmd + list(targets)


def write_release_fragment(build_dir: Path) -> Path:
    """Kconfig side of the release policy: no CONFIG_LOCALVERSION, no LOCALVERSION_AUTO suffixes."""
    lines = [f"# {name} is not set" if value == "n" else f"{name}={value}" for name, value in relmod.KCONFIG.items()]
    path, text = build_dir / "release-policy.config", "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        fs.write_atomic(path, text)
    return path


def first_errors(log_tail: str, limit: int = 8) -> str:
    lines = [ln for ln in log_tail.splitlines() if re.search(r"\berror\b|Error \d", ln)]
    return "\n".join(lines[:limit]) or "\n".join(log_tail.splitlines()[-limit:])


def compile_kernel(ctx: BuildContext, modules: bool, config_key: str) -> float:
    """`make <image> [modules]` with a progress bar; on failure, the first error lines and the log."""
    targets = [ctx.arch.image_target] + (["modules"] if modules else [])
    expected, tail, why = progress_mod.expected_work(ctx.build_dir, config_key)
    from_empty = why != "incremental build, make decides what to redo"
    progress = Progress(expected, why, tail)
    config = ctx.build_dir / ".config"
    configured = config.read_text()
    t = time.monotonic()
    try:
        run(ctx.make(*targets, jobs=ctx.jobs or ctx.settings.jobs), env=ctx.env, log=ctx.log,
            on_line=progress.line, keep_output=False)
    except CommandFailed as e:
        progress.finish()
        raise CheckFailed(f"compile failed; first errors:\n{first_errors(e.tail)}\nfull log: {ctx.log}") from None
    progress.finish()
    keep_configured(config, configured)
    if from_empty:   # a full build: the count an ETA for this configuration can trust next time
        progress_mod.record_objects(config_key, progress.done, time.monotonic() - progress.last_object_at)
    return time.monotonic() - t


def keep_configured(config: Path, configured: str) -> None:
    """Kbuild's syncconfig rewrites .config in its own words (header, comments) when the
    environment it recorded in a reused folder changed. The values must not change; the text
    goes back to ours, so the shipped config file depends on the inputs, not the folder's past."""
    now = config.read_text()
    if now == configured:
        return
    if parse_values(now) != parse_values(configured):
        raise CheckFailed(f"{config}: Kbuild changed configuration values during the build; run "
                          "`invoke configure` with this folder and compare, or build in a new folder")
    fs.write_atomic(config, configured)


def install_modules(ctx: BuildContext) -> Path:
    """modules_install into <build>/staging, cleaned first so no stale module survives."""
    staging = ctx.build_dir / "staging"
    shutil.rmtree(staging / "lib" / "modules" / ctx.rel.release, ignore_errors=True)
    ctx.run_make("modules_install", f"INSTALL_MOD_PATH={staging}")
    return staging / "lib" / "modules" / ctx.rel.release


@dataclass(frozen=True)
class Verified:
    image: Path
    vmlinux: Path
    header: str
    build_id: str
    moddir: Path


def verify_build(ctx: BuildContext, modules: bool) -> Verified:
    """Everything that must hold before the build is declared good; CheckFailed otherwise."""
    got = ctx.run_make("-s", "kernelrelease").output.strip()
    if got != ctx.rel.release:
        raise CheckFailed(f"make kernelrelease says {got!r}, the release policy planned {ctx.rel.release!r}")
    image = ctx.build_dir / ctx.arch.image
    vmlinux = ctx.build_dir / "vmlinux"
    header = verify.check_image_release(ctx.arch.release_from, image, vmlinux, ctx.rel.release)
    if ctx.arch.release_from == "setup-header":
        verify.check_bzimage_payload(image, image.parent / "compressed")
    if "CCACHE_DISABLE" not in ctx.env:
        ccache_mod.check_uncached(ctx.build_dir)
    verify.check_debug_info(vmlinux)
    build_id = verify.elf_build_id(vmlinux)
    cfg = check_config(ctx.build_dir / ".config", ctx.tree, ctx.toolchain)
    if not cfg.ok:
        bad = [r for r in cfg.results if not r.ok]
        raise CheckFailed(f"{ctx.build_dir / '.config'} no longer meets {bad[0].capability}: {bad[0].why}")
    moddir = ctx.build_dir / "staging" / "lib" / "modules" / ctx.rel.release
    if modules and not moddir.is_dir():
        raise CheckFailed(f"modules were installed, but not into {moddir} (named after another release?)")
    return Verified(image, vmlinux, header, build_id, moddir)


def _tool_versions(env: dict[str, str], toolchain: Toolchain) -> dict[str, str]:
    out = {}
    for name, args in (("gcc", [toolchain.tool("cc"), "--version"]), ("ld", [toolchain.tool("ld"), "--version"]),
                       ("make", ["make", "--version"]),
                       ("pahole", ["pahole", "--version"]), ("ccache", ["ccache", "--version"])):
        if shutil.which(args[0]):
            lines = run(args, check=False).output.splitlines()
            out[name] = lines[0].strip() if lines else ""
    out["ccache_used"] = "CCACHE_DISABLE" not in env
    return out


def code_digest() -> str:
    """Hash of the code that decides what a build produces and checks: the build stage and
    every layer under it (kbuild/core, kbuild/configure, kbuild/build), derived, not listed."""
    return tree_digest([KBUILD / "core", KBUILD / "configure", KBUILD / "build"], "*.py")


def reproducer(settings: BuildSettings, tree: KernelTree) -> str:
    c = settings.configure
    parts = ["invoke", "build-kernel", "--source", str(tree.tarball or tree.path)]
    if c.arch.name != DEFAULT_ARCH:
        parts += ["--arch", c.arch.name]
    parts += ["--base-config", str(c.base_config)] if c.base_config else ["--profile", c.profile.name]
    for f in c.fragments:
        parts += ["--fragment", str(f)]
    parts += ["--localversion", settings.localversion]
    if settings.build_number is not None:
        parts += ["--build-number", str(settings.build_number)]
    if not settings.ccache:
        parts.append("--no-ccache")
    if settings.distcc:
        parts += ["--distcc", shlex.quote(settings.distcc)]
    if settings.allow_unsafe_release:
        parts.append("--allow-unsafe-release")
    return " ".join(parts)


def _reusable(mpath: Path, inputs: str) -> Manifest | None:
    """The recorded build, if it was made from exactly these inputs and its files are intact.
    An unreadable or foreign manifest is not an error here: the build simply runs."""
    if not mpath.exists():
        return None
    try:
        old = Manifest.read(mpath)
    except BadInput:   # unreadable, or an older schema: build over it
        return None
    return old if old.inputs == inputs and old.intact() else None


def _refuse_other_arch(mpath: Path, arch: Arch) -> None:
    """dist/<release>/ holds one build; never replace another arch's build of the same release."""
    try:
        other = Manifest.read(mpath).arch if mpath.exists() else arch.name
    except BadInput:
        return
    if other != arch.name:
        raise BadInput(f"{mpath.parent} holds a {other} build of this release; give the {arch.name} build "
                       f"its own --localversion (the {arch.name} default is {arch.localversion!r})")


def build_kernel(settings: BuildSettings, toolchain: Toolchain | None = None) -> BuildOutcome:
    """configure -> release -> compile -> modules -> verify -> manifest, one writer per build folder."""
    toolchain = toolchain or Toolchain.for_arch(settings.configure.arch)
    t0 = time.monotonic()
    tree = locate(settings.configure.source)
    rel, findings = plan_release(settings, tree)  # an unsafe release stops here, before any work
    tools.require("build", arch=settings.configure.arch.name)
    farm = distcc.check_farm(settings.distcc, toolchain.tool("cc"), settings.ccache and ccache_mod.available()) \
        if settings.distcc else None  # probed before any work
    build_dir = (settings.configure.build_dir or settings.configure.default_build_dir(tree.name)).resolve()
    with lock.exclusive(build_dir, "build-kernel", settings.wait):
        out = _build(settings, toolchain, tree, rel, findings, build_dir, t0, farm)
    return replace(out, warnings=tuple(p.why for p in farm.refused)) if farm else out


def _build(settings: BuildSettings, toolchain: Toolchain, tree: KernelTree, rel: relmod.KernelRelease,
           findings: list, build_dir: Path, t0: float, farm: distcc.Farm | None = None) -> BuildOutcome:
    conf = configure(settings.configure.with_policy(build_dir, write_release_fragment(build_dir)), toolchain)
    timings = {"configure": round(time.monotonic() - t0, 3)}
    config = build_dir / ".config"
    env = build_env(tree, settings.ccache, distcc.MASQUERADE_DIR if farm else None)
    jobs = settings.jobs
    if farm:
        env.update(distcc.build_env(farm, build_dir / "distcc", settings.ccache))
        jobs = settings.jobs or distcc.slots(farm, env)
    ctx = BuildContext(settings, tree, build_dir, rel, toolchain, env, build_dir / "build.log", jobs, farm)
    modules = read_values(config).get("MODULES") == "y"
    inputs = digest([config_digest(config), conf.ledger.to_dict(), rel, sorted(
        (k, v) for k, v in ctx.env.items() if k not in ENGINE_ENV), toolchain.fingerprint(),
        str(tree.path), tree.tarball_sha256, code_digest(), findings])
    mpath = mf.path_for(settings.dist, rel.release)
    # Only a tarball tree is immutable (its sha256 is in `inputs`); in a directory tree an
    # edited .c file changes nothing we hash, so make, which compares mtimes, must decide.
    if tree.tarball_sha256:
        old = _reusable(mpath, inputs)
        if old is not None:
            return BuildOutcome(old, True, round(time.monotonic() - t0, 3))
    _refuse_other_arch(mpath, ctx.arch)
    mf.discard(mpath)
    for p in build_dir.glob("localversion*"):  # the release policy forbids localversion* files in O=
        p.unlink()
    ctx.log.write_text("")
    timings["compile"] = round(compile_kernel(ctx, modules, config_digest(config)), 3)
    t = time.monotonic()
    if modules:
        install_modules(ctx)
    timings["modules_install"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    v = verify_build(ctx, modules)
    timings["verify"] = round(time.monotonic() - t, 3)
    timings["total"] = round(time.monotonic() - t0, 3)
    mf.write(mpath, manifest_record(ctx, conf.ledger.to_dict(), inputs, findings, v, modules, timings))
    return BuildOutcome(Manifest.read(mpath), False, timings["total"])


def manifest_record(ctx: BuildContext, ledger: dict, inputs: str, findings: list, v: Verified,
                    modules: bool, timings: dict) -> dict:
    """The manifest's content (docs/manifest.md); every artifact with its sha256."""
    config = ctx.build_dir / ".config"
    arts = [(ctx.arch.image_name, v.image), ("vmlinux", v.vmlinux), ("System.map", ctx.build_dir / "System.map"),
            ("config", config)]
    if modules:
        arts += [(f"modules/{p.relative_to(v.moddir)}", p) for p in sorted(v.moddir.rglob("*"))
                 if p.is_file() and not p.is_symlink()]

    def fileinfo(p: Path) -> dict:
        return {"path": str(p), "sha256": sha256(p)}
    c, rel, tree, settings = ctx.settings.configure, ctx.rel, ctx.tree, ctx.settings
    return {
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
        "ledger": ledger,
        "config": fileinfo(config),
        "toolchain": {"arch": ctx.toolchain.arch, "cross_compile": ctx.toolchain.cross_compile,
                      **_tool_versions(ctx.env, ctx.toolchain)},
        "build": {"dir": str(ctx.build_dir), "jobs": ctx.jobs or settings.jobs, "modules": modules, "build_id": v.build_id,
                  "image_version": v.header, "log": str(ctx.log),
                  "env": {k: val for k, val in ctx.env.items() if k != "PATH"}},
        "artifacts": [{"name": n, "path": str(p), "sha256": sha256(p), "size": p.stat().st_size} for n, p in arts],
        "distcc": {**ctx.farm.record(), **distcc.count_jobs(ctx.distcc_log, ctx.farm).record(),
                   "log": str(ctx.distcc_log)} if ctx.farm else None,
        "timings": timings,
        "reproducer": reproducer(settings, tree),
        "settings_from": dict(settings.origins),   # flags whose value came from an invoke config file
    }
