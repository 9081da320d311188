"""sha256 of files (streamed: vmlinux is ~100 MB) and of JSON-able values, one definition."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest(obj) -> str:
    """Stable hash of a JSON-able value (dataclasses and paths via str)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def tree_digest(folders: list[Path], pattern: str = "*") -> str:
    """Stable hash of every file matching `pattern` under `folders` (relative names and contents)."""
    entries = []
    for folder in folders:
        for f in sorted(Path(folder).rglob(pattern)):
            if f.is_file():
                entries.append((f"{Path(folder).name}/{f.relative_to(folder)}", file_sha256(f)))
    return digest(entries)
