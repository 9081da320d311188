"""The RPM kdump configuration helper (packaging/rpm/kdump-conf.sh.j2), run with sh.

It decides whether /etc/kdump.conf (owned by kexec-tools or kdump-utils) may be replaced.
A stand-in `rpm` on PATH answers `rpm -qf` and `rpm -V` the way the real one does for an
unedited or an edited file; KDUMP_PIPELINE_ROOT points the helper at a scratch tree.
"""
import os
import subprocess

import pytest

from kbuild.package import rpm
from kbuild.package.render import render

pytestmark = pytest.mark.host_tools   # runs programs `make setup` installs (make unit does)

DISTRO = "# kexec-tools default\npath /var/crash\ncore_collector makedumpfile -l --message-level 7 -d 31\n"
OURS_V1 = "path /var/crash\ncore_collector makedumpfile -c --message-level 1 -d 31\nfailure_action reboot\n"
OURS_V2 = OURS_V1.replace("reboot", "halt")
FAKE_RPM = """#!/bin/sh
# rpm -qf FILE -> owner; rpm -V OWNER -> one line per changed file (as rpm prints it)
case "$1" in
    -qf) [ -n "${FAKE_OWNER-}" ] && echo "$FAKE_OWNER" || { echo "file $4 is not owned by any package"; exit 1; } ;;
    -V) [ -n "${FAKE_CHANGED-}" ] && echo "S.5....T.  c $FAKE_CHANGED"; [ -n "${FAKE_CHANGED-}" ] && exit 1; exit 0 ;;
esac
"""


@pytest.fixture
def system(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    share = root / rpm.SHARE.lstrip("/")
    share.mkdir(parents=True)
    helper = tmp_path / "kdump-conf"
    ctx = {"names": rpm.NAMES, "share": rpm.SHARE, "state": rpm.STATE}
    helper.write_text(render("rpm/kdump-conf.sh.j2", **ctx))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "rpm").write_text(FAKE_RPM)
    (bin_dir / "rpm").chmod(0o755)

    class System:
        conf = root / "etc/kdump.conf"
        state = root / rpm.STATE.lstrip("/")

        def ours(self, text):
            (share / "kdump.conf").write_text(text)

        def run(self, command, edited=False, owner="kexec-tools"):
            env = {**os.environ, "KDUMP_PIPELINE_ROOT": str(root),
                   "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_OWNER": owner,
                   "FAKE_CHANGED": f"{root}/etc/kdump.conf" if edited else ""}
            return subprocess.run(["sh", str(helper), command], env=env, capture_output=True, text=True)
    s = System()
    s.ours(OURS_V1)
    return s


def test_unedited_distro_file_is_replaced_and_restored(system):
    system.conf.write_text(DISTRO)
    assert system.run("apply").returncode == 0
    assert system.conf.read_text() == OURS_V1
    assert (system.conf.stat().st_mode & 0o777) == 0o644
    assert system.run("restore").returncode == 0
    assert system.conf.read_text() == DISTRO and not any(system.state.iterdir())


def test_edited_file_is_never_touched(system):
    system.conf.write_text(DISTRO + "ssh kdump@backup\n")
    p = system.run("apply", edited=True)
    assert p.returncode == 0 and "has local edits and was kept" in p.stderr
    assert system.conf.read_text() == DISTRO + "ssh kdump@backup\n"
    assert (system.conf.parent / "kdump.conf.kdump-pipeline").read_text() == OURS_V1


def test_any_doubt_counts_as_edited(system):
    system.conf.write_text(DISTRO)
    p = system.run("apply", owner="")                 # rpm says: not owned by any package
    assert "was kept" in p.stderr and system.conf.read_text() == DISTRO


def test_our_own_previous_version_is_upgraded(system):
    system.conf.write_text(DISTRO)
    system.run("apply")
    system.ours(OURS_V2)
    p = system.run("apply", edited=True)              # rpm -V: changed against kexec-tools, by us
    assert p.returncode == 0 and p.stderr == ""
    assert system.conf.read_text() == OURS_V2
    system.run("restore")
    assert system.conf.read_text() == DISTRO          # the distro's file, not our first version


def test_edits_after_apply_survive_upgrade_and_removal(system):
    system.conf.write_text(DISTRO)
    system.run("apply")
    system.conf.write_text(OURS_V1 + "extra_modules foo\n")
    system.ours(OURS_V2)
    assert "was kept" in system.run("apply", edited=True).stderr
    assert system.conf.read_text() == OURS_V1 + "extra_modules foo\n"
    p = system.run("restore", edited=True)
    assert "the file it replaced is" in p.stderr
    assert system.conf.read_text() == OURS_V1 + "extra_modules foo\n"
    assert (system.conf.parent / "kdump.conf.distrib").read_text() == DISTRO


def test_missing_file_is_created(system):
    assert system.run("apply", owner="").returncode == 0
    assert system.conf.read_text() == OURS_V1
    assert system.run("bogus").returncode == 2
