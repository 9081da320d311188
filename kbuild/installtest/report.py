"""The install test's verdict as data, and its two renderings: report.json and junit.xml."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field

from kbuild.crashtest.report import Check, Failure
from kbuild.installtest.watch import PHASES


@dataclass
class InstallReport:
    release: str
    build_id: str
    nonce: str
    crashkernel: str                # the reservation tested (our drop-in's, unless --crashkernel)
    outcome: str = "not run"        # dump saved | capture failed, machine rebooted | ... (watch.diagnose)
    accel: str = ""
    accel_why: str = ""
    cmdline: str = ""               # what GRUB would boot (our drop-in's crashkernel=)
    capture_cmdline: str = ""       # kdump-tools' own kexec command (/var/crash/kexec_cmd)
    makedumpfile: str | None = None  # the arguments kdump-tools ran makedumpfile with (its console line)
    rootfs: dict = field(default_factory=dict)
    kdump_initrd: dict = field(default_factory=dict)
    install: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    events: dict[str, float] = field(default_factory=dict)   # seconds since QEMU started
    checks: list[Check] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failure: Failure | None = None
    vmcore: dict = field(default_factory=dict)
    crashed_task: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    qemu: list[str] = field(default_factory=list)
    serial_tail: list[str] = field(default_factory=list)
    search: list[dict] = field(default_factory=list)         # --find-crashkernel trials
    alongside: dict = field(default_factory=dict)            # --alongside: the other release

    @property
    def ok(self) -> bool:
        return self.failure is None and all(c.ok for c in self.checks)

    def to_dict(self) -> dict:
        return {"schema": 1, "verdict": "pass" if self.ok else "fail", **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_junit(self) -> str:
        """One testcase per phase and per check; a phase never reached, or a named skip, is skipped."""
        suite = ET.Element("testsuite", name="install-test", hostname=self.release)
        reached = True
        for phase in PHASES:
            case = ET.SubElement(suite, "testcase", classname="install-test.phase", name=phase,
                                 time=f"{self.timings.get(phase, 0.0):.3f}")
            if self.failure and self.failure.phase == phase:
                ET.SubElement(case, "failure", message=self.failure.message).text = "\n".join(self.serial_tail)
                reached = False
            elif not reached or phase not in self.timings:
                ET.SubElement(case, "skipped", message="not reached")
        for check in self.checks:
            case = ET.SubElement(suite, "testcase", classname="install-test.verify", name=check.name, time="0")
            if not check.ok:
                ET.SubElement(case, "failure", message=check.line()).text = check.line()
        for name, why in self.skipped.items():
            case = ET.SubElement(suite, "testcase", classname="install-test.verify", name=name, time="0")
            ET.SubElement(case, "skipped", message=why)
        if self.failure and self.failure.phase not in PHASES:
            case = ET.SubElement(suite, "testcase", classname="install-test.phase", name=self.failure.phase)
            ET.SubElement(case, "failure", message=self.failure.message).text = self.failure.message
        suite.set("tests", str(len(suite.findall("testcase"))))
        suite.set("failures", str(len(suite.findall("testcase/failure"))))
        suite.set("errors", "0")
        suite.set("skipped", str(len(suite.findall("testcase/skipped"))))
        suite.set("time", f"{sum(self.timings.get(p, 0.0) for p in PHASES):.3f}")
        ET.indent(suite)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
