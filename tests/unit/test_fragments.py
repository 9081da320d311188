import pytest

from kbuild.configure import fragments
from kbuild.core.errors import BadInput
from kbuild.configure.kconfig_parse import parse
from kbuild.core.toolchain import Toolchain
from tests.conftest import make_tree

KCONFIG = """
config FOO
\tbool "foo"
config BAR
\ttristate "bar"
config SHIFT
\tint "shift"
\tdefault 14
config ADDR
\thex "addr"
\tdefault 0x1000
config NAME
\tstring "name"
"""


@pytest.fixture
def kconf(tmp_path, private_cache):
    return parse(make_tree(tmp_path / "tree", KCONFIG), Toolchain(), use_cache=False)


def write(tmp_path, text, name="f.config"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_parses_assignments_comments_and_unset(tmp_path):
    p = write(tmp_path, '# a comment\n\nCONFIG_FOO=y\n# CONFIG_BAR is not set\nCONFIG_NAME="a \\"b\\""\n')
    got = fragments.parse_file(p, "fragment")
    assert [(a.name, a.value, a.quoted) for a in got] == [("FOO", "y", False), ("BAR", "n", False),
                                                          ("NAME", 'a "b"', True)]
    assert got[0].source == f"{p}:3"


def test_malformed_line_names_file_and_line(tmp_path):
    p = write(tmp_path, "CONFIG_FOO=y\nFOO=y\n")
    with pytest.raises(BadInput, match=rf"{p}:2: expected `CONFIG_X=value`"):
        fragments.parse_file(p, "fragment")


def test_conflicting_duplicate_is_refused_but_repeat_is_fine(tmp_path):
    assert len(fragments.parse_file(write(tmp_path, "CONFIG_FOO=y\nCONFIG_FOO=y\n"), "fragment")) == 2
    p = write(tmp_path, "CONFIG_FOO=y\n# CONFIG_FOO is not set\n", "dup.config")
    with pytest.raises(BadInput, match=r"dup.config:2: CONFIG_FOO=n contradicts .*dup.config:1"):
        fragments.parse_file(p, "fragment")


def test_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="cannot read fragment"):
        fragments.parse_file(tmp_path / "nope.config", "fragment")


def test_unknown_symbol_suggests_close_names(tmp_path, kconf):
    a = fragments.parse_file(write(tmp_path, "CONFIG_FOOO=y\n"), "fragment")
    with pytest.raises(BadInput, match=r"CONFIG_FOOO is not a symbol of this kernel tree; did you mean CONFIG_FOO\?"):
        fragments.validate(a, kconf)


@pytest.mark.parametrize("line, message", [
    ("CONFIG_FOO=m", r"bool symbol .*'m' is not y or n"),
    ("CONFIG_BAR=2", r"tristate symbol .*not y, m or n"),
    ("CONFIG_SHIFT=0x10", r"int symbol .*not a decimal integer"),
    ("CONFIG_ADDR=4096", r"hex symbol .*not a 0x-prefixed hex number"),
    ("CONFIG_NAME=bare", r"string symbol .*not a double-quoted string"),
])
def test_wrong_type_is_refused(tmp_path, kconf, line, message):
    a = fragments.parse_file(write(tmp_path, line + "\n"), "fragment")
    with pytest.raises(BadInput, match=message):
        fragments.validate(a, kconf)


def test_valid_values_pass(tmp_path, kconf):
    a = fragments.parse_file(write(tmp_path, 'CONFIG_FOO=y\nCONFIG_BAR=m\nCONFIG_SHIFT=-3\n'
                                             'CONFIG_ADDR=0xff\nCONFIG_NAME="x"\n'), "fragment")
    fragments.validate(a, kconf)
