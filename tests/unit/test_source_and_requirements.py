import json
import subprocess

import pytest

from kbuild.configure import requirements
from kbuild.core import source
from kbuild.core.errors import BadInput
from kbuild.configure.ledger import LedgerEntry, RequirementLedger
from kbuild.core.source import KernelVersion
from tests.conftest import make_tree

pytestmark = pytest.mark.host_tools   # runs programs `make setup` installs (make unit does)


def test_version_is_read_from_the_makefile(tmp_path):
    tree = make_tree(tmp_path / "linux", 'config A\n\tbool "a"\n', version=(6, 12, 117))
    (tree.path / "Makefile").write_text("# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION = -rc1\n")
    got = source.locate(tree.path)
    assert str(got.version) == "6.12.117-rc1" and got.tarball is None


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no such file or directory"),
    (lambda p: p.mkdir(), "not a kernel tree"),
    (lambda p: p.write_text("not a tarball"), "not a tar archive"),
])
def test_bad_sources_are_bad_input(tmp_path, private_cache, setup, message):
    p = tmp_path / "src"
    setup(p)
    with pytest.raises(BadInput, match=message):
        source.locate(p)


def test_tarball_of_something_else_is_refused_and_leaves_no_cache(tmp_path, private_cache):
    (tmp_path / "pkg" / "docs").mkdir(parents=True)
    (tmp_path / "pkg" / "docs" / "README").write_text("hello")
    tarball = tmp_path / "pkg.tar.xz"
    subprocess.run(["tar", "-cJf", str(tarball), "-C", str(tmp_path), "pkg"], check=True)
    with pytest.raises(BadInput, match="not a kernel tree"):
        source.locate(tarball)
    assert not [p for p in (private_cache / "trees").iterdir()]


def test_tarball_is_unpacked_once_and_reused(tmp_path, private_cache):
    make_tree(tmp_path / "linux-6.1.5", 'config A\n\tbool "a"\n', version=(6, 1, 5))
    tarball = tmp_path / "linux-6.1.5.tar.xz"
    subprocess.run(["tar", "-cJf", str(tarball), "-C", str(tmp_path), "linux-6.1.5"], check=True)
    first = source.locate(tarball)
    assert str(first.version) == "6.1.5" and first.tarball_sha256 and len(first.tarball_sha256) == 64
    marker = first.path / "marker"
    marker.write_text("kept")
    second = source.locate(tarball)
    assert second.path == first.path and marker.exists()  # not unpacked again


def test_requirements_follow_the_kernel_version():
    r61 = requirements.load(KernelVersion(6, 1, 192))
    r612 = requirements.load(KernelVersion(6, 12, 117))
    by_id = lambda r: {c.id: c for c in r.capabilities}
    assert by_id(r61)["vmcoreinfo"].symbols == ("CRASH_CORE",)
    assert by_id(r612)["vmcoreinfo"].symbols == ("VMCORE_INFO",)
    assert by_id(r612)["kexec-loader"].any and by_id(r612)["kexec-loader"].symbols[0] == "KEXEC_FILE"
    assert {c.id for c in r61.capabilities} == {"debug-info", "crash-dump", "proc-vmcore", "kexec-loader",
                                                 "vmcoreinfo", "relocatable", "sysrq-trigger", "initramfs",
                                                 "sysfs", "procfs"}
    assert {f.symbol for f in r61.forbidden} == {"DEBUG_INFO_REDUCED", "DEBUG_INFO_SPLIT"}
    assert all(c.reason and c.source for c in r61.capabilities)


def test_requirements_refuse_unknown_old_kernels():
    with pytest.raises(BadInput, match="no kdump requirements are known before 6.1"):
        requirements.load(KernelVersion(2, 6, 32))


def test_ledger_json_and_table():
    ledger = RequirementLedger([LedgerEntry("CRASH_DUMP", "requirement crash-dump", "y", "n", "fail", "blocked"),
                                LedgerEntry("KEXEC", "fragment (a:1)", "y", "y", "pass")])
    data = json.loads(ledger.to_json())
    assert data["ok"] is False and data["entries"][0]["why"] == "blocked"
    table = ledger.table()
    assert "FAIL" in table and "why: blocked" in table and "PASS" in table
    ledger.entries.pop(0)
    assert ledger.ok
