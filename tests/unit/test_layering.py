"""The stage packages form a ladder: core < configure < build < package < crashtest < installtest.

A module may import kbuild.core and its own or lower stages, never a higher one, so each stage
can be read, tested and reused without what comes after it. Read from the source, not by
importing: a lazy import inside a function counts too.
"""
import ast
from pathlib import Path

import pytest

KBUILD = Path(__file__).resolve().parents[2] / "kbuild"
ORDER = ["core", "configure", "build", "package", "crashtest", "installtest"]


def kbuild_imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; use kbuild.<stage>.<module>")
        else:
            continue
        out += [(node.lineno, n) for n in names if n == "kbuild" or n.startswith("kbuild.")]
    return out


MODULES = sorted(p for p in KBUILD.rglob("*.py") if p.parent != KBUILD)


def test_every_module_lives_in_a_known_stage():
    assert {p.relative_to(KBUILD).parts[0] for p in MODULES} <= set(ORDER)
    assert [p.name for p in KBUILD.glob("*.py")] == ["__init__.py"], "no loose modules at the top of kbuild/"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(KBUILD)))
def test_no_upward_import(path):
    mine = ORDER.index(path.relative_to(KBUILD).parts[0])
    for line, name in kbuild_imports(path):
        parts = name.split(".")
        assert len(parts) >= 2, f"{path}:{line}: import a stage's module, not `{name}`"
        assert ORDER.index(parts[1]) <= mine, f"{path}:{line}: {name} is a higher stage than {ORDER[mine]}"


def test_the_checker_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from kbuild.crashtest import stage\n")
    assert kbuild_imports(bad) == [(2, "kbuild.crashtest")]
