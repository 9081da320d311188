"""KERNELRELEASE policy: compose a `uname -r` every kdump consumer accepts, and lint any other.

Scheme: ``<KERNELVERSION>-<build>.<localversion>`` (e.g. ``6.1.192-3.kdump``), dropping the
parts that are not given (``6.1.192-3``, ``6.1.192-kdump``, ``6.1.192``). It is RHEL's own
shape (``2.6.32-754.el6``): the build is the second ``-`` field, which RHEL 6's kdump.init
parses as an integer; DEB and RPM compare the numeric build first, so builds sort in order;
and ``.`` after the build keeps ``-1.kdump`` from being a prefix of ``-10.kdump``.

The kernel appends LOCALVERSION to KERNELVERSION (``scripts/setlocalversion``). To get exactly
``KernelRelease.release`` the build must: pass ``make LOCALVERSION=<KernelRelease.localversion>``
even when it is empty (an unset LOCALVERSION appends ``+`` in a git tree), keep
``CONFIG_LOCALVERSION=""`` and ``CONFIG_LOCALVERSION_AUTO`` off (it appends ``-gHASH``, or the
contents of ``.scmversion`` on 6.1), have no ``localversion*`` files in the source or O= tree,
and check ``make -s kernelrelease`` afterwards.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.source import KernelVersion

UTS_LEN = 64                     # __NEW_UTS_LEN: longer releases fail `make prepare`
RHEL6_MIN_BUILD = 171            # kdump.init refuses nr_cpus on 2.6.32-N with N < 171
NR_CPUS, MAXCPUS = "nr_cpus=1", "maxcpus=1"
KCONFIG = {"CONFIG_LOCALVERSION": '""', "CONFIG_LOCALVERSION_AUTO": "n"}
_LOCAL_OK = re.compile(r"[A-Za-z0-9._+~-]*")   # no shell, make or path metacharacters
_RC = re.compile(r"^(\d+\.\d+(?:\.\d+)?)-rc(\d+)(?=-|$)")
_REGEX_META = re.compile(r"[\\^$*+?()\[\]{}|]")  # `.` is in every release and matches itself


@dataclass(frozen=True)
class KernelRelease:
    """What `uname -r` will print, and what the build and the capture cmdline must use."""

    release: str
    localversion: str            # pass as `make LOCALVERSION=<this>` (may be "", pass it anyway)
    build: int | None
    cpu_limit_arg: str = NR_CPUS  # for KDUMP_COMMANDLINE_APPEND
    notes: tuple[str, ...] = ()

    @property
    def make_vars(self) -> dict[str, str]:
        return {"LOCALVERSION": self.localversion}


@dataclass(frozen=True)
class Finding:
    """One consumer that breaks on a release: who, what happens, what to do instead."""

    rule: str
    consumer: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.consumer}: {self.problem}; {self.fix}"


@dataclass(frozen=True)
class ReleaseReport:
    """Result of `check`, shaped for `invoke release-check` (exit 0 safe, 1 unsafe)."""

    release: str
    cpu_limit_arg: str
    findings: tuple[Finding, ...] = ()
    suggestion: str | None = None
    deb_version: str | None = None
    rpm_version: tuple[str, str] | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else CheckFailed.exit_code

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok, "exit_code": self.exit_code}, indent=2)


def _join(kernelversion: str, localversion: str, build: int | None) -> str:
    tail = ".".join(p for p in (None if build is None else str(build), localversion) if p)
    return kernelversion + (f"-{tail}" if tail else "")


def validate_localversion(s: str, version: KernelVersion | None = None,
                          build: int | None = None) -> str:
    """Reject what would break the make command line, file names or the 64-char limit."""
    bad = next((c for c in s if not _LOCAL_OK.fullmatch(c)), None)
    if bad is not None:
        raise BadInput(f"localversion {s!r}: {bad!r} is not allowed (shell/make/path "
                       "metacharacter); use lowercase letters, digits, '.' and '-', e.g. 'kdump'")
    if s[:1] in ("-", ".") or s[-1:] in ("-", "."):
        raise BadInput(f"localversion {s!r} starts or ends with '-' or '.'; compose adds the "
                       f"separator itself, pass {s.strip('-.') or 'kdump'!r}")
    rel = _join(str(version or ""), s, build)
    if len(rel) > UTS_LEN:
        raise BadInput(f"release {rel!r} is {len(rel)} characters, the kernel allows {UTS_LEN}; "
                       f"shorten the localversion by {len(rel) - UTS_LEN}")
    return s


def plan(version: KernelVersion, localversion: str = "", build: int | None = None
         ) -> tuple[KernelRelease, list[Finding]]:
    """Build the release string and return it with any findings still left on it."""
    if build is not None and (isinstance(build, bool) or not isinstance(build, int) or build < 0):
        raise BadInput(f"build {build!r}: must be a non-negative integer, e.g. 3")
    notes: list[str] = []
    if version.key == (2, 6, 32) and build is None:
        build = RHEL6_MIN_BUILD
        notes.append(f"2.6.32 tree: build defaults to {RHEL6_MIN_BUILD} so RHEL 6 kdump.init "
                     "accepts nr_cpus=1")
    validate_localversion(localversion, version, build)
    release = _join(str(version), localversion, build)
    cpu = NR_CPUS
    if any(f.rule == "rhel6-nr-cpus" for f in lint(release, cpu_limit_arg=NR_CPUS)):
        cpu = MAXCPUS
        notes.append(f"RHEL 6 kdump.init assumes 2.6.32-N with N < {RHEL6_MIN_BUILD} lacks "
                     "nr_cpus= and refuses to load, so KDUMP_COMMANDLINE_APPEND must use "
                     "maxcpus=1; that only limits the CPUs brought up, per-CPU memory is still "
                     "sized for every possible CPU, so crashkernel= may need to be larger. "
                     f"A build >= {RHEL6_MIN_BUILD} keeps nr_cpus=1")
    rel = KernelRelease(release, release[len(str(version)):], build, cpu, tuple(notes))
    return rel, lint(release, cpu_limit_arg=cpu)


def compose(version: KernelVersion, localversion: str = "", build: int | None = None
            ) -> KernelRelease:
    """Build the release string; raise CheckFailed if a consumer would still break on it."""
    rel, findings = plan(version, localversion, build)
    if findings:
        raise CheckFailed(f"release {rel.release!r} is unsafe: {findings[0]}")
    return rel


def _wellformed(release: str) -> None:
    if not isinstance(release, str) or not release:
        raise BadInput("release is empty; pass what `uname -r` prints, e.g. 6.1.192-3.kdump")
    if any(c.isspace() or not c.isprintable() for c in release):
        raise BadInput(f"release {release!r} contains whitespace or control characters; "
                       "remove them")
    if not re.match(r"\d+\.\d+", release):
        raise BadInput(f"release {release!r} must start with <digits>.<digits>, e.g. 6.1.192")


def _rhel6_refuses(release: str) -> bool:
    """Mirror kdump.init: maj=`cut -f1`, min=`cut -f2` cut at the first '.', `[ $min -lt 171 ]`.

    `cut` prints the whole line when there is no '-'; a non-integer min makes `[` fail,
    which skips the check. bash accepts a leading '+' in integers.
    """
    fields = release.split("-")
    minor = (fields[1] if len(fields) > 1 else release).split(".", 1)[0]
    return (fields[0] == "2.6.32" and re.fullmatch(r"\+?[0-9]+", minor) is not None
            and int(minor) < RHEL6_MIN_BUILD)


def deb_version(release: str) -> str:
    """Debian version for the package of `release`: `-rcN` becomes `~rcN` so it sorts first.

    The last '-' splits upstream from revision, so with our scheme the build leads the
    revision and is compared numerically.
    """
    _wellformed(release)
    ver = _RC.sub(r"\1~rc\2", release)
    upstream, _, revision = ver.rpartition("-") if "-" in ver else (ver, "", "")
    if not re.fullmatch(r"[0-9][A-Za-z0-9.+~-]*", upstream) or (
            "-" in ver and not re.fullmatch(r"[A-Za-z0-9.+~]+", revision)):
        raise CheckFailed(f"{release!r} has no valid Debian version ({ver!r}); use only "
                          "[a-z0-9.+-] and do not end with '-'")
    return ver


def rpm_version(release: str) -> tuple[str, str]:
    """(Version, Release) for RPM: split at the first '-', `-rcN` as `~rcN` (rpm >= 4.10).

    `make binrpm-pkg` instead puts the whole release in Version with '-' -> '_', which makes
    `6.1.0_rc1` sort after `6.1.0`; our own spec should use this mapping. The rest's '-'
    become '_' (a separator to rpmvercmp); no rest gives Release "0".
    """
    _wellformed(release)
    version, _, rest = _RC.sub(r"\1~rc\2", release).partition("-")
    rel = rest.replace("-", "_") or "0"
    for part in (version, rel):
        if not re.fullmatch(r"[A-Za-z0-9._+~^]+", part):
            raise CheckFailed(f"{release!r} gives RPM Version/Release {version!r}/{rel!r}; only "
                              "letters, digits and ._+~^ are allowed, use [a-z0-9.-]")
    return version, rel


def _deb_cmp_part(a: str, b: str) -> int:
    def order(c: str) -> int:
        return -1 if c == "~" else ord(c) if c.isascii() and c.isalpha() else ord(c) + 256
    while a or b:
        na, nb = re.match(r"[^0-9]*", a).group(), re.match(r"[^0-9]*", b).group()
        for i in range(max(len(na), len(nb))):
            ca = order(na[i]) if i < len(na) else 0
            cb = order(nb[i]) if i < len(nb) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        a, b = a[len(na):], b[len(nb):]
        da, db = re.match(r"[0-9]*", a).group(), re.match(r"[0-9]*", b).group()
        if int(da or 0) != int(db or 0):
            return -1 if int(da or 0) < int(db or 0) else 1
        a, b = a[len(da):], b[len(db):]
    return 0


def deb_compare(a: str, b: str) -> int:
    """dpkg's version order (-1, 0, 1), for checking that a new build is an upgrade."""
    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.partition(":") if ":" in v else ("0", "", v)
        up, _, rev = rest.rpartition("-") if "-" in rest else (rest, "", "")
        return int(epoch or 0), up, rev
    (ea, ua, ra), (eb, ub, rb) = split(a), split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _deb_cmp_part(ua, ub) or _deb_cmp_part(ra, rb)


def _rpmvercmp(a: str, b: str) -> int:
    """rpm's rpmvercmp: alnum segments, digits beat letters, '~' sorts first, '^' after end."""
    while a or b:
        a, b = re.sub(r"^[^A-Za-z0-9~^]+", "", a), re.sub(r"^[^A-Za-z0-9~^]+", "", b)
        mark = next((m for m in "~^" if m in (a[:1], b[:1])), None)
        if mark == "^" and not (a and b):
            return -1 if not a else 1
        if mark:
            if a[:1] != b[:1]:
                return 1 if a[:1] != mark else -1
            a, b = a[1:], b[1:]
            continue
        if not (a and b):
            break
        pat = r"[0-9]*" if a[0].isdigit() else r"[A-Za-z]*"
        sa, sb = re.match(pat, a).group(), re.match(pat, b).group()
        if not sb:                      # a digit segment beats a letter one
            return 1 if a[0].isdigit() else -1
        a, b = a[len(sa):], b[len(sb):]
        if pat == r"[0-9]*":
            sa, sb = sa.lstrip("0"), sb.lstrip("0")
            sa, sb = sa.zfill(len(sb)), sb.zfill(len(sa))   # equal widths: text order = numbers
        if sa != sb:
            return -1 if sa < sb else 1
    return 0 if not a and not b else (-1 if not a else 1)


def rpm_compare(a: tuple[str, str], b: tuple[str, str]) -> int:
    """rpm's order of (Version, Release) pairs (-1, 0, 1)."""
    return _rpmvercmp(a[0], b[0]) or _rpmvercmp(a[1], b[1])


def _ambiguous(release: str, others: tuple[str, ...]) -> str | None:
    for other in others:
        if other != release and other.endswith(release):
            return f"{release} is a suffix of installed {other}: kdump-utils' suffix match " \
                   "picks the wrong kernel"
        if other != release and (release in other or other in release):
            return f"{release} and {other} contain one another: kdump-tools' unanchored grep " \
                   "and `grubby | grep -E` match both"
    return None


def lint(release: str, others: list[str] | tuple[str, ...] = (), cpu_limit_arg: str = NR_CPUS
         ) -> list[Finding]:
    """Every consumer of `uname -r` (facts.md sections 1 and 3) that would break on `release`."""
    _wellformed(release)
    if cpu_limit_arg not in (NR_CPUS, MAXCPUS):
        raise BadInput(f"cpu_limit_arg {cpu_limit_arg!r}: use {NR_CPUS!r} or {MAXCPUS!r}")
    out = []
    for rule, consumer, broken, problem, fix in _RULES:
        hit = broken(release, tuple(others), cpu_limit_arg)
        if hit:
            out.append(Finding(rule, consumer, hit if isinstance(hit, str) else problem, fix))
    return out


def _unmappable(fn, r: str) -> bool:
    try:
        fn(r)
    except CheckFailed:
        return True
    return False


_RULES = (
    ("too-long", "kernel (__NEW_UTS_LEN)", lambda r, o, c: len(r) > UTS_LEN,
     f"longer than {UTS_LEN} characters: `make prepare` fails", "shorten the localversion"),
    ("rhel6-nr-cpus", "RHEL 6 kdump.init", lambda r, o, c: c == NR_CPUS and _rhel6_refuses(r),
     f"2.6.32 build below {RHEL6_MIN_BUILD}: 'Your kernel is old', kdump refuses to start "
     "with nr_cpus=1", f"use build >= {RHEL6_MIN_BUILD} (2.6.32-{RHEL6_MIN_BUILD}.kdump) or "
     "maxcpus=1 instead of nr_cpus=1"),
    ("smp", "RHEL 6 kdump.init/mkdumprd", lambda r, o, c: "smp" in r,
     "strips every 'smp' to find /boot/vmlinuz-<rel> and initrd-<rel>kdump.img: files not "
     "found", "remove 'smp' from the localversion"),
    ("xen", "RHEL mkdumprd", lambda r, o, c: r.endswith("xen"),
     "a release ending in 'xen' is treated as a Xen dom0 kernel", "do not end with 'xen'"),
    ("debug-suffix", "kdump-utils", lambda r, o, c: re.search(r"[-+]debug$", r) is not None,
     "strips a -debug/+debug suffix and loads a different kernel",
     "do not end in -debug/+debug (e.g. use .dbg)"),
    ("64k", "kdump-utils (aarch64)", lambda r, o, c: "64k" in r,
     "'64k' means a 64K-page kernel: crashkernel reservation is enlarged", "avoid '64k'"),
    ("regex", "kdump-utils (grubby --info ALL | grep -E)",
     lambda r, o, c: _REGEX_META.search(r) is not None,
     "regex metacharacters in the release: the grep does not match the kernel",
     "use only [a-z0-9.-]"),
    ("deb", "Debian packaging (linux-image-<rel>)",
     lambda r, o, c: _unmappable(deb_version, r) or not re.fullmatch(r"[a-z0-9.+-]+", r),
     "package names are lowercase [a-z0-9.+-] and the version must be valid",
     "use lowercase letters, digits, '.' and '-', not ending in '-'"),
    ("rpm", "RPM packaging (Version/Release)", lambda r, o, c: _unmappable(rpm_version, r),
     "only letters, digits and ._+~^ are allowed ('-' only as our Version/Release split)",
     "use [a-z0-9.-]"),
    ("ambiguous", "kdump-utils / Debian kdump-tools", lambda r, o, c: _ambiguous(r, o),
     "overlaps another release", "add a distinct localversion (e.g. .kdump) so no release "
     "contains another"),
)


def suggest(release: str, others: list[str] | tuple[str, ...] = ()) -> str:
    """A release close to `release` that lints clean with nr_cpus=1 (keeps base, rc, build)."""
    if not lint(release, others):
        return release
    m = re.match(r"(\d+\.\d+(?:\.\d+)?(?:-rc\d+)?)(?:-(\d+)(?=\D|$))?", release)
    base, build = m.group(1), (int(m.group(2)) if m.group(2) else None)
    local = ".".join(re.findall(r"[a-z0-9]+", release[m.end():].lower()))
    while (cleaned := re.sub("smp|64k", "", local)) != local:
        local = cleaned
    if base.split("-")[0] == "2.6.32" and (build is None or build < RHEL6_MIN_BUILD):
        build = RHEL6_MIN_BUILD
    for extra in ("", "kdump", *(f"kdump{i}" for i in range(2, 10))):
        room = UTS_LEN - len(_join(base, extra, build)) - 1
        lv = ".".join(p for p in (local[:max(room, 0)].strip("."), extra) if p)
        cand = _join(base, lv, build)
        if not lint(cand, others):
            return cand
    raise CheckFailed(f"no safe release near {release!r}; pick a distinct localversion")


def check(release: str, cpu_limit_arg: str = NR_CPUS, others: list[str] | tuple[str, ...] = ()
          ) -> ReleaseReport:
    """Lint plus the package versions and, if unsafe, a suggestion (BadInput if malformed)."""
    findings = tuple(lint(release, others, cpu_limit_arg))

    def attempt(fn, *args):
        try:
            return fn(release, *args)
        except CheckFailed:
            return None
    return ReleaseReport(release, cpu_limit_arg, findings,
                         attempt(suggest, others) if findings else None,
                         attempt(deb_version), attempt(rpm_version))
