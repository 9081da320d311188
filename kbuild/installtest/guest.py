"""What the test adds to the guest: its agent (a oneshot systemd unit), the nonce, and an admin's
edit of our GRUB drop-in when a run asks for another crashkernel=.

The agent waits until `kdump-config status` says "ready to kdump", writes the nonce to the
kernel log and crashes with sysrq-c; kdump-tools does the rest. On any later boot it reports
whether a dump is there and powers off. Its lines on the console start with MARK.
"""
from __future__ import annotations

import re
from pathlib import Path

from kbuild.core.errors import CheckFailed
from kbuild.installtest.install import STATE
from kbuild.package.render import render

MARK = "INSTALL-TEST:"
AGENT = "/usr/local/sbin/install-test-agent"
UNIT = "install-test.service"
NONCE_LINE = "install-test nonce {nonce}"     # written to /dev/kmsg, so it is in the dump's dmesg


def add_agent(root: Path, nonce: str, coredir: str, ready_timeout: int, remove: tuple[str, ...] = ()) -> None:
    """The agent, its unit (enabled) and the nonce; `remove`: packages it purges before crashing."""
    state = root / STATE.lstrip("/")
    state.mkdir(parents=True, exist_ok=True)
    (state / "nonce").write_text(nonce + "\n")
    agent = root / AGENT.lstrip("/")
    agent.parent.mkdir(parents=True, exist_ok=True)
    agent.write_text(render("installtest/guest-agent.sh.j2", mark=MARK, state=STATE, coredir=coredir,
                            ready_timeout=int(ready_timeout), remove=list(remove)))
    agent.chmod(0o755)
    unit = root / "etc/systemd/system" / UNIT
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(render("installtest/guest-agent.service.j2", state=STATE, agent=AGENT))
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / UNIT).unlink(missing_ok=True)
    (wants / UNIT).symlink_to(f"/etc/systemd/system/{UNIT}")


_LAST_CK = re.compile(r'^(GRUB_CMDLINE_LINUX_DEFAULT=.*\s)crashkernel=[^\s"]+("\s*)$', re.M)


def set_crashkernel(root: Path, dropin_name: str, value: str) -> None:
    """Edit the reservation in our drop-in, as an admin would (it is a conffile for that)."""
    path = root / "etc/default/grub.d" / dropin_name
    text = path.read_text()
    new, n = _LAST_CK.subn(lambda m: f"{m.group(1)}crashkernel={value}{m.group(2)}", text)
    if n != 1:
        raise CheckFailed(f"/etc/default/grub.d/{dropin_name}: no single crashkernel= to edit")
    path.write_text(new)
