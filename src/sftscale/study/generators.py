"""One loaded base model per worker process, shared by the cells' evaluation stages.

``shared_generator(model, batch_size, cache_dir, device)`` returns this process's
``Generator`` for that base model, loading it once (and dropping any other: one base model
in memory). The eval and xeval stages attach a cell's adapter to it (N > 0 with LoRA) or use
it bare (N = 0). Not handled: fully finetuned checkpoints (each is a model of its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GENERATORS: dict[tuple, Any] = {}  # per process: one loaded base model, reused across cells


def shared_generator(model: str, batch_size: int | None, cache_dir: Path | None,
                     device: str | None = None) -> Any:
    from ..generation.generator import Generator

    key = (model, batch_size, str(cache_dir), device)
    if key not in GENERATORS:
        GENERATORS.clear()  # keep one base model in memory
        GENERATORS[key] = Generator(model, batch_size=batch_size, cache_dir=cache_dir,
                                    device=device)
    return GENERATORS[key]


__all__ = ["GENERATORS", "shared_generator"]
