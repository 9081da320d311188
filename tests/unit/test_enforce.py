"""The solver on a handmade tree shaped like the kernel's kdump symbols (6.12 layout)."""
import pytest

from kbuild.configure import stage as configure
from kbuild.configure import requirements
from kbuild.configure.fragments import Assignment
from kbuild.configure.kconfig_enforce import Enforcer
from kbuild.configure.kconfig_parse import parse
from kbuild.core.source import KernelVersion
from kbuild.core.toolchain import Toolchain
from tests.conftest import make_tree

KCONFIG = """
config MODULES
\tbool "modules"
\tmodules
config EXPERT
\tbool "expert"
config ARCH_SUPPORTS_KEXEC
\tdef_bool y
config KEXEC_CORE
\tbool
config KEXEC
\tbool "kexec"
\tdepends on ARCH_SUPPORTS_KEXEC
\tselect KEXEC_CORE
config CRYPTO
\ttristate "crypto"
config KEXEC_FILE
\tbool "kexec_file"
\tdepends on CRYPTO=y
\tselect KEXEC_CORE
config CRASH_DUMP
\tbool "crash dumps"
\tdepends on KEXEC_CORE
\tselect VMCORE_INFO
config VMCORE_INFO
\tbool
config PROC_FS
\tbool "proc" if EXPERT
\tdefault y
config PROC_VMCORE
\tbool "/proc/vmcore"
\tdepends on PROC_FS && CRASH_DUMP
config DEBUG_KERNEL
\tbool "debug kernel"
config DEBUG_INFO
\tbool
choice
\tprompt "Debug information"
\tdepends on DEBUG_KERNEL
config DEBUG_INFO_NONE
\tbool "none"
config DEBUG_INFO_DWARF4
\tbool "dwarf4"
\tselect DEBUG_INFO
config DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT
\tbool "toolchain default"
\tselect DEBUG_INFO
endchoice
config DEBUG_INFO_REDUCED
\tbool "reduced"
\tdepends on DEBUG_INFO
config ARCH_NAME
\tstring
\tdefault "$(ARCH)"
config ONLY_ON_ARM
\tbool "arm only"
\tdepends on ARCH_NAME = "arm"
"""


@pytest.fixture
def kconf(tmp_path, private_cache):
    k = parse(make_tree(tmp_path / "tree", KCONFIG, version=(6, 12, 0)), Toolchain(), use_cache=False)
    for sym in k.unique_defined_syms:  # allnoconfig
        sym.set_value(0)
    return k


def reqs():
    return requirements.load(KernelVersion(6, 12, 0))


def values(k, *names):
    return {n: k.syms[n].str_value for n in names}


def test_unsettable_symbol_is_reached_through_its_choice_and_dependency(kconf):
    solver = Enforcer(kconf, {"DEBUG_INFO": ["DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT"]})
    assert solver.request("DEBUG_INFO", "y") is None
    assert values(kconf, "DEBUG_INFO", "DEBUG_KERNEL", "DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT", "DEBUG_INFO_DWARF4") == \
        {"DEBUG_INFO": "y", "DEBUG_KERNEL": "y", "DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT": "y", "DEBUG_INFO_DWARF4": "n"}


def test_dependency_on_kexec_is_pulled_in(kconf):
    solver = Enforcer(kconf)
    assert solver.request("CRASH_DUMP", "y") is None
    assert kconf.syms["KEXEC_CORE"].str_value == "y"
    assert kconf.syms["KEXEC"].str_value == "y" or kconf.syms["KEXEC_FILE"].str_value == "y"
    assert kconf.syms["VMCORE_INFO"].str_value == "y"


def test_comparison_dependency_is_satisfied_by_setting_the_symbol(kconf):
    assert Enforcer(kconf).request("KEXEC_FILE", "y") is None
    assert values(kconf, "CRYPTO", "KEXEC_FILE") == {"CRYPTO": "y", "KEXEC_FILE": "y"}


def test_lock_blocks_and_failed_attempt_is_rolled_back(kconf):
    solver = Enforcer(kconf)
    solver.lock("KEXEC", "n", "fragment (x.config:1)")
    solver.lock("KEXEC_FILE", "n", "fragment (x.config:2)")
    before = {s.name: s.user_value for s in kconf.unique_defined_syms}
    b = solver.request("PROC_VMCORE", "y")
    assert b is not None
    text = str(b)
    assert "PROC_VMCORE (Kconfig:" in text and "CRASH_DUMP[=n]" in text
    assert "KEXEC_CORE" in text and "is set to n by fragment (x.config:1)" in text
    assert {s.name: s.user_value for s in kconf.unique_defined_syms} == before


def test_unsolvable_comparison_is_explained(kconf):
    b = Enforcer(kconf).request("ONLY_ON_ARM", "y")
    assert b is not None and "ARCH_NAME[=x86_64]" in str(b) and '"arm"' in str(b)
    assert "cannot be changed by setting symbols" in str(b)
    assert kconf.syms["ONLY_ON_ARM"].str_value == "n"


def test_make_n_turns_forbidden_option_off(kconf):
    solver = Enforcer(kconf)
    assert solver.request("DEBUG_INFO", "y") is None
    kconf.syms["DEBUG_INFO_REDUCED"].set_value(2)
    assert kconf.syms["DEBUG_INFO_REDUCED"].str_value == "y"
    assert solver.request("DEBUG_INFO_REDUCED", "n") is None
    assert kconf.syms["DEBUG_INFO_REDUCED"].str_value == "n"


def test_enforce_builds_a_ledger_with_requirements_and_requests(kconf, tmp_path):
    reqs_ = reqs()
    subset = requirements.Requirements(reqs_.version, tuple(c for c in reqs_.capabilities
                                                             if c.id in ("crash-dump", "debug-info", "vmcoreinfo")),
                                       reqs_.forbidden[:1])
    asks = [Assignment("EXPERT", "y", "p.config:1", "fragment")]
    ledger, explanations = configure.enforce(kconf, subset, asks)
    assert explanations == []
    rows = {(e.symbol, e.source): e for e in ledger.entries}
    assert rows[("EXPERT", "fragment (p.config:1)")].status == "pass"
    assert rows[("CRASH_DUMP", "requirement crash-dump")].status == "pass"
    assert "KEXEC" in rows[("CRASH_DUMP", "requirement crash-dump")].why  # side effects are reported
    assert rows[("DEBUG_INFO_REDUCED", "requirement (must stay off)")].status == "pass"


def test_enforce_reports_a_fragment_that_blocks_a_requirement(kconf):
    reqs_ = reqs()
    asks = [Assignment("CRASH_DUMP", "n", "nodump.config:1", "fragment")]
    ledger, explanations = configure.enforce(kconf, reqs_, asks)
    crash = [e for e in explanations if e.startswith("requirement crash-dump:")]
    assert crash and crash[0].startswith("requirement crash-dump: CONFIG_CRASH_DUMP requested y, got n")
    assert "is set to n by fragment (nodump.config:1)" in crash[0]


def test_later_request_overrides_earlier(kconf):
    asks = [Assignment("EXPERT", "y", "a.config:1", "profile p"), Assignment("EXPERT", "n", "b.config:1", "fragment")]
    ledger, _ = configure.enforce(kconf, requirements.Requirements(reqs().version, (), ()), asks)
    assert [e.status for e in ledger.entries] == ["overridden", "pass"]
    assert kconf.syms["EXPERT"].str_value == "n"
