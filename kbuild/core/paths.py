"""Where the repository's data lives, and where results go (one definition)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
PACKAGING = REPO / "packaging"


def dist_root() -> Path:
    """dist/, or KBUILD_DIST_DIR (benchmarks and tests keep their output apart)."""
    return Path(os.environ.get("KBUILD_DIST_DIR") or REPO / "dist")
