"""The test tree itself: pytest (rootdir imports, no __init__.py) refuses two test modules with
one basename, and then collects nothing at all, so a clash must fail here, by name."""
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_basename_is_unique():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
