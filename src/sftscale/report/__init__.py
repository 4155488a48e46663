"""``sftscale report DIR``: a self-contained ``report.html`` plus PNG and SVG figures.

Reads only files in the run directory: ``study.sqlite`` (through
``rundir.export.load_tables``), the cells' sample files, ``knowledge/table.json`` when the
knowledge experiment ran, and ``fits.json`` / ``analysis.json``: reused when they were written
for the same results (by ``sftscale fit`` with any settings, or an earlier report), else
computed here by the same ``fit.run.fit_run_dir`` as ``sftscale fit``, with one line on why
(``report.data``). The page is the ordered list ``report.sections.SECTIONS`` over one
``ReportData``. Figures are embedded as base64 PNG so the page opens offline with no other
file; the SVGs sit beside it for papers.

All or nothing: everything a report writes (``fits.json`` and ``analysis.json`` when it
refits or recomputes them, ``report/``) goes under ``DIR/.report.tmp-<pid>/`` first and is
moved into place at the end (``staged_outputs``), so a report that fails midway (a damaged
samples file, Ctrl-C) leaves ``fits.json``, ``analysis.json`` and ``report/`` as they were. A
``fits.json`` or ``analysis.json`` that sftscale did not write is never replaced (exit 2).

Not handled: comparing several run directories in one report, interactive plots.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..io import InputError, atomic_write_json, atomic_write_text, remove_path
from ..rundir import layout
from . import sections as _sections
from .data import DEFAULT_TARGETS, ReportData, load_report_data, primary_metrics
from .html import page
from .sections import SECTIONS, Section

#: what a report may write into the run directory, moved there from its stage in this order
STAGED = (layout.FITS, layout.ANALYSIS, layout.REPORT)


def write_report(run_dir: str | Path, knowledge_dir: str | Path | None = None, n_boot: int = 1000,
                 targets: Sequence[float] = DEFAULT_TARGETS, title: str | None = None,
                 sections: Sequence[Section] | None = None, say: Callable[[str], None] | None = None) -> Path:
    """Read (or fit) the results, render ``sections`` (default: ``report.sections.SECTIONS`` as it
    is when called), write ``DIR/report/report.html`` and ``report_meta.json``; ``say`` gets the
    line on fits.json. All or nothing (module docstring)."""
    run_dir = Path(run_dir)
    if not layout.store_path(run_dir).exists():  # before the stage: nothing made in a stranger's folder
        raise InputError(run_dir, f"not a run directory (no {layout.STORE})")
    with staged_outputs(run_dir) as stage:
        t0 = time.perf_counter()
        data = load_report_data(run_dir, knowledge_dir, n_boot=n_boot, targets=targets, title=title,
                                say=say, stage=stage)
        html = page(data, _sections.SECTIONS if sections is None else sections)
        data.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(data.out_dir / layout.REPORT_HTML, html)
        atomic_write_json(data.out_dir / layout.REPORT_META,
                          {"seconds": time.perf_counter() - t0,
                           "figures": {k: {e: p.name for e, p in v.items()} for k, v in data.figures.items()}})
    return layout.report_dir(run_dir) / layout.REPORT_HTML


@contextlib.contextmanager
def staged_outputs(run_dir: Path) -> Iterator[Path]:
    """A fresh stage directory inside ``run_dir`` (``layout.report_stage``: the same
    filesystem, so renames are atomic); on success its ``STAGED`` entries replace those of
    ``run_dir`` (a directory by two renames: the old one aside, the new one in), on any failure
    nothing is moved. The stage is removed either way; stages left by killed reports are
    removed at the next start."""
    for old in run_dir.glob(layout.REPORT_STAGE_PREFIX + "*"):
        pid = old.name[len(layout.REPORT_STAGE_PREFIX):]
        if not (pid.isdigit() and _alive(int(pid))):
            remove_path(old)
    stage = layout.report_stage(run_dir, os.getpid())
    try:
        remove_path(stage)
        stage.mkdir()
    except OSError as e:
        raise InputError(run_dir, f"cannot write in the run directory ({e.strerror}); the "
                         "report is written into it") from None
    try:
        yield stage
        for name in STAGED:
            new, dest = stage / name, run_dir / name
            if not new.exists():
                continue
            if new.is_dir() and dest.exists():
                os.replace(dest, stage / f"{name}.old")
            os.replace(new, dest)
    finally:
        remove_path(stage)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


__all__ = ["DEFAULT_TARGETS", "ReportData", "SECTIONS", "STAGED", "Section", "load_report_data",
           "primary_metrics", "staged_outputs", "write_report"]
