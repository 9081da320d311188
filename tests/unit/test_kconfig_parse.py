import os
import time

import kconfiglib
import pytest

from kbuild.core.errors import BadInput
from kbuild.configure.kconfig_parse import parse
from kbuild.core.toolchain import Toolchain
from tests.conftest import make_tree

pytestmark = pytest.mark.host_tools   # runs programs `make setup` installs (make unit does)

MODULES_TREE = """
config MODULES
\tbool "Enable loadable module support"
\tmodules
\thelp
\t  A help text whose line is exactly the keyword:
\t  modules
config DRIVER
\ttristate "driver"
"""


def test_bare_modules_attribute_parses_and_marks_the_modules_symbol(tmp_path, private_cache):
    kconf = parse(make_tree(tmp_path / "t", MODULES_TREE), Toolchain(), use_cache=False)
    assert kconf.modules.name == "MODULES"
    assert "\nmodules" in kconf.syms["MODULES"].nodes[0].help  # help text untouched
    kconf.syms["MODULES"].set_value(2)
    kconf.syms["DRIVER"].set_value(1)
    assert kconf.syms["DRIVER"].str_value == "m"  # m only works if MODULES is the modules symbol


def test_unpatched_kconfiglib_fails_on_the_same_tree(tmp_path, private_cache, monkeypatch):
    """Guards the reason the compat layer exists."""
    from kbuild.configure import kconfig_parse
    tree = make_tree(tmp_path / "t", MODULES_TREE)
    monkeypatch.setattr(kconfig_parse, "install_compat", lambda: None)
    monkeypatch.setattr(kconfiglib.Kconfig, "_tokenize", kconfig_parse._compat_tokenize.__defaults__[0])
    with pytest.raises(BadInput, match="couldn't parse 'modules'"):
        parse(tree, Toolchain(), use_cache=False)


def test_implied_symbol_is_written_like_conf_writes_it(tmp_path, private_cache):
    """conf writes '# X is not set' for an implied symbol even when its depends on is n."""
    kconf = parse(make_tree(tmp_path / "t", """
config IMPLIER
\tbool "implier"
\timply TARGET
config GATE
\tbool "gate"
config TARGET
\tbool
\tdepends on GATE
"""), Toolchain(), use_cache=False)
    kconf.syms["IMPLIER"].set_value(2)
    kconf.syms["GATE"].set_value(0)
    out = tmp_path / "config"
    kconf.write_config(str(out), save_old=False)
    assert "# CONFIG_TARGET is not set" in out.read_text()


def test_macros_see_the_toolchain(tmp_path, private_cache):
    kconf = parse(make_tree(tmp_path / "t", """
config CC_NAME
\tstring
\tdefault "$(CC)"
config HAS_CC
\tdef_bool $(shell,command -v $(CC) >/dev/null && echo y || echo n)
"""), Toolchain(cc="gcc"), use_cache=False)
    assert kconf.syms["CC_NAME"].str_value == "gcc"
    assert kconf.syms["HAS_CC"].str_value == "y"


def test_cache_is_reused_and_invalidated_by_a_kconfig_edit(tmp_path, private_cache):
    tree = make_tree(tmp_path / "t", 'config A\n\tbool "a"\nsource "sub/Kconfig"\n',
                     {"sub/Kconfig": 'config B\n\tbool "b"\n'})
    first = parse(tree, Toolchain())
    assert set(s.name for s in first.unique_defined_syms) == {"A", "B"}
    assert list(private_cache.glob("kconfig/*.pickle"))
    again = parse(tree, Toolchain())
    assert again is not first and set(s.name for s in again.unique_defined_syms) == {"A", "B"}
    sub = tree.path / "sub" / "Kconfig"
    sub.write_text('config B\n\tbool "b"\nconfig C\n\tbool "c"\n')
    os.utime(sub, ns=(time.time_ns() + 10**9,) * 2)
    edited = parse(tree, Toolchain())
    assert "C" in edited.syms and edited.syms["C"].nodes


def test_cache_is_keyed_by_toolchain(tmp_path, private_cache):
    tree = make_tree(tmp_path / "t", 'config NAME\n\tstring\n\tdefault "$(CC)"\n')
    assert parse(tree, Toolchain(cc="gcc")).syms["NAME"].str_value == "gcc"
    assert parse(tree, Toolchain(cc="cc")).syms["NAME"].str_value == "cc"


def test_syntax_error_is_bad_input_with_location(tmp_path, private_cache):
    tree = make_tree(tmp_path / "t", 'config A\n\tbool "a"\n\tfrobnicate\n')
    with pytest.raises(BadInput, match=r"Kconfig does not parse: .*Kconfig:3"):
        parse(tree, Toolchain(), use_cache=False)
