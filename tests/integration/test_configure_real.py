"""kconfiglib on the real 6.1 and 6.12 trees, judged by the kernel's own olddefconfig."""
import os
import re
import subprocess
import sys

import pytest

from kbuild.configure import kconfig_parse
from kbuild.configure.stage import configure
from kbuild.core.kconfigfile import read_values
from kbuild.core.settings import ConfigureSettings, profile_names
from kbuild.core.toolchain import Toolchain

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVOKE = [sys.executable, "-m", "invoke"]


def test_kconfig_parses_completely(real_tree):
    """Every `config X` line in every Kconfig file of the tree is a symbol kconfiglib knows."""
    kconf = kconfig_parse.parse(real_tree, Toolchain())
    assert kconf.modules.name == "MODULES"
    declared = set()
    for name in kconf.kconfig_filenames:
        text = (real_tree.path / name).read_text(errors="replace")
        declared |= set(re.findall(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$", text, re.M))
    defined = {s.name for s in kconf.unique_defined_syms}
    assert len(kconf.kconfig_filenames) > 1000
    assert declared - defined == set()
    unsupported = [w for w in kconf.warnings if "not supported" in w or "ignoring" in w.lower()]
    assert unsupported == []


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
@pytest.mark.parametrize("profile", ["minimal", "defconfig"])
def test_profile_meets_requirements_and_kernel_agrees(real_tree, profile, arch, tmp_path):
    """kconfiglib with the arch's ARCH, SRCARCH and (cross) CC evaluates as the kernel's own conf does."""
    settings = ConfigureSettings.from_flags(source=str(real_tree.path), profile=profile,
                                            build_dir=tmp_path / "build", arch=arch)
    result = configure(settings)
    assert result.ledger.ok
    assert [e for e in result.ledger.entries if e.status == "fail"] == []
    assert result.ledger.crosscheck == {"ok": True, "differences": []}
    values = read_values(result.config)
    vmcoreinfo = "VMCORE_INFO" if real_tree.version.key >= (6, 9, 0) else "CRASH_CORE"
    for name in ("DEBUG_INFO", "CRASH_DUMP", "PROC_VMCORE", vmcoreinfo, "RELOCATABLE", "MAGIC_SYSRQ",
                 "BLK_DEV_INITRD", "SYSFS", "PROC_FS", "DEBUG_KERNEL"):
        assert values.get(name) == "y", name
    assert "y" in (values.get("KEXEC"), values.get("KEXEC_FILE"))
    assert values.get("DEBUG_INFO_REDUCED", "n") == "n" and values.get("DEBUG_INFO_SPLIT", "n") == "n"
    # and the kernel itself, run again on the written file, changes nothing
    before = result.config.read_text()
    subprocess.run(["make", "-s", "-C", str(real_tree.path), f"O={tmp_path / 'build'}",
                    *Toolchain.for_arch(settings.arch).make_vars(), "olddefconfig"], check=True, capture_output=True)
    assert read_values(result.config) == read_values_from_text(before, tmp_path)
    assert values.get("ARM64" if arch == "arm64" else "X86_64") == "y"
    cc = "aarch64-linux-gnu-gcc" if arch == "arm64" else "gcc"
    assert values["CC_VERSION_TEXT"].startswith(f"\"{cc} ("), values["CC_VERSION_TEXT"]


def read_values_from_text(text, tmp_path):
    p = tmp_path / "before.config"
    p.write_text(text)
    return read_values(p)


def run_invoke(*args, cwd=REPO):
    return subprocess.run([*INVOKE, *args], cwd=cwd, capture_output=True, text=True)


def test_fragment_disabling_crash_dump_fails_with_explanation(real_tree, tmp_path):
    frag = tmp_path / "nodump.config"
    frag.write_text("# CONFIG_CRASH_DUMP is not set\n")
    build = tmp_path / "build"
    proc = run_invoke("configure", "--source", str(real_tree.path), "--fragment", str(frag), "--build-dir", str(build))
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr
    assert "requirement crash-dump" in err[0] and "CRASH_DUMP" in err[0]
    assert f"{frag}:1" in err[0]
    loc = "kernel/Kconfig.kexec:" if real_tree.version.key >= (6, 9, 0) else "arch/x86/Kconfig:"
    assert loc in err[0]
    assert not (build / ".config").exists()


def test_unknown_symbol_is_exit_2_with_suggestion_and_writes_nothing(tree61, tmp_path):
    frag = tmp_path / "typo.config"
    frag.write_text("CONFIG_PROC_VMCOR=y\n")
    build = tmp_path / "build"
    proc = run_invoke("configure", "--source", str(tree61.path), "--fragment", str(frag), "--build-dir", str(build))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {frag}:1: CONFIG_PROC_VMCOR is not a symbol of this kernel tree; "
                                   "did you mean CONFIG_PROC_VMCORE, CONFIG_PROC_KCORE?")
    assert not build.exists()


def test_json_ledger(tree61, tmp_path):
    import json
    proc = run_invoke("configure", "--source", str(tree61.path), "--build-dir", str(tmp_path / "b"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["crosscheck"]["ok"] is True
    sources = {e["source"] for e in data["entries"]}
    assert {"requirement crash-dump", "requirement (must stay off)"} <= sources
    assert any(s.startswith("profile minimal (configs/fragments/minimal.config:") for s in sources)


@pytest.mark.parametrize("args, message", [
    (["--profile", "nosuch"], f"unknown profile 'nosuch'; choose one of: {', '.join(profile_names())}"),
    (["--source", "/nonexistent"], "/nonexistent: no such file or directory"),
    (["--fragment", "/nonexistent.config"], "/nonexistent.config: --fragment is not a readable file"),
    (["--profile", "minimal", "--base-config", "/etc/hostname"], "give either --profile or --base-config, not both"),
])
def test_bad_flags_are_one_line_exit_2(args, message):
    proc = run_invoke("configure", *args)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {message}"


def test_rerun_reuses_and_any_changed_input_reconfigures(tree61, tmp_path):
    frag = tmp_path / "extra.config"
    frag.write_text("CONFIG_PRINTK_TIME=y\n")
    settings = lambda: ConfigureSettings.from_flags(source=str(tree61.path), fragment=[str(frag)],
                                                    build_dir=tmp_path / "b")
    first = configure(settings())
    assert not first.reused and read_values(first.config)["PRINTK_TIME"] == "y"
    assert configure(settings()).reused
    frag.write_text("# CONFIG_PRINTK_TIME is not set\n")  # a changed fragment is never ignored
    changed = configure(settings())
    assert not changed.reused and read_values(changed.config)["PRINTK_TIME"] == "n"
    changed.config.write_text(changed.config.read_text() + "CONFIG_PRINTK_TIME=y\n")  # hand edit
    assert not configure(settings()).reused


def test_base_config_from_debian_kernel(tree61, debian_config_61, tmp_path):
    """--base-config takes any user config: Debian's own, with requirements re-checked on top."""
    result = configure(ConfigureSettings.from_flags(source=str(tree61.path), base_config=str(debian_config_61),
                                                    build_dir=tmp_path / "b"))
    assert result.ledger.ok and result.ledger.crosscheck["ok"]
    assert all(e.source.startswith("requirement") for e in result.ledger.entries)
    ours, debian = read_values(result.config), read_values(debian_config_61)
    assert ours["CRASH_DUMP"] == debian["CRASH_DUMP"] == "y"
    assert ours["MODULE_SIG"] == debian["MODULE_SIG"]  # user values survive untouched
