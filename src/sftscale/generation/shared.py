"""One loaded base model per worker process, shared by the stages that use it (eval, shift).

``shared_generator(model, batch_size, cache_dir, device)`` returns this process's
``Generator`` for that key, loading it on first use and dropping any other (one base model in
memory at a time). Stages attach a cell's adapter with ``set_adapter`` and never assume which
adapter is set when they get it.

Not handled: sharing across processes, several base models at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GENERATORS: dict[tuple, Any] = {}  # per process: one loaded base model, reused across cells


def shared_generator(model: str, batch_size: int | None, cache_dir: Path | None,
                     device: str | None = None) -> Any:
    """This process's Generator for ``model`` (see the module docstring)."""
    from .generator import Generator

    key = (model, batch_size, str(cache_dir), device)
    if key not in GENERATORS:
        GENERATORS.clear()  # keep one base model in memory
        GENERATORS[key] = Generator(model, batch_size=batch_size, cache_dir=cache_dir,
                                    device=device)
    return GENERATORS[key]


__all__ = ["GENERATORS", "shared_generator"]
