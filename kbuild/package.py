"""The packaging stage: a verified build (dist/<release>/manifest.json) to DEB and RPM sets.

Everything is built in a scratch folder, checked there (lintian, rpmlint, shellcheck, layout,
build-id), and only then renamed into dist/<release>/, so dist never holds a half-written
or unchecked package. Metadata is pinned (SOURCE_DATE_EPOCH from the build, root ownership,
fixed modes and mtimes), so two runs give byte-identical files. Mechanism: docs/packaging.md.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from . import kdumpcfg, manifest as mf
from .errors import BadInput, CheckFailed, MissingTool
from .hashing import file_sha256
from .proc import run
from .requirements import CONFIGS
from .verify import read_build_id as elf_build_id  # deb.py, rpm.py and the tests use this name

REPO = CONFIGS.parent
PACKAGING = REPO / "packaging"
FORMATS = ("deb", "rpm")
# Programs each format needs (building, then checking), with the Debian package to install.
TOOLS = {
    "deb": {"dpkg-deb": "dpkg", "dpkg": "dpkg", "lintian": "lintian"},
    "rpm": {"rpmbuild": "rpm", "rpm": "rpm", "rpmlint": "rpmlint", "rpm2cpio": "rpm"},
    "any": {"objcopy": "binutils", "readelf": "binutils", "shellcheck": "shellcheck",
            "grub-script-check": "grub-common", "sed": "sed"},
}
ARCH = {"x86_64": ("amd64", "x86_64")}     # manifest toolchain.arch -> (dpkg, rpm) architecture
CONFIG_PACKAGE = "kdump-pipeline-config"   # one per system, whichever kernel it came with

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PACKAGING)), autoescape=False,
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                          trim_blocks=True, lstrip_blocks=True)


def deb_description(text: str) -> str:
    """Debian's extended description: lines of at most 80 columns indented by one space,
    paragraphs separated by ` .`; a `* ` line starts an indented (verbatim) bullet."""
    paras = []
    for para in textwrap.dedent(text).strip().split("\n\n"):
        lines = []
        for item in para.replace("\n* ", "\n\0* ").split("\n\0"):
            bullet = item.startswith("* ")
            lines += textwrap.wrap(" ".join(item.split()), 78, break_long_words=False,
                                   break_on_hyphens=False, initial_indent=" " if bullet else "",
                                   subsequent_indent="   " if bullet else "")
        paras.append("\n".join(" " + ln for ln in lines))
    return "\n .\n".join(paras) + "\n"


_ENV.filters["deb_description"] = deb_description


def render(template: str, /, **ctx) -> str:
    """Render packaging/<template>; a missing variable is an error, never an empty string."""
    try:
        return _ENV.get_template(template).render(**ctx)
    except jinja2.TemplateError as e:
        raise BadInput(f"packaging/{template}: {e}") from None


@dataclass(frozen=True)
class Payload:
    """A verified build as the packagers see it: manifest fields plus artifact paths."""

    release: str
    deb_version: str
    rpm_version: str
    rpm_release: str
    cpu_limit_arg: str
    build_id: str
    epoch: int                       # SOURCE_DATE_EPOCH of the build: every mtime and date
    deb_arch: str
    rpm_arch: str
    bzimage: Path
    vmlinux: Path
    system_map: Path
    config: Path
    modules: tuple[tuple[str, Path], ...]   # (path under lib/modules/<release>/, source)
    dist: Path                               # dist/<release>/, next to the manifest

    @classmethod
    def from_manifest(cls, path: Path) -> "Payload":
        """Read the manifest and re-hash every artifact: a rebuild may have replaced them since."""
        data = mf.read(path)
        try:
            rel, arts = data["release"], {a["name"]: a for a in data["artifacts"]}
            missing = [n for n in ("bzImage", "vmlinux", "System.map", "config") if n not in arts]
            epoch, arch = int(data["build"]["env"]["SOURCE_DATE_EPOCH"]), data["toolchain"]["arch"]
            fields = (rel["release"], rel["deb_version"], rel["rpm_version"]["version"],
                      rel["rpm_version"]["release"], rel["cpu_limit_arg"], data["build"]["build_id"])
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"{path}: manifest lacks {e} (older schema?); rebuild") from None
        if missing:
            raise BadInput(f"{path}: manifest lists no {', '.join(missing)}; rebuild")
        if not all(fields) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+~-]*", fields[0]):
            raise BadInput(f"{path}: release {rel.get('release')!r} has no DEB or RPM version or is "
                           "unsafe in paths and scripts; pick one `invoke release-check` passes")
        if arch not in ARCH:
            raise BadInput(f"{path}: architecture {arch!r} is not packaged (known: {', '.join(ARCH)})")
        for a in arts.values():
            p = Path(a["path"])
            if not p.is_file() or file_sha256(p) != a["sha256"]:
                raise BadInput(f"{p}: changed or missing since {path} was written (a rebuild in "
                               "progress?); run `invoke build-kernel` again, then package")
        modules = tuple(sorted((n.split("/", 1)[1], Path(a["path"])) for n, a in arts.items()
                               if n.startswith("modules/")))
        return cls(*fields, epoch, *ARCH[arch], Path(arts["bzImage"]["path"]),
                   Path(arts["vmlinux"]["path"]), Path(arts["System.map"]["path"]),
                   Path(arts["config"]["path"]), modules, Path(path).parent)


class Stage:
    """One package's file tree under construction; `seal` pins modes and mtimes."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, dest: str) -> Path:
        p = self.root / dest.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def dir(self, dest: str) -> Path:
        p = self.root / dest.lstrip("/")
        p.mkdir(parents=True, exist_ok=True)
        return p

    def copy(self, dest: str, src: Path, mode: int = 0o644) -> Path:
        p = self.path(dest)
        shutil.copyfile(src, p)
        p.chmod(mode)
        return p

    def stripped(self, dest: str, src: Path) -> Path:
        """A kernel module without debug info (what `make INSTALL_MOD_STRIP=1` installs)."""
        p = self.path(dest)
        run(["objcopy", "--strip-debug", str(src), str(p)], package="binutils")
        p.chmod(0o644)
        return p

    def text(self, dest: str, text: str | bytes, mode: int = 0o644) -> Path:
        p = self.path(dest)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        p.chmod(mode)
        return p

    def symlink(self, dest: str, target: str) -> Path:
        p = self.path(dest)
        p.symlink_to(target)
        return p

    def seal(self, epoch: int) -> None:
        """Directories 0755, every entry's mtime = SOURCE_DATE_EPOCH (symlinks included)."""
        for dirpath, dirs, files in os.walk(self.root):
            for name in dirs + files:
                p = Path(dirpath) / name
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o755)
                os.utime(p, (epoch, epoch), follow_symlinks=False)
        self.root.chmod(0o755)
        os.utime(self.root, (epoch, epoch))


@dataclass(frozen=True)
class PackageResult:
    """What `package` wrote into dist/<release>/ and what it checked."""

    release: str
    dist: Path
    packages: tuple[Path, ...]
    boot: tuple[Path, ...]
    checks: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    seconds: float = 0.0

    def lines(self) -> str:
        out = [f"warning: {w}" for w in self.warnings]
        out += [f"check  {c}" for c in self.checks]
        out += [f"wrote  {p}" for p in (*self.packages, *self.boot)]
        return "\n".join(out)


def dist_root() -> Path:
    return Path(os.environ.get("KBUILD_DIST_DIR") or REPO / "dist")


def find_manifest(build_dir: Path | None = None, dist: Path | None = None) -> Path:
    """The newest manifest under dist/, or the newest one built in `build_dir`."""
    dist = dist or dist_root()
    found = []
    for p in dist.glob("*/" + mf.MANIFEST):
        try:
            built_in = Path(json.loads(p.read_text())["build"]["dir"]).resolve()
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if build_dir is None or built_in == Path(build_dir).resolve():
            found.append((p.stat().st_mtime, p))
    if not found:
        where = f" built in {build_dir}" if build_dir else ""
        raise BadInput(f"no build manifest{where} under {dist}; run `invoke build-kernel` first")
    return max(found)[1]


def parse_formats(text: str | None) -> set[str]:
    """`deb,rpm` (default both) -> {"deb", "rpm"}; anything else is exit 2."""
    names = {f.strip() for f in (text or ",".join(FORMATS)).split(",") if f.strip()}
    bad = sorted(names - set(FORMATS))
    if bad or not names:
        raise BadInput(f"--formats {text!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    return names


def require_tools(formats: set[str]) -> None:
    """Name every missing program, and the one apt-get line that installs them, before any work."""
    need = {**TOOLS["any"], **{k: v for f in formats for k, v in TOOLS[f].items()}}
    missing = sorted({pkg for prog, pkg in need.items() if shutil.which(prog) is None})
    if missing:
        raise MissingTool(f"packaging needs programs that are not installed; "
                          f"run: apt-get install {' '.join(missing)}")


def publish(src: Path, dest: Path) -> Path:
    """Move a finished file into dist under its final name in one rename."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return dest


def package(manifest_path: Path, formats: set[str] | None = None,
            kdump: kdumpcfg.KdumpSettings | None = None, *, checks: bool = True) -> PackageResult:
    """Build, check and publish the DEB and/or RPM set for the build in `manifest_path`."""
    from . import bootcfg, deb, rpm   # they build on the helpers above
    started = time.monotonic()
    formats = set(formats or FORMATS)
    if not formats or formats - set(FORMATS):
        raise BadInput(f"formats {sorted(formats)}: choose from {', '.join(FORMATS)}")
    require_tools(formats)
    payload = Payload.from_manifest(Path(manifest_path))
    kdump = kdump or kdumpcfg.load()
    lint = kdumpcfg.check(kdump, payload.cpu_limit_arg, formats)
    builders = [m for name, m in (("deb", deb), ("rpm", rpm)) if name in formats]
    work = Path(tempfile.mkdtemp(prefix=f"kdump-package-{payload.release}-"))
    try:
        entries = bootcfg.BootEntries.for_release(payload.release, kdump.crashkernel)
        boot_files = bootcfg.write(entries, work / "boot")
        done = [f"boot entries: {bootcfg.validate(entries, work / 'boot-check')}"]

        def build_and_check(m) -> tuple[list[Path], list[str]]:
            name = m.__name__.rsplit(".", 1)[1]
            files = m.build(payload, kdump, entries, work / name)
            return files, (m.check(files, payload, work / f"check-{name}") if checks else [])
        # The two families share nothing but the read-only payload: build them side by side.
        with ThreadPoolExecutor(max_workers=len(builders)) as pool:
            results = [f.result() for f in [pool.submit(build_and_check, m) for m in builders]]
        for _, lines in results:
            done += lines
        dest = payload.dist
        _remove_stale(dest)
        written = tuple(publish(p, dest / p.name) for files, _ in results for p in files)
        boot = _replace_boot(work / "boot", dest / "boot", boot_files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return PackageResult(payload.release, payload.dist, written, boot, tuple(done),
                         lint.warnings, round(time.monotonic() - started, 1))


def _remove_stale(dest: Path) -> None:
    """Temporary names left by a run that was killed (its pid is gone), never a live run's."""
    for p in [*dest.glob(".*.tmp"), *dest.glob(".boot.*.old")]:
        pid = p.name.rsplit(".", 2)[-2]
        try:
            os.kill(int(pid), 0)
            continue                     # that run is still going
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _replace_boot(src: Path, dest: Path, files: tuple[Path, ...]) -> tuple[Path, ...]:
    """Swap in the new boot/ folder with two renames; the old one is removed afterwards."""
    staged = dest.with_name(f".boot.{os.getpid()}.tmp")
    old = dest.with_name(f".boot.{os.getpid()}.old")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(src, staged)
    if dest.exists():
        os.replace(dest, old)
    os.replace(staged, dest)
    shutil.rmtree(old, ignore_errors=True)
    return tuple(dest / f.relative_to(src) for f in files)


def build_id_link(build_id: str) -> str:
    """Where gdb, crash and debuginfod clients look up a debug file by its GNU build-id."""
    return f"/usr/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug"


def has_debug_info(path: Path) -> bool:
    out = run(["readelf", "-S", "-W", str(path)], package="binutils").output
    return " .debug_info " in out


def check_layout(root: Path, p: Payload, debug_vmlinux: str, debug_suffix: str, how: str) -> str:
    """An installed tree (dpkg -x, rpm --root): every name carries exactly the release, the
    image is the built one, modules are stripped, and the debug vmlinux has the build's build-id."""
    rel, problems = p.release, []

    def names(folder: str, prefix: str = "") -> set[str]:
        d = root / folder.lstrip("/")
        return {x.name[len(prefix):] for x in d.iterdir() if x.name.startswith(prefix)} if d.is_dir() else set()
    for prefix in ("vmlinuz-", "config-", "System.map-"):
        if names("/boot", prefix) != {rel}:
            problems.append(f"/boot/{prefix}* is {sorted(names('/boot', prefix))}, expected [{rel!r}]")
    for folder in ("/lib/modules", "/usr/lib/debug/lib/modules"):
        if names(folder) != {rel}:
            problems.append(f"{folder}/ holds {sorted(names(folder))}, expected [{rel!r}]")
    if names("/usr/lib/debug/boot", "vmlinux-") - {rel}:
        problems.append("/usr/lib/debug/boot/vmlinux-* names another release")
    image = root / f"boot/vmlinuz-{rel}"
    if image.is_file() and file_sha256(image) != file_sha256(p.bzimage):
        problems.append(f"{image.name} differs from the built bzImage")
    vmlinux = root / debug_vmlinux.lstrip("/")
    link = root / build_id_link(p.build_id).lstrip("/")
    if not vmlinux.is_file():
        problems.append(f"{debug_vmlinux} is missing")
    else:
        got = elf_build_id(vmlinux)
        if got != p.build_id:
            problems.append(f"{debug_vmlinux} has build-id {got}, the manifest says {p.build_id}")
        if not link.exists() or link.resolve() != vmlinux.resolve():
            problems.append(f"{build_id_link(p.build_id)} does not lead to {debug_vmlinux}")
    for mod, _ in p.modules:
        if not mod.endswith(".ko"):
            continue
        shipped = root / f"lib/modules/{rel}/{mod}"
        debug = root / f"usr/lib/debug/lib/modules/{rel}/{mod[:-3]}{debug_suffix}"
        if not shipped.is_file() or has_debug_info(shipped):
            problems.append(f"/lib/modules/{rel}/{mod} is missing or not stripped")
        if not debug.is_file() or not has_debug_info(debug):
            problems.append(f"{debug.relative_to(root)} is missing or has no debug info")
    if problems:
        raise CheckFailed(f"layout ({how}): {problems[0]}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return (f"layout ({how}): image, config, System.map, modules and debug paths all name {rel}; "
            f"modules stripped; debug vmlinux build-id {p.build_id}")
