"""Where the project keeps files shared between runs (converted model checkpoints, downloads)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$FUSION_STEERING_CACHE, else ~/.cache/fusion-steering."""
    return Path(os.environ.get("FUSION_STEERING_CACHE", Path.home() / ".cache" / "fusion-steering"))
