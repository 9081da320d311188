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
    """One trigger's run: boot, crash, capture, verification."""

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
    trigger: str = "sysrq"
    cpus: int = 1
    pinned_cpu: int | None = None     # where the trigger ran (None: not pinned, the NMI)
    crashed_cpu: int | None = None    # read from the dump (panic_cpu)
    cpu_stops: list[dict] = field(default_factory=list)   # per CPU: saved registers, task, stacks, stop path
    crash_tool: dict = field(default_factory=dict)        # Debian's crash: status pass|fail|skip, reason, checks
    skipped: str = ""                 # why this trigger was not run on this architecture (a named skip)

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def verdict(self) -> str:
        return "skip" if self.skipped else "pass" if self.ok else "fail"

    def to_dict(self) -> dict:
        d = asdict(self)
        d = {"schema": 1, "verdict": self.verdict, **d}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_junit(self) -> str:
        """One testcase per phase and per check; a phase never reached is reported as skipped."""
        suite = ET.Element("testsuite", name="crash-test", hostname=self.release)
        cases = 0
        failures = 0
        reached = not self.skipped
        if self.skipped:
            case = ET.SubElement(suite, "testcase", classname="crash-test.trigger", name=self.trigger, time="0")
            ET.SubElement(case, "skipped", message=self.skipped)
            cases += 1
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


@dataclass
class MatrixReport:
    """`--trigger all` (or one trigger): one run per trigger, one verdict, one report."""

    release: str
    build_id: str
    cpus: int
    triggers: list[str]
    runs: list[CrashReport] = field(default_factory=list)
    failure: Failure | None = None       # before any run (prepare)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None and len(self.runs) == len(self.triggers) and all(r.ok for r in self.runs)

    @property
    def failed(self) -> list[CrashReport]:
        return [r for r in self.runs if not r.ok]

    def to_dict(self) -> dict:
        return {"schema": 2, "verdict": "pass" if self.ok else "fail", "release": self.release,
                "build_id": self.build_id, "cpus": self.cpus, "triggers": self.triggers,
                "failure": asdict(self.failure) if self.failure else None,
                "summary": {r.trigger: {"verdict": r.verdict,
                                        "failure": r.failure.message if r.failure else None,
                                        "crashed_cpu": r.crashed_cpu,
                                        "crash_tool": r.crash_tool.get("status", "not run"),
                                        "boot_to_verified": r.timings.get("boot_to_verified")}
                            for r in self.runs},
                "files": self.files, "runs": [r.to_dict() for r in self.runs]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_junit(self) -> str:
        """One testcase per trigger, and one per trigger for `crash` (skipped where it predates the kernel)."""
        suite = ET.Element("testsuite", name="crash-test", hostname=self.release)
        for r in self.runs:
            total = r.timings.get("boot_to_verified") or sum(r.timings.get(p, 0.0) for p in PHASES)
            case = ET.SubElement(suite, "testcase", classname="crash-test.trigger", name=r.trigger,
                                 time=f"{total:.3f}")
            if r.failure:
                msg = f"phase {r.failure.phase}: {r.failure.message}"
                ET.SubElement(case, "failure", message=msg).text = msg
            elif r.skipped:
                ET.SubElement(case, "skipped", message=r.skipped)
            tool = r.crash_tool
            case = ET.SubElement(suite, "testcase", classname="crash-test.crash-tool", name=r.trigger,
                                 time=f"{tool.get('seconds', 0.0):.3f}")
            status = tool.get("status")
            if status == "skip":
                ET.SubElement(case, "skipped", message=tool["reason"])
            elif status == "fail":
                ET.SubElement(case, "failure", message=tool["reason"]).text = tool["reason"]
            elif r.skipped:
                ET.SubElement(case, "skipped", message=f"not run: {r.skipped}")
            elif status != "pass":
                ET.SubElement(case, "skipped", message="not reached: the run failed before the dump was verified")
        for name in self.triggers[len(self.runs):]:
            case = ET.SubElement(suite, "testcase", classname="crash-test.trigger", name=name, time="0")
            msg = self.failure.message if self.failure else "not run"
            ET.SubElement(case, "failure" if self.failure else "skipped", message=msg)
        suite.set("tests", str(sum(1 for _ in suite.iter("testcase"))))
        suite.set("failures", str(sum(1 for _ in suite.iter("failure"))))
        suite.set("errors", "0")
        suite.set("skipped", str(sum(1 for _ in suite.iter("skipped"))))
        ET.indent(suite)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
