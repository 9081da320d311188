"""crashkernel= as the kernel parses it, and the boot entries that put it on the command line.

Three entries, one template each (packaging/boot/): a legacy GRUB `grub.conf` stanza in the
tutorial's style, a GRUB 2 `/etc/default/grub.d/` drop-in, and a Boot Loader Specification
entry. `validate` runs the real tools on them: `sh -n` and shellcheck on the drop-in,
`grub-script-check` on the menuentry the drop-in yields, and a key check on the BLS entry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kbuild.core import arch as archmod
from kbuild.core import sizes
from kbuild.core.arch import Arch
from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.sizes import fmt
from kbuild.package.render import render
from kbuild.core.proc import run
from kbuild.core.paths import CONFIGS
from kbuild.package.kdumpcfg import kernel_tokens, load_strict, printable

SMALLEST_WORKING = 96 << 20   # facts.md section 7: the smallest reservation that captured a dump
# Upper bounds, so that a typo (1E for 1G) is refused instead of shipped: distro defaults reserve
# at most 1G even on multi-TiB machines, and x86-64 addresses at most 4P (52 bits) of RAM.
MAX_RESERVATION = 64 << 30
MAX_ADDRESS = 1 << 52
# Boot Loader Specification type 1 keys, plus the GRUB blscfg extensions Fedora/RHEL use.
BLS_KEYS = ("title", "version", "machine-id", "sort-key", "linux", "initrd", "efi", "options",
            "devicetree", "devicetree-overlay", "architecture",
            "grub_users", "grub_arg", "grub_class", "id")
LEGACY_KEYS = ("title", "root", "kernel", "initrd")
# What Debian's kdump-tools ships as /etc/default/grub.d/kdump-tools.cfg: our drop-in must win.
KDUMP_TOOLS_DROPIN = 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT crashkernel=384M-:128M"\n'


@dataclass(frozen=True)
class Crashkernel:
    """A parsed crashkernel= value: one size, or ranges of RAM each with a size."""

    text: str
    size: int | None = None
    ranges: tuple[tuple[int, int | None, int], ...] = ()   # (start, end or None, size)
    offset: int | None = None
    suffix: str | None = None                               # "high" or "low"


def _mem(text: str, pos: int, what: str, value: str) -> tuple[int, int]:
    """One memparse() number at `pos`; the grammar lives in kbuild.core.sizes."""
    try:
        return sizes.memparse(text, pos, f"crashkernel={value}: {what}")
    except sizes.SizeError as e:
        raise CheckFailed(str(e)) from None


def parse_crashkernel(value: str) -> Crashkernel:
    """The grammar of kernel/crash_core.c: `size[@offset]`, `start-[end]:size,...[@offset]`,
    `size,high`, `size,low`; numbers as memparse() reads them (0x hex, 0 octal, K..E suffix)."""
    hint = "; use size[@offset], start-[end]:size,...[@offset] or size,high|low, e.g. 256M"
    v = value.strip() if isinstance(value, str) else ""
    if not v or v != value or any(c.isspace() for c in v):
        raise CheckFailed(f"crashkernel={value!r}: empty or contains whitespace{hint}")
    if v == "auto":
        raise CheckFailed("crashkernel=auto is a RHEL 6-8 kernel patch; upstream kernels reserve "
                          f"nothing with it{hint}")
    try:
        for suffix in ("high", "low"):
            if v.endswith("," + suffix):
                size, end = _mem(v, 0, "the size", v)
                if end != len(v) - len(suffix) - 1:
                    raise CheckFailed(f"crashkernel={v}: unrecognized {v[end]!r} before ,{suffix}")
                return _nonzero(Crashkernel(v, size=size, suffix=suffix))
        if ":" in v:
            return _nonzero(_parse_ranges(v))
        size, end = _mem(v, 0, "the size", v)
        offset = None
        if end < len(v) and v[end] == "@":
            offset, end = _mem(v, end + 1, "the offset after '@'", v)
        if end != len(v):
            raise CheckFailed(f"crashkernel={v}: unrecognized {v[end:]!r}")
        return _nonzero(Crashkernel(v, size=size, offset=offset))
    except CheckFailed as e:
        raise CheckFailed(str(e) + hint) from None


def _parse_ranges(v: str) -> Crashkernel:
    ranges, pos = [], 0
    while True:
        start, pos = _mem(v, pos, "a range start", v)
        if pos >= len(v) or v[pos] != "-":
            raise CheckFailed(f"crashkernel={v}: '-' expected after a range start")
        end = None
        if pos + 1 < len(v) and v[pos + 1] != ":":
            end, pos = _mem(v, pos + 1, "a range end", v)
            if end <= start:
                raise CheckFailed(f"crashkernel={v}: range end {fmt(end)} <= start {fmt(start)}")
        else:
            pos += 1
        if pos >= len(v) or v[pos] != ":":
            raise CheckFailed(f"crashkernel={v}: ':' expected after a range")
        size, pos = _mem(v, pos + 1, "a size", v)
        ranges.append((start, end, size))
        if pos < len(v) and v[pos] == ",":
            pos += 1
            continue
        break
    offset = None
    if pos < len(v) and v[pos] == "@":
        offset, pos = _mem(v, pos + 1, "the offset after '@'", v)
    if pos != len(v):
        raise CheckFailed(f"crashkernel={v}: unrecognized {v[pos:]!r}")
    return Crashkernel(v, ranges=tuple(ranges), offset=offset)


def _nonzero(ck: Crashkernel) -> Crashkernel:
    """Something is reserved, and nothing is above the sane bounds (a typo such as 1E for 1G)."""
    sizes = [ck.size] if ck.size is not None else [r[2] for r in ck.ranges]
    if not any(sizes):
        raise CheckFailed(f"crashkernel={ck.text}: the size is zero, nothing would be reserved")
    if max(sizes) > MAX_RESERVATION:
        raise CheckFailed(f"crashkernel={ck.text}: a reservation of {fmt(max(sizes))} is above the "
                          f"{fmt(MAX_RESERVATION)} bound kbuild accepts (distro defaults reserve at "
                          "most 1G; is it a typo?)")
    bounds = [ck.offset or 0, *(b for r in ck.ranges for b in r[:2] if b is not None)]
    if max(bounds) > MAX_ADDRESS:
        raise CheckFailed(f"crashkernel={ck.text}: {fmt(max(bounds))} is above the {fmt(MAX_ADDRESS)} "
                          "bound kbuild accepts for a RAM size or an offset (x86-64 addresses 52 bits)")
    return ck


def crashkernel_warnings(ck: Crashkernel, smallest: int = SMALLEST_WORKING,
                         basis: str = "the smallest reservation measured (facts.md) to capture a dump"
                         ) -> list[str]:
    """Legal but likely to lose the dump (facts.md section 5 and 7). `smallest` is the build's own
    measured minimum when there is one (crash-test or install-test --find-crashkernel)."""
    out = []
    if ck.ranges and ck.ranges[0][0] > 0:
        out.append(f"crashkernel={ck.text} reserves nothing on machines with less than "
                   f"{fmt(ck.ranges[0][0])} of RAM (small VMs); an explicit size is safer")
    sizes = [ck.size] if ck.size is not None else [r[2] for r in ck.ranges]
    small = [s for s in sizes if 0 < s < smallest]
    if small:
        out.append(f"crashkernel={ck.text}: {fmt(min(small))} is below {fmt(smallest)}, {basis}; "
                   "the capture kernel may run out of memory")
    return out


# Title words: they land in a shell word (grubby --title), a GRUB single-quoted menuentry title,
# and `title` lines of grub.conf and BLS entries, which run to the end of the line.
TITLE = re.compile(r"[A-Za-z0-9._,:()+/@-]+")
TITLE_RULE = "words of letters, digits and . _ , : ( ) + / @ -, single spaces"
RELEASE = "{release}"   # the one placeholder of the title, replaced by plain substitution
# GRUB legacy device syntax: (fdN), (hdN), (hdN,M), (hdN,M,x) or (hdN,x) (BSD), (nd), (cd).
LEGACY_DEVICE = re.compile(r"\((?:fd[0-9]{1,3}|hd[0-9]{1,3}(?:,[0-9]{1,3})?(?:,[a-h])?|nd|cd)\)")
KERNELOPTS = "$kernelopts"   # the grubenv variable of Fedora/RHEL 8 BLS entries: the one variable


def _title(name: str, value: str) -> str:
    printable(name, value)
    if not value or any(not TITLE.fullmatch(w.replace(RELEASE, "r")) for w in value.split(" ")):
        raise BadInput(f"{name} {value!r}: use {TITLE_RULE} ({RELEASE} is the kernel release)")
    return value


def _options(name: str, value: str, variables: tuple[str, ...] = ()) -> str:
    words = kernel_tokens(name, value, variables)
    if any(w.startswith("crashkernel=") for w in words):
        raise BadInput(f"{name} {value!r}: crashkernel= comes from configs/kdump.toml, not here")
    return value


@dataclass(frozen=True)
class DropIn:
    name: str

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.cfg", self.name):
            raise BadInput(f"name {self.name!r} must be a plain *.cfg file name (grub-mkconfig "
                           "only sources *.cfg)")


@dataclass(frozen=True)
class Legacy:
    root: str
    options: str

    def __post_init__(self):
        printable("root", self.root)
        if not LEGACY_DEVICE.fullmatch(self.root):
            raise BadInput(f"root {self.root!r}: use GRUB legacy device syntax such as (hd0,0)")
        _options("options", self.options)


@dataclass(frozen=True)
class Bls:
    options: str

    def __post_init__(self):
        _options("options", self.options, (KERNELOPTS,))


@dataclass(frozen=True)
class BootSettings:
    """configs/boot.toml, read by the strict loader: bad input is exit 2 naming file and key."""

    title: str
    grub_dropin: DropIn
    legacy: Legacy
    bls: Bls

    def __post_init__(self):
        _title("title", self.title)


@dataclass(frozen=True)
class BootEntries:
    """Everything the three entries and the scriptlets say about one kernel; validated when
    built, so no entry can carry a value outside its grammar."""

    release: str
    title: str
    crashkernel: str
    dropin_name: str
    legacy_root: str
    legacy_options: str
    bls_options: str
    efi_arch: str = "x64"          # BLS `architecture`, from configs/arches.toml
    legacy_grub: bool = True       # whether a legacy GRUB stanza makes sense on this arch

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", self.release):
            raise BadInput(f"release {self.release!r} is unsafe in boot entries")
        _title("title", self.title)
        try:
            parse_crashkernel(self.crashkernel)
        except CheckFailed as e:
            raise BadInput(str(e)) from None
        DropIn(self.dropin_name)
        Legacy(self.legacy_root, self.legacy_options)
        Bls(self.bls_options)
        if not re.fullmatch(r"[a-z0-9]+", self.efi_arch):
            raise BadInput(f"efi_arch {self.efi_arch!r}: use EFI's architecture name, such as x64 or aa64")

    @classmethod
    def for_release(cls, release: str, crashkernel: str, path: Path | None = None,
                    arch: Arch | None = None) -> "BootEntries":
        b, arch = load(path), arch or archmod.get()
        return cls(release, b.title.replace(RELEASE, release), crashkernel, b.grub_dropin.name,
                   b.legacy.root, b.legacy.options, b.bls.options, arch.efi_arch, arch.legacy_grub)

    @property
    def args(self) -> str:
        return f"crashkernel={self.crashkernel}"


def load(path: Path | None = None) -> BootSettings:
    return load_strict(BootSettings, Path(path or CONFIGS / "boot.toml"))


def grub_conf(e: BootEntries) -> str:
    return render("boot/grub.conf.j2", e=e)


def grub_dropin(e: BootEntries) -> str:
    return render("boot/grub-dropin.cfg.j2", e=e)


def bls_entry(e: BootEntries) -> str:
    return render("boot/bls.conf.j2", e=e)


def grub2_menuentry(e: BootEntries, cmdline: str) -> str:
    """The menuentry grub-mkconfig's 10_linux writes for our kernel, given the final cmdline."""
    return render("boot/menuentry.cfg.j2", e=e, cmdline=cmdline)


def write(e: BootEntries, folder: Path) -> tuple[Path, ...]:
    """dist/<release>/boot/: the entries (no legacy GRUB stanza on an arch legacy GRUB cannot boot)
    plus the GRUB 2 menuentry the drop-in yields."""
    files = {
        **({"grub.conf": grub_conf(e)} if e.legacy_grub else {}),
        f"grub.d/{e.dropin_name}": grub_dropin(e),
        f"loader/entries/{e.release}.conf": bls_entry(e),
        "grub2-menuentry.cfg": grub2_menuentry(e, dropin_cmdline(e)),
    }
    out = []
    for rel, text in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        out.append(p)
    return tuple(out)


def dropin_cmdline(e: BootEntries, linux: str = "", default: str = "quiet") -> str:
    """Source /etc/default/grub's two variables, kdump-tools' drop-in, then ours; the result."""
    script = (f'GRUB_CMDLINE_LINUX="{linux}"\nGRUB_CMDLINE_LINUX_DEFAULT="{default}"\n'
              + KDUMP_TOOLS_DROPIN + grub_dropin(e)
              + 'printf "%s %s\\n" "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT"\n')
    res = run(["sh", "-e", "-c", script], check=False)
    if res.returncode != 0:
        raise CheckFailed(f"GRUB 2 drop-in {e.dropin_name} fails when sourced: {res.output.strip()}")
    return " ".join(res.output.split())


def parse_keyed(text: str) -> list[tuple[str, str]]:
    """`key value` lines (BLS entry, grub.conf stanza); blank lines and # comments skipped."""
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            out.append((key, value.strip()))
    return out


def validate(e: BootEntries, work: Path) -> str:
    """Run the real validators on every entry; CheckFailed names the first problem."""
    work.mkdir(parents=True, exist_ok=True)
    image, initrd = f"/vmlinuz-{e.release}", f"/initramfs-{e.release}.img"
    if e.legacy_grub:
        _check_keyed("grub.conf stanza", grub_conf(e), LEGACY_KEYS, e, "kernel",
                     {"title": e.title, "kernel": image, "initrd": initrd})
    _check_keyed("BLS entry", bls_entry(e), BLS_KEYS, e, "options",
                 {"title": e.title, "version": e.release, "linux": image, "initrd": initrd,
                  "architecture": e.efi_arch})
    dropin = work / e.dropin_name
    dropin.write_text(grub_dropin(e))
    run(["sh", "-n", str(dropin)])
    run(["shellcheck", "--shell=sh", str(dropin)])
    for linux, default in (("", "quiet"), ("ro crashkernel=512M", "quiet splash"), ("", "")):
        words = dropin_cmdline(e, linux, default).split()
        got = [w for w in words if w.startswith("crashkernel=")]
        if got != [e.args]:
            raise CheckFailed(f"GRUB 2 drop-in {e.dropin_name}: with GRUB_CMDLINE_LINUX={linux!r} the "
                              f"kernel would get {got or 'no crashkernel='}, expected [{e.args!r}]")
    menu = work / "menuentry.cfg"
    menu.write_text(grub2_menuentry(e, dropin_cmdline(e)))
    run(["grub-script-check", str(menu)])
    legacy = "grub.conf keys" if e.legacy_grub else "no grub.conf (legacy GRUB does not boot this arch)"
    return f"{legacy}, BLS keys (architecture {e.efi_arch}), sh -n, shellcheck, grub-script-check: ok"


def check_efi_stub(image: Path, arch: Arch) -> str:
    """Where the arch boots through GRUB on EFI only (arm64), the image must be an EFI application
    (PE/COFF "MZ" header from CONFIG_EFI's stub), or the packages' boot entries cannot boot it."""
    if not arch.efi_stub:
        return f"{image.name}: no EFI stub needed on {arch.name}"
    with open(image, "rb") as fh:
        head = fh.read(2)
    if head != b"MZ":
        raise CheckFailed(f"{image}: no EFI stub (PE/COFF MZ header); GRUB on EFI cannot boot it on {arch.name}: "
                          "build with CONFIG_EFI=y")
    return f"{image.name}: EFI stub present (GRUB on EFI can boot it)"


def _check_keyed(what: str, text: str, known: tuple[str, ...], e: BootEntries, args_key: str,
                 expect: dict[str, str]) -> None:
    """Known keys only; each expected key once, starting with the expected value; one crashkernel=."""
    pairs = parse_keyed(text)
    keys = [k for k, _ in pairs]
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise CheckFailed(f"{what}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for key, want in expect.items():
        values = [v for k, v in pairs if k == key]
        got = values[0].split(" ")[0] if key == args_key and values else values[0] if values else None
        if len(values) != 1 or got != want:
            raise CheckFailed(f"{what}: expected one `{key} {want}`, found {values or 'none'}")
    args = " ".join(v for k, v in pairs if k == args_key).split()
    if [a for a in args if a.startswith("crashkernel=")] != [e.args]:
        raise CheckFailed(f"{what}: `{args_key}` must carry exactly {e.args}")
