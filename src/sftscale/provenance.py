"""What produced a file: package versions and the source revision, recorded in
``train_meta.json`` and in results files. A leaf module: it imports nothing of sftscale.

Not handled: the versions of packages outside ``PACKAGES`` (record them yourself) and a dirty
working tree (the git hash names the commit only).
"""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: the packages whose versions change what a cell trains or generates
PACKAGES = ("sftscale", "torch", "transformers", "peft", "trl", "accelerate", "lm_eval", "vllm")


def versions() -> dict[str, str | None]:
    """``{"python": ..., package: version or None}`` for every package in ``PACKAGES``."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def git_hash() -> str | None:
    """Short hash of the checkout sftscale runs from, or None outside a git checkout."""
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                           capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (r.stdout.strip() or None) if r.returncode == 0 else None


__all__ = ["PACKAGES", "git_hash", "versions"]
