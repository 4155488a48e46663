"""A cell's stages declared as data: what each writes, when it is done, what the store hashes.

A ``StageSpec`` says everything the runner, the store, the integrity checks, the repair and
``status`` need to know about one per-cell stage::

    StageSpec(name="wordcount", run=count_words, done=("counts.json",),
              hashed=("counts.json",), needs=("eval",), collect=counts_metrics)

- ``name``: the stage's name in the store (``files.stage``), in progress events and hook
  points; ``directory``: its directory in the cell (``cells/<key>/<directory>/``, default the
  name). The stage runs in ``<directory>.tmp/`` and is renamed into place when complete.
- ``run(cell, ctx)``: writes the stage's files into ``ctx.out`` (``StageContext``).
- ``done``: glob patterns a complete directory matches (the stage writes them last).
- ``hashed``: the files or directories whose sha256 the store records, as glob patterns (the
  newest match by name of each) or a function of the stage directory returning paths. A
  directory hashes as a tree (relative path, size and sha256 of every file).
- ``needs``: earlier stages whose outputs it reads: redoing one of them redoes this one.
- ``collect(cell, stage_dir)``: what the stage adds to the cell's record: ``metrics`` (rows of
  the metrics table and of ``export.csv``; names must not clash with another stage's),
  ``items`` (per-item scores; one stage only), ``n_items``, ``search``.
- ``seconds(stage_dir)``: the time a reused directory recorded (None: unknown).
- ``missing(cell, stage_dir)``: why a complete directory does not serve this cell (None:
  it does), for outputs that depend on something outside the cell's spec (the xeval stage's
  list of eval tasks); a done cell for which it says something goes back to pending.
- ``incremental``: when ``missing`` sends the stage back, it runs with the directory's files
  already in ``ctx.out`` (moved, not copied) and adds what is missing.
- ``own_workers``: the stage starts its own workers (training: torchrun or Ray Train); the
  others run in a Ray task holding the cell's resources when the cell's own task holds none.

When a stage finishes, the hashes of its hashed files are sealed into ``.hashes.json`` in its
directory (``seal``); a directory reused before the store recorded it is checked against its
seal (``state``). The stage list (study/stages.py ``STAGES``) is in dependency order.

Not handled: stages that run once per study rather than per cell, stages that only some cells
run (a stage decides for itself, and may write a file that says it had nothing to do).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..events import ProgressFn
from ..grid.cells import Cell
from ..io import atomic_write_json, sha256_file
from . import layout


@dataclass(frozen=True)
class StageContext:
    """Everything a stage gets besides its cell.

    ``out``: the (empty) directory the stage writes into, renamed into place afterwards;
    ``dirs``: every stage's finished directory by stage name (``ctx.dir_of("eval")``);
    ``train_dir``: the cell's completed ``train/`` (what the eval stage evaluates; a recipe
    search points it at a candidate's); ``cache_dir``: the generation cache shared by the run's
    cells; ``share_generator``: whether eval may reuse this process's Generator for the base
    model; ``progress``: where the stage reports its ``ProgressEvent``s (None: nobody listens);
    ``validation``: training item ids that eval evaluates INSTEAD of the test items (a recipe
    search's candidate, study/search.py).
    """

    run_dir: Path
    cell_dir: Path
    out: Path
    train_dir: Path
    cache_dir: Path
    share_generator: bool = True
    progress: ProgressFn | None = None
    validation: list[str] | None = None
    dirs: Mapping[str, Path] = field(default_factory=dict)

    def dir_of(self, stage: str) -> Path:
        """The finished directory of ``stage`` in this cell."""
        return self.dirs.get(stage) or layout.stage_dir(self.cell_dir, stage)


Stage = Callable[[Cell, StageContext], None]
"""``run(cell, ctx)``: writes the stage's files into ``ctx.out``."""


@dataclass(frozen=True)
class StageSpec:
    """One per-cell stage (see the module docstring)."""

    name: str
    run: Stage
    done: tuple[str, ...]
    hashed: tuple[str, ...] | Callable[[Path], list[Path]]
    needs: tuple[str, ...] = ()
    directory: str = ""
    collect: Callable[[Cell, Path], dict[str, Any]] | None = None
    seconds: Callable[[Path], float | None] | None = None
    own_workers: bool = False
    missing: Callable[[Cell, Path], str | None] | None = None
    incremental: bool = False

    def __post_init__(self) -> None:
        if not self.directory:
            object.__setattr__(self, "directory", self.name)
        if not self.done:
            raise ValueError(f"stage {self.name!r}: `done` names no file")

    def dir_in(self, cell_dir: Path) -> Path:
        return layout.stage_dir(cell_dir, self.directory)

    def tmp_in(self, cell_dir: Path) -> Path:
        return layout.stage_tmp(cell_dir, self.directory)


def check_stages(stages: Sequence[StageSpec]) -> None:
    """ValueError unless names and directories are unique and every ``needs`` names an
    earlier stage (so that the list's order runs each stage after what it reads)."""
    seen: set[str] = set()
    dirs: set[str] = set()
    for s in stages:
        if s.name in seen or s.directory in dirs:
            raise ValueError(f"stage {s.name!r}: its name or directory is taken")
        if s.directory in (layout.SEARCH,) or s.directory.endswith(layout.TMP_SUFFIX):
            raise ValueError(f"stage {s.name!r}: directory {s.directory!r} is reserved")
        missing = [n for n in s.needs if n not in seen]
        if missing:
            raise ValueError(f"stage {s.name!r} needs {missing}, which do not run before it")
        seen.add(s.name)
        dirs.add(s.directory)


def dependents(stages: Sequence[StageSpec], name: str) -> list[str]:
    """The stages that read ``name``'s outputs, directly or through others, in list order."""
    out: list[str] = []
    for s in stages:
        if any(n == name or n in out for n in s.needs):
            out.append(s.name)
    return out


def hash_path(p: Path) -> str:
    """sha256 of a file; of a directory: of every file's relative path, size and sha256."""
    if not p.is_dir():
        return sha256_file(p)
    h = hashlib.sha256()
    for q in sorted(x for x in p.rglob("*") if x.is_file()):
        h.update(f"{q.relative_to(p).as_posix()}\t{q.stat().st_size}\t{sha256_file(q)}\n".encode())
    return h.hexdigest()


def hashed_paths(spec: StageSpec, sdir: Path) -> list[Path]:
    """The paths ``spec.hashed`` names in ``sdir`` (a pattern without a match names itself,
    so that it is reported missing). ValueError/OSError when the stage cannot tell."""
    if callable(spec.hashed):
        return list(spec.hashed(sdir))
    out = []
    for pat in spec.hashed:
        found = sorted(sdir.glob(pat))
        out.append(found[-1] if found else sdir / pat)
    return out


def hash_stage(spec: StageSpec, sdir: Path) -> dict[str, str]:
    """{path relative to the stage directory: sha256} of the stage's hashed files."""
    return {p.relative_to(sdir).as_posix(): hash_path(p) for p in hashed_paths(spec, sdir)}


def seal(spec: StageSpec, sdir: Path) -> dict[str, str]:
    """Hash a finished stage directory and write the hashes into it; returns them."""
    hashes = hash_stage(spec, sdir)
    atomic_write_json(sdir / layout.SEAL, hashes)
    return hashes


def _sealed(sdir: Path) -> dict[str, str]:
    """What the directory's seal says ({} without one). A ``train/`` written before seals
    existed has ``checkpoint.sha256``: the checkpoint's hash alone."""
    try:
        doc = json.loads((sdir / layout.SEAL).read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        pass
    try:
        return {layout.CKPT: (sdir / layout.CKPT_SHA).read_text(encoding="utf-8").strip()}
    except OSError:
        return {}


def state(spec: StageSpec, sdir: Path) -> tuple[dict[str, str] | None, str | None]:
    """(hashes, None) when ``sdir`` is a complete directory of ``spec`` that can be reused;
    (None, why not) when it must be redone; (None, None) when there is none."""
    if not sdir.exists():
        return None, None
    for pat in spec.done:
        if not any(sdir.glob(pat)):
            return None, f"{pat} is missing"
    try:
        paths = hashed_paths(spec, sdir)
    except (OSError, ValueError) as e:
        return None, str(e)
    hashes = {}
    for p in paths:
        rel = p.relative_to(sdir).as_posix()
        if not p.exists():
            return None, f"{rel} is missing"
        hashes[rel] = hash_path(p)
    for rel, sha in _sealed(sdir).items():
        if rel in hashes and hashes[rel] != sha:
            return None, f"{rel} changed since the stage finished"
    return hashes, None


__all__ = ["Stage", "StageContext", "StageSpec", "check_stages", "dependents", "hash_path",
           "hash_stage", "hashed_paths", "seal", "state"]
