"""``sftscale report DIR``: a self-contained ``report.html`` plus PNG and SVG figures.

Reads only files in the run directory: ``study.sqlite`` (through
``rundir.export.load_tables``), the cells' sample files, ``knowledge/table.json`` when the
knowledge experiment ran, and ``fits.json`` / ``analysis.json``: reused when they were written
for the same results (by ``sftscale fit`` with any settings, or an earlier report), else
computed here by the same ``fit.run.fit_run_dir`` as ``sftscale fit``, with one line on why
(``report.data``). The page is the ordered list ``report.sections.SECTIONS`` over one
``ReportData``. Figures are embedded as base64 PNG so the page opens offline with no other
file; the SVGs sit beside it for papers.

Not handled: comparing several run directories in one report, interactive plots.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from ..io import atomic_write_json, atomic_write_text
from ..rundir import layout
from . import sections as _sections
from .data import DEFAULT_TARGETS, ReportData, load_report_data, primary_metrics
from .html import page
from .sections import SECTIONS, Section


def write_report(run_dir: str | Path, knowledge_dir: str | Path | None = None, n_boot: int = 1000,
                 targets: Sequence[float] = DEFAULT_TARGETS, title: str | None = None,
                 sections: Sequence[Section] | None = None, say: Callable[[str], None] | None = None) -> Path:
    """Read (or fit) the results, render ``sections`` (default: ``report.sections.SECTIONS`` as it
    is when called), write ``DIR/report/report.html`` and ``report_meta.json``; ``say`` gets the
    line on fits.json."""
    t0 = time.perf_counter()
    data = load_report_data(run_dir, knowledge_dir, n_boot=n_boot, targets=targets, title=title, say=say)
    html = page(data, _sections.SECTIONS if sections is None else sections)
    path = data.out_dir / layout.REPORT_HTML
    atomic_write_text(path, html)
    atomic_write_json(data.out_dir / layout.REPORT_META,
                      {"seconds": time.perf_counter() - t0,
                       "figures": {k: {e: p.name for e, p in v.items()} for k, v in data.figures.items()}})
    return path


__all__ = ["DEFAULT_TARGETS", "ReportData", "SECTIONS", "Section", "load_report_data", "primary_metrics",
           "write_report"]
