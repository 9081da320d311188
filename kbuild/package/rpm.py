"""RPM set, built with the real rpmbuild from one spec template: kernel, -debuginfo, kdump config.

Name is ours; Version and Release are the release policy's RPM mapping (release.rpm_version),
so several kernels install side by side (`installonlypkg(kernel)` tells dnf to keep them).
Why the configuration package never ships /etc/kdump.conf: docs/packaging.md.
"""
from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

from kbuild.package import kdumpcfg
from kbuild.build.verify import read_build_id
from kbuild.package import layout
from kbuild.package.payload import CONFIG_PACKAGE, Payload
from kbuild.package.render import SpecText, render, spec_text
from kbuild.package.tree import PackageTree
from kbuild.package.bootcfg import BootEntries, bls_entry
from kbuild.core.errors import CheckFailed
from kbuild.core.proc import run

NAMES = {"kernel": "kernel-kdump-pipeline", "debuginfo": "kernel-kdump-pipeline-debuginfo",
         "config": CONFIG_PACKAGE}
HELPER_DIR = "/usr/libexec/kdump-pipeline"
HELPER = f"{HELPER_DIR}/kdump-conf"
SHARE = "/usr/share/kdump-pipeline"
STATE = "/var/lib/kdump-pipeline"
# Scriptlets, each from packaging/rpm/<name with . for _>.j2, pasted into the spec.
SCRIPTLETS = ("kernel.posttrans", "kernel.preun", "config.triggerin", "config.preun")


def context(p: Payload, kdump: kdumpcfg.KdumpSettings, boot: BootEntries) -> dict:
    key = kdumpcfg.CONF_TARGETS[kdump.kdump_conf_target][0]
    return {"names": NAMES, "release": p.release, "version": p.rpm_version,
            "rpm_release": p.rpm_release, "build_id": p.build_id, "boot": boot, "kdump": kdump,
            "kdump_target": kdump.kdump_conf_target, "kdump_key": key, "helper": HELPER,
            "helper_dir": HELPER_DIR, "share": SHARE, "state": STATE,
            "readme": f"/usr/share/doc/{NAMES['config']}/README"}


def build(p: Payload, kdump: kdumpcfg.KdumpSettings, boot: BootEntries, work: Path) -> list[Path]:
    """Stage one buildroot for the three packages, render the spec, run rpmbuild -bb."""
    ctx = context(p, kdump, boot)
    root = stage(p, kdump, boot, work / "payload", ctx)
    links = sorted("/" + str(f.relative_to(root.root)) for f in
                   (root.root / "usr/lib/debug/.build-id").rglob("*.debug"))
    spec = work / f"{NAMES['kernel']}.spec"
    spec.write_text(spec_file(p, ctx, root.root, links))
    out = work / "out"
    run(["rpmbuild", "-bb", "--nodeps", "--target", p.rpm_arch,
         "--define", f"_topdir {work / 'top'}", "--define", f"_rpmdir {out}",
         "--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
         str(spec)], env=rpm_env(p, work), log=work / "rpmbuild.log")
    rpms = sorted(out.glob("*.rpm"))
    if len(rpms) != len(NAMES):
        raise CheckFailed(f"rpmbuild wrote {[r.name for r in rpms]}, expected {len(NAMES)} packages")
    return rpms


def spec_file(p: Payload, ctx: dict, payload: Path, build_id_links: list[str]) -> str:
    """The spec: rpm/kernel.spec.j2 under the rpm-spec rule, scriptlets as escaped spec text."""
    scripts = {name.replace(".", "_"): scriptlet(name, ctx) for name in SCRIPTLETS}
    # %install is shell: the staging folder as one quoted shell word, then as spec text.
    return render("rpm/kernel.spec.j2", payload=spec_text(shlex.quote(str(payload))),
                  build_id_links=build_id_links,
                  scripts=scripts, date=_date(p.epoch), **ctx)


def rpm_env(p: Payload, work: Path) -> dict[str, str]:
    """No ~/.rpmmacros or locale leaks into the packages; dates from the build."""
    return {"SOURCE_DATE_EPOCH": str(p.epoch), "HOME": str(work), "LC_ALL": "C", "TZ": "UTC"}


def stage(p: Payload, kdump: kdumpcfg.KdumpSettings, boot: BootEntries, folder: Path,
          ctx: dict) -> PackageTree:
    """The buildroot: kernel files, debug files with .build-id links, the config package's files."""
    s, rel = PackageTree(folder, p.objcopy), p.release
    s.copy(f"/boot/vmlinuz-{rel}", p.image, 0o755)
    s.copy(f"/boot/System.map-{rel}", p.system_map)
    s.copy(f"/boot/config-{rel}", p.config)
    # Where kernel-install and Fedora's grub plugin expect the image and the BLS entry.
    s.copy(f"/lib/modules/{rel}/vmlinuz", p.image, 0o755)
    s.text(f"/lib/modules/{rel}/bls.conf", bls_entry(boot))
    debug = f"/usr/lib/debug/lib/modules/{rel}"
    s.copy(f"{debug}/vmlinux", p.vmlinux)
    s.symlink(layout.build_id_link(p.build_id), f"../../lib/modules/{rel}/vmlinux")
    for mod, src in p.modules:
        if not mod.endswith(".ko"):
            s.copy(f"/lib/modules/{rel}/{mod}", src)
            continue
        s.stripped(f"/lib/modules/{rel}/{mod}", src)
        s.copy(f"{debug}/{mod}.debug", src)
        bid = read_build_id(src)
        if bid:
            s.symlink(layout.build_id_link(bid), f"../../lib/modules/{rel}/{mod}.debug")
    s.text(f"{SHARE}/kdump.conf", kdump_conf(kdump))
    s.text(HELPER, render("rpm/kdump-conf.sh.j2", **ctx), 0o755)
    s.text(ctx["readme"], render("rpm/config-README.j2", **ctx))
    s.dir(STATE)
    s.seal(p.epoch)
    return s


def kdump_conf(kdump: kdumpcfg.KdumpSettings) -> str:
    """/etc/kdump.conf as our settings spell it (packaging/kdump/kdump.conf.j2)."""
    key = kdumpcfg.CONF_TARGETS[kdump.kdump_conf_target][0]
    return render("kdump/kdump.conf.j2", package=NAMES["config"], target=kdump.kdump_conf_target,
                      key=key, values=kdumpcfg.kdump_conf_values(kdump))


def scriptlet(name: str, ctx: dict) -> SpecText:
    """One scriptlet body (shell rule), then spec text: `%` would be a macro to rpmbuild."""
    return spec_text(render(f"rpm/{name}.j2", **ctx).rstrip("\n"))


def _date(epoch: int) -> str:
    return time.strftime("%a %b %d %Y", time.gmtime(epoch))


def check(rpms: list[Path], p: Payload, work: Path) -> list[str]:
    """rpmlint, shellcheck on every scriptlet, install into a throwaway root, layout, build-id."""
    work.mkdir(parents=True, exist_ok=True)
    done = [rpmlint(rpms, work, modules=any(m.endswith(".ko") for m, _ in p.modules), pie_vmlinux=is_pie(p.vmlinux))]
    count = 0
    for r in rpms:
        for i, (what, body) in enumerate(scriptlets(r)):
            f = work / "scripts" / f"{r.stem}.{what}.{i}.sh"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(body)
            count += 1
            res = run(["shellcheck", "--shell=sh", str(f)], check=False)
            if res.returncode:
                raise CheckFailed(f"shellcheck: {r.name} {what}: {res.output.strip().splitlines()[1:3]}")
    done.append(f"shellcheck: {count} scriptlets clean")
    root = work / "root"
    run(["rpm", "--root", str(root), "--initdb"])
    # --ignorearch: a cross-built set (aarch64 on an x86_64 host) installs into the scratch root too
    res = run(["rpm", "--root", str(root), "-i", "--nodeps", "--noscripts", "--notriggers", "--ignorearch",
               *map(str, rpms)], check=False)
    if res.returncode:
        raise CheckFailed(f"rpm -i into a scratch root failed (file conflicts?): "
                          f"{res.output.strip().splitlines()[-1:]}")
    done.append(layout.check_layout(root, p, f"/usr/lib/debug/lib/modules/{p.release}/vmlinux",
                                 ".ko.debug", "rpm --root -i"))
    return done


_HEADER = re.compile(r"^(\w+) (?:scriptlet|program) \(using (\S+)\)(?::| -- .*)$")


def scriptlets(rpm: Path) -> list[tuple[str, str]]:
    """(kind, body) of every scriptlet and trigger, as `rpm -qp --scripts --triggers` prints them."""
    out = []
    for flag in ("--scripts", "--triggers"):
        text = run(["rpm", "-qp", flag, str(rpm)]).output
        current = None
        for line in text.splitlines():
            m = _HEADER.match(line)
            if m:
                if m.group(2) not in ("/bin/sh", "/bin/bash"):
                    raise CheckFailed(f"{rpm.name}: {m.group(1)} runs {m.group(2)}, not a shell")
                current = [m.group(1), []]
                out.append(current)
            elif current is not None:
                current[1].append(line)
    return [(kind, "\n".join(lines) + "\n") for kind, lines in out]


def is_pie(elf: Path) -> bool:
    """ET_DYN: a vmlinux linked -pie (arm64 with RELOCATABLE), which rpmlint takes for a library."""
    with open(elf, "rb") as fh:
        head = fh.read(18)
    return head[:4] == b"\x7fELF" and int.from_bytes(head[16:18], "little") == 3


def rpmlint(rpms: list[Path], work: Path, modules: bool = True, pie_vmlinux: bool = False) -> str:
    """No error or warning may remain except what packaging/rpm/rpmlintrc.j2 filters, each
    filter with its reason (rendered per build: rpmlint counts an unused filter as an error)."""
    rc = work / "rpmlintrc"
    rc.write_text(render("rpm/rpmlintrc.j2", modules=modules, pie_vmlinux=pie_vmlinux))
    res = run(["rpmlint", "-r", str(rc), *map(str, rpms)], env={"HOME": str(work)},
              check=False)
    bad = [ln for ln in res.output.splitlines() if re.search(r": [EW]: ", ln)]
    if bad or res.returncode:
        tags = sorted({ln.split(": ", 2)[2].split()[0] for ln in bad})
        raise CheckFailed(f"rpmlint: {len(bad)} error/warning(s) ({', '.join(tags)}), first: "
                          f"{bad[0] if bad else res.output.strip().splitlines()[-1:]}")
    raw = run(["rpmlint", *map(str, rpms)], env={"HOME": str(work)}, check=False)
    filtered = sum(1 for ln in raw.output.splitlines() if re.search(r": [EW]: ", ln))
    return (f"rpmlint: {len(rpms)} packages, no errors or warnings ({filtered} findings filtered "
            f"by packaging/rpm/rpmlintrc.j2, each with its reason)")
