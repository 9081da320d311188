"""invoke tasks: argument parsing and wiring only; the work lives in kbuild/.

Every flag may also take its default from a `kbuild:` section of invoke's config files
(invoke.yaml beside this file, ~/.invoke.yaml, `invoke -f FILE`, INVOKE_KBUILD_* variables);
see kbuild/core/defaults.py and the README.
"""
import sys
from pathlib import Path

from invoke import Collection, task

from kbuild.build import release as release_mod
from kbuild.build import stage as build_mod
from kbuild.configure import checkconfig
from kbuild.configure import stage as configure_mod
from kbuild.core import arch as archmod
from kbuild.core import tools
from kbuild.core import defaults
from kbuild.core.cli import configured, guarded, plain_config_errors
from kbuild.core.errors import CheckFailed
from kbuild.core.manifest import Manifest
from kbuild.crashtest import sizing as crashsize
from kbuild.crashtest import stage as crashtest
from kbuild.package import kdumpcfg
from kbuild.installtest import sizing as installtest_sizing
from kbuild.installtest import stage as installtest
from kbuild.installtest.settings import InstallTestSettings
from kbuild.installtest.watch import PHASES as INSTALL_PHASES
from kbuild.package import stage as package_mod
from kbuild.core.settings import BuildSettings, ConfigureSettings, profile_names
from kbuild.core.source import DEFAULT_SOURCE, locate
from kbuild.core.toolchain import Toolchain

SOURCE_HELP = f"kernel directory or linux-*.tar.xz (default: {DEFAULT_SOURCE})"
ARCH_HELP = f"target architecture (Kbuild's ARCH) from configs/arches.toml: {', '.join(sorted(archmod.table()))} (default: {archmod.DEFAULT})"


@task(help={})
@guarded
@configured
def doctor(c):
    """Check every external tool and build dependency; name the Debian package for each missing one."""
    text, ok = tools.report(tools.survey())
    print(text)
    if not ok:
        raise CheckFailed("required tools are missing (see the list above)")


@task(iterable=["fragment"], help={
    "source": SOURCE_HELP,
    "profile": f"starting profile from configs/profiles: {', '.join(profile_names())} (default: minimal)",
    "base_config": "start from this .config instead of a profile",
    "fragment": "CONFIG_X=value fragment applied after the profile; repeatable, later wins",
    "build_dir": "out-of-tree build folder that receives .config (default: build/<tree>-<profile>)",
    "json": "print the ledger as JSON instead of a table",
    "arch": ARCH_HELP,
})
@guarded
@configured
def configure(c, source=None, profile=None, base_config=None, fragment=None, build_dir=None, json=False, arch=None):
    """Write <build-dir>/.config with the kdump requirements enforced, cross-checked by `make olddefconfig`."""
    settings = ConfigureSettings.from_flags(source, profile, base_config, fragment, build_dir, arch=arch)
    try:
        result = configure_mod.configure(settings)
    except configure_mod.ConfigureFailed as e:
        print(e.ledger.to_json() if json else e.ledger.table())
        raise
    print(result.ledger.to_json() if json else result.ledger.table())
    if not json:
        verb = "unchanged (no input changed)" if result.reused else "wrote"
        print(f"\n{verb} {result.config} for Linux {result.tree.version}")


@task(help={
    "config": "the .config file to check (for example /boot/config-$(uname -r))",
    "source": SOURCE_HELP + "; its version selects the requirements",
    "json": "print the result as JSON",
    "arch": ARCH_HELP + "; the .config's architecture",
})
@guarded
@configured
def check_config(c, config, source=None, json=False, arch=None):
    """Check an existing .config against the kdump requirements; exit 1 if any fails."""
    result = checkconfig.check_config(Path(config), locate(source), Toolchain.for_arch(archmod.get(arch or archmod.DEFAULT)))
    print(result.to_json() if json else result.lines())
    if not result.ok:
        failed = [r.capability for r in result.results if not r.ok]
        raise CheckFailed(f"{config} fails {len(failed)} kdump requirement(s): {', '.join(failed)}")


@task(iterable=["other"], help={
    "release": "the release string to lint, as `uname -r` would print it",
    "other": "a release installed alongside (repeatable): catches suffix and substring clashes",
    "json": "print the findings as JSON"})
@guarded
@configured
def release_check(c, release, other=None, json=False):
    """Lint a release string against every known kdump consumer; exit 1 with the consumer that breaks."""
    report = release_mod.check(release, others=tuple(other or ()))
    if json:
        print(report.to_json())
    else:
        for f in report.findings:
            print(f"FAIL  {f}")
        if report.ok:
            print(f"ok  {release}: deb {report.deb_version}, rpm {'-'.join(report.rpm_version)}")
    if not report.ok:
        raise CheckFailed(f"release {release!r} breaks {len(report.findings)} consumer(s); "
                          f"a safe alternative is {report.suggestion!r}")


@task(iterable=["fragment"], help={
    "source": SOURCE_HELP,
    "profile": f"starting profile: {', '.join(profile_names())} (default: minimal)",
    "base_config": "start from this .config instead of a profile",
    "fragment": "CONFIG_X=value fragment applied after the profile; repeatable, later wins",
    "build_dir": "persistent out-of-tree build folder (default: build/<tree>-<profile>)",
    "localversion": "release suffix: <version>-[<build>.]<localversion> (default: the arch's, kdump on x86_64, arm64.kdump on arm64)",
    "build_number": "build number in the release, e.g. 3 gives 6.1.192-3.kdump",
    "jobs": "parallel make jobs (default: number of CPUs)",
    "no_ccache": "compile without ccache even when it is installed",
    "allow_unsafe_release": "build a release the linter flags, and record the findings in the manifest",
    "no_wait": "if another run is building in the same folder, exit 1 at once instead of waiting for it",
    "arch": ARCH_HELP + "; cross-compiled unless it is the host's",
    "distcc": "compile on these distcc hosts, distcc's syntax, e.g. '10.0.0.2/8,lzo 10.0.0.3/8' (default: "
              "kbuild.distcc, then DISTCC_HOSTS); each host is probed first and -j follows their slots",
})
@guarded
@configured
def build_kernel(c, source=None, profile=None, base_config=None, fragment=None, build_dir=None,
                 localversion=None, build_number=None, jobs=None, no_ccache=False, allow_unsafe_release=False,
                 no_wait=False, arch=None, distcc=None):
    """Configure, compile out of tree, verify the result, and write dist/<release>/manifest.json."""
    settings = BuildSettings.from_flags(
        ConfigureSettings.from_flags(source, profile, base_config, fragment, build_dir, arch=arch),
        localversion, build_number, jobs, not no_ccache, allow_unsafe_release,
        wait=not no_wait, origins=defaults.filled(), distcc=distcc)
    outcome = build_mod.build_kernel(settings)
    for w in outcome.warnings:
        print(f"warning: {w}", file=sys.stderr)
    m = outcome.manifest
    state = "up to date" if outcome.up_to_date else f"built in {outcome.seconds:.0f}s"
    print(f"{m.release.release}: {state}; build-id {m.build_id}")
    farm = m.record.get("distcc")
    if farm and not outcome.up_to_date:
        jobs = ", ".join(f"{h} {n}" for h, n in farm["jobs_per_host"].items())
        print(f"distcc: jobs per host: {jobs}; local {farm['local_jobs']}, fallbacks {farm['fallbacks']}")
    print(f"manifest: {m.path}")


@task(help={
    "formats": "package families to build, comma-separated: deb, rpm (default: deb,rpm)",
    "build_dir": "package the newest build made in this folder (default: the newest manifest under dist/)",
    "kdump_config": "kdump settings file to use instead of configs/kdump.toml (path, core_collector, failure_action, ...)",
    "no_wait": "if another run is packaging or testing the same release, exit 1 at once instead of waiting",
})
@guarded
@configured
def package(c, formats=None, build_dir=None, kdump_config=None, no_wait=False):
    """Build the DEB and RPM sets (kernel, debug vmlinux, kdump config, boot entries) of the last build into dist/<release>/."""
    wanted = package_mod.parse_formats(formats)
    kdump = kdumpcfg.load(Path(kdump_config)) if kdump_config else None
    result = package_mod.package(Manifest.find(build_dir=build_dir), wanted, kdump, wait=not no_wait)
    print(result.lines())
    print(f"{result.release}: {len(result.packages)} packages in {result.dist} ({result.seconds:.0f}s)")


@task(help={
    "manifest": "build manifest to test (default: dist/<release>/manifest.json for --release, else the newest one)",
    "release": "test dist/<release>/manifest.json, e.g. 6.1.192-kdump",
    "memory": "guest RAM, e.g. 1G or 768M (default in configs/crashtest.toml: 1G)",
    "crashkernel": "crashkernel= size for the production kernel, e.g. 128M (default: crashkernel in configs/kdump.toml)",
    "kexec": "how the capture kernel is loaded: file (kexec -s, kexec_file_load; default) or classic (kexec -c)",
    "timeout": "seconds the VM may run before the phase it is in counts as timed out (default: 300)",
    "keep": "also keep the initramfs and the dump disk image, in dist/<release>/crash-test/work/",
    "accel": "auto (KVM if a short trial boot works, else TCG; default), kvm or tcg",
    "kdump_config": "kdump settings file to use instead of configs/kdump.toml (path, core_collector, failure_action, ...)",
    "find_crashkernel": "bisect the smallest crashkernel= that still yields a verified dump; record it in the manifest",
    "cpus": "vCPUs of the guest, 2 or more (default in configs/crashtest.toml: 2); pinned triggers run on the last",
    "trigger": "crash path: sysrq (default), panic, bug, exception, softlockup, nmi, warning, "
               "a comma-separated list, or all (the whole matrix in one call, one report)",
    "no_wait": "if another run is using the same dist/<release>/, exit 1 at once instead of waiting",
})
@guarded
@configured
def crash_test(c, manifest=None, release=None, memory=None, crashkernel=None, kexec=None, timeout=None,
               keep=False, accel=None, kdump_config=None, find_crashkernel=False, cpus=None, trigger=None,
               no_wait=False):
    """Boot the built kernel in QEMU on N vCPUs, crash it (sysrq, LKDTM or NMI), capture the vmcore with kdump and verify it; exit 1 on failure."""
    settings = crashtest.CrashTestSettings.from_flags(memory, crashkernel, kexec, timeout, accel, keep, kdump_config,
                                                      cpus, trigger)
    found = Manifest.find(path=manifest, release=release)
    try:
        if find_crashkernel:
            sizing = crashsize.find_crashkernel(found, settings, wait=not no_wait)
            for t in sizing.trials:
                print(f"  crashkernel={t['crashkernel']:>6}  {'ok  ' if t['ok'] else 'FAIL'}  {t['message']}")
            print(f"smallest working crashkernel={sizing.minimum} with {settings.cpus} vCPUs; recommended "
                  f"crashkernel={sizing.recommended}{'; ' + sizing.note if sizing.note else ''} (recorded in {found.path})")
            runs, where = [sizing.report], sizing.report.files["report.json"]
        else:
            matrix = crashtest.crash_test(found, settings, wait=not no_wait)
            runs, where = matrix.runs, matrix.files["report.json"]
    except crashtest.CrashTestFailed as e:
        print(f"last serial lines:\n{e.tail}\nreport: {e.report.files.get('report.json')}")
        raise
    for r in runs:
        if r.skipped:
            print(f"SKIP {r.trigger:<10} {r.release}: {r.skipped}")
            continue
        t = r.timings
        tool = r.crash_tool.get("status", "not run")
        print(f"PASS {r.trigger:<10} {r.release}: crashed on CPU {r.crashed_cpu} of {r.cpus}, others stopped; "
              f"vmcore {r.vmcore['size'] / 2**20:.1f} MiB, verified {t['boot_to_verified']:.1f}s after QEMU "
              f"started ({r.accel}); crash: {tool}" + (f" ({r.crash_tool['reason']})" if tool == "skip" else ""))
    print(f"report: {where}")


@task(help={
    "release": "test dist/<release>/ (manifest and .deb set), e.g. 6.1.192-server.kdump (default: the newest build)",
    "crashkernel": "edit our GRUB drop-in to this reservation first, as an admin would, e.g. 40M (default: its own)",
    "find_crashkernel": "bisect the smallest reservation with which kdump-tools' real initrd saves a dump; record it in the manifest",
    "accel": "auto (KVM if a short trial boot works, else TCG; default), kvm or tcg",
    "timeout": "seconds the VM may run in all (default in configs/installtest.toml: 900)",
    "keep": "also keep the disk image and the kernel and initrd that booted, in dist/<release>/install-test/work/",
    "alongside": "also install this release's image and dbg packages; the guest removes them before the crash",
    "no_wait": "if another run is using the same dist/<release>/, exit 1 at once instead of waiting",
})
@guarded
@configured
def install_test(c, release=None, crashkernel=None, find_crashkernel=False, accel=None, timeout=None, keep=False,
                 alongside=None, no_wait=False):
    """Install our .deb set into a Debian 12 root, boot it, crash it; Debian's kdump-tools must save a dump we verify."""
    settings = InstallTestSettings.from_flags(release, accel, timeout, keep, crashkernel, find_crashkernel, alongside)
    found = Manifest.find(release=release)
    try:
        if settings.find_crashkernel:
            sizing = installtest_sizing.find_crashkernel(found, settings, wait=not no_wait)
            for t in sizing.trials:
                print(f"  crashkernel={t['crashkernel']:>6}  {'ok  ' if t['ok'] else 'FAIL'}  {t['outcome']}")
            print(f"smallest working crashkernel={sizing.minimum} with kdump-tools' initrd; recommended "
                  f"crashkernel={sizing.recommended} (recorded in {found.path})")
            report = sizing.report
        else:
            report = installtest.install_test(found, settings, wait=not no_wait)
    except installtest.InstallTestFailed as e:
        print("last serial lines:\n" + "\n".join(e.report.serial_tail))
        print(f"outcome: {e.report.outcome}; report: {e.report.files.get('report.json')}")
        raise
    t = report.timings
    print("  ".join(f"{p} {t[p]:.1f}s" for p in INSTALL_PHASES if p in t))
    for name, why in report.skipped.items():
        print(f"SKIP {name}: {why}")
    print(f"PASS {report.release}: {report.outcome} by kdump-tools ({report.vmcore.get('flattened_bytes', 0) / 2**20:.1f} MiB "
          f"flattened), {len(report.checks)} checks, crashkernel={report.crashkernel} ({report.accel}); "
          f"report: {report.files['report.json']}")


# The collection declares the `kbuild:` keys, so that invoke also reads INVOKE_KBUILD_* variables.
plain_config_errors()
ns = Collection.from_module(sys.modules[__name__])
ns.configure(defaults.placeholders())
