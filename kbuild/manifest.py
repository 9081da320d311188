"""dist/<release>/manifest.json: the build's record, and the only thing later stages read.

Written last, to a temporary name and renamed, and removed before a build starts
compiling, so a manifest on disk always describes a verified build.
Schema: docs/manifest.md.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import BadInput
from .hashing import file_sha256

SCHEMA = 1
MANIFEST = "manifest.json"


def path_for(dist: Path, release: str) -> Path:
    return dist / release / MANIFEST


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no manifest; run `invoke build-kernel` first") from None
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: unreadable manifest ({e})") from None
    if data.get("schema") != SCHEMA or data.get("status") != "success":
        raise BadInput(f"{path}: not a successful schema-{SCHEMA} build manifest; rebuild")
    return data


def discard(path: Path) -> None:
    """Before compiling: an old manifest must not outlive the artifacts it describes."""
    path.unlink(missing_ok=True)


def artifacts_intact(data: dict) -> bool:
    """Every recorded artifact still exists with its recorded hash."""
    try:
        return all(os.path.exists(a["path"]) and file_sha256(Path(a["path"])) == a["sha256"]
                   for a in data["artifacts"])
    except (KeyError, TypeError, OSError):
        return False
