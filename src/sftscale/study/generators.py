"""One loaded base model per worker process, shared by the cells' evaluation stages.

``shared_generator(model, batch_size, cache_dir, device, version)`` returns this process's
``Generator`` for that model, loading it once (and dropping any other: one model in memory).
The eval and xeval stages attach a cell's adapter to it (N > 0 with LoRA), use it bare
(N = 0), or, for a fully finetuned checkpoint, load the checkpoint here once for both stages
(``version``: the checkpoint's ``train_meta.json`` time stamp, so that a cell retrained in
the same process is loaded again). Not handled: several models held at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GENERATORS: dict[tuple, Any] = {}  # per process: one loaded base model, reused across cells


def shared_generator(model: str, batch_size: int | None, cache_dir: Path | None,
                     device: str | None = None, version: Any = None) -> Any:
    from ..generation.generator import Generator

    key = (model, batch_size, str(cache_dir), device, version)
    if key not in GENERATORS:
        GENERATORS.clear()  # keep one base model in memory
        GENERATORS[key] = Generator(model, batch_size=batch_size, cache_dir=cache_dir,
                                    device=device)
    return GENERATORS[key]




def checkpoint_version(train_dir: Path) -> tuple[int, int]:
    """What changes when a cell is retrained: its ``train_meta.json``'s mtime and inode."""
    st = (train_dir / "train_meta.json").stat()
    return st.st_mtime_ns, st.st_ino


__all__ = ["GENERATORS", "checkpoint_version", "shared_generator"]
