"""One loaded model per worker process, shared by the stages that use it (eval, xeval, shift).

``shared_generator(model, batch_size, cache_dir, device, version)`` returns this process's
``Generator`` for that key, loading it on first use and dropping any other (one model in
memory at a time). Stages attach a cell's adapter with ``set_adapter`` and never assume which
adapter is set when they get it. A fully finetuned checkpoint is loaded here once for the
eval and xeval stages of its cell; its ``version`` (``file_version`` of the cell's
``train_meta.json``) changes when the cell is retrained in the same process, so it is loaded
again then.

Not handled: sharing across processes, several models at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GENERATORS: dict[tuple, Any] = {}  # per process: one loaded model, reused across cells and stages


def shared_generator(model: str, batch_size: int | None, cache_dir: Path | None,
                     device: str | None = None, version: Any = None) -> Any:
    """This process's Generator for ``model`` (see the module docstring)."""
    from .generator import Generator

    key = (model, batch_size, str(cache_dir), device, version)
    if key not in GENERATORS:
        GENERATORS.clear()  # keep one model in memory
        GENERATORS[key] = Generator(model, batch_size=batch_size, cache_dir=cache_dir,
                                    device=device)
    return GENERATORS[key]


def file_version(path: Path) -> tuple[int, int]:
    """What changes when a file is written again: its mtime and inode (``shared_generator``'s
    ``version`` of a checkpoint, from its ``train_meta.json``)."""
    st = Path(path).stat()
    return st.st_mtime_ns, st.st_ino


__all__ = ["GENERATORS", "file_version", "shared_generator"]
