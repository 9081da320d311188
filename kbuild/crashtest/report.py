"""The crash test's verdict as data, and its two renderings: report.json and junit.xml."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field

PHASES = ("boot", "kexec_load", "crash", "capture_boot", "dump", "verify")


@dataclass
class Check:
    """One verification: pass/fail with what was expected and what the dump held."""

    name: str
    ok: bool
    expected: str
    actual: str

    def line(self) -> str:
        return f"{self.name}: expected {self.expected}, got {self.actual}"


@dataclass
class Failure:
    phase: str    # one of PHASES, or "prepare"
    message: str  # one line


@dataclass
class CrashReport:
    release: str
    build_id: str
    nonce: str
    accel: str
    accel_why: str
    settings: dict
    production_cmdline: str
    capture_cmdline: str
    initramfs: dict
    timings: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    failure: Failure | None = None
    vmcore: dict = field(default_factory=dict)
    crashed_task: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    qemu: list[str] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)
    search: list[dict] = field(default_factory=list)  # --find-crashkernel trials

    @property
    def ok(self) -> bool:
        return self.failure is None

    def to_dict(self) -> dict:
        d = asdict(self)
        d = {"schema": 1, "verdict": "pass" if self.ok else "fail", **d}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_junit(self) -> str:
        """One testcase per phase and per check; a phase never reached is reported as skipped."""
        suite = ET.Element("testsuite", name="crash-test", hostname=self.release)
        cases = 0
        failures = 0
        reached = True
        for phase in PHASES:
            case = ET.SubElement(suite, "testcase", classname="crash-test.phase", name=phase,
                                 time=f"{self.timings.get(phase, 0.0):.3f}")
            cases += 1
            if self.failure and self.failure.phase == phase:
                ET.SubElement(case, "failure", message=self.failure.message).text = self.failure.message
                failures += 1
                reached = False
            elif not reached or phase not in self.timings:
                ET.SubElement(case, "skipped", message="not reached")
        for check in self.checks:
            case = ET.SubElement(suite, "testcase", classname="crash-test.verify", name=check.name, time="0")
            cases += 1
            if not check.ok:
                ET.SubElement(case, "failure", message=check.line()).text = check.line()
                failures += 1
        if self.failure and self.failure.phase not in PHASES:
            case = ET.SubElement(suite, "testcase", classname="crash-test.phase", name=self.failure.phase)
            ET.SubElement(case, "failure", message=self.failure.message).text = self.failure.message
            cases += 1
            failures += 1
        suite.set("tests", str(cases))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        suite.set("skipped", str(sum(1 for c in suite.iter("skipped"))))
        suite.set("time", f"{sum(self.timings.get(p, 0.0) for p in PHASES):.3f}")
        ET.indent(suite)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
