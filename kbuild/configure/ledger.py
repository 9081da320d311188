"""RequirementLedger: every requested value, where it came from, and whether it held."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class LedgerEntry:
    symbol: str  # without CONFIG_; "A|B" for "any of"
    source: str  # "profile minimal (configs/fragments/minimal.config:3)", "requirement crash-dump", ...
    requested: str
    effective: str
    status: str  # pass | fail | overridden
    why: str = ""


@dataclass
class RequirementLedger:
    entries: list[LedgerEntry] = field(default_factory=list)
    crosscheck: dict | None = None  # filled by the olddefconfig cross-check

    def add(self, entry: LedgerEntry) -> None:
        self.entries.append(entry)

    @property
    def failures(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures and (self.crosscheck is None or self.crosscheck.get("ok", False))

    def to_dict(self) -> dict:
        return {"ok": self.ok, "entries": [asdict(e) for e in self.entries], "crosscheck": self.crosscheck}

    @classmethod
    def from_dict(cls, data: dict) -> "RequirementLedger":
        return cls([LedgerEntry(**e) for e in data["entries"]], data.get("crosscheck"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """A fixed-width table for humans; `why` is printed on its own line when long."""
        rows = [("STATUS", "SYMBOL", "REQUESTED", "EFFECTIVE", "SOURCE")]
        notes: dict[int, str] = {}
        for i, e in enumerate(self.entries, 1):
            rows.append((e.status.upper(), e.symbol, e.requested, e.effective, e.source))
            if e.why:
                notes[i] = e.why
        widths = [min(max(len(r[c]) for r in rows), 40) for c in range(4)]
        lines = []
        for i, r in enumerate(rows):
            lines.append("  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4])
            if i in notes:
                lines.append(" " * (widths[0] + 2) + "why: " + notes[i])
        if self.crosscheck is not None:
            c = self.crosscheck
            lines.append("")
            lines.append("cross-check (make olddefconfig): " + (
                "identical" if c.get("ok") else f"{len(c.get('differences', []))} symbol(s) differ: "
                + ", ".join(f"{d['symbol']} ours={d['ours']} kernel={d['kernel']}" for d in c.get("differences", [])[:20])))
        return "\n".join(lines)
