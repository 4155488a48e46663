"""Where sftscale keeps files outside a run directory: one cache root for every stage.

``cache_root()`` is ``$SFTSCALE_CACHE`` or ``~/.cache/sftscale``; converted GGUF models,
HumanEval+ ground truth and the NLTK tables copy live below it. A leaf module: it imports
nothing of sftscale, so any stage may use it. Not handled: cleaning the cache (delete the
folder; everything in it is rebuilt on demand).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SFTSCALE_CACHE`` or ``~/.cache/sftscale``."""
    env = os.environ.get("SFTSCALE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sftscale"


__all__ = ["cache_root"]
