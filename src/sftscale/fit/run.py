"""One fit of a study's results, for ``sftscale fit`` and ``sftscale report``: fits.json and analysis.json.

``fit_run_dir(src, settings, items=, out=, reuse=False, warn=, inputs=, write_to=) -> FitOutcome``:

1. **Inputs** (``load_fit_inputs``): a run directory with a ``study.sqlite`` is read from its
   store (the truth: ``export.csv`` may lag an interrupted run); a long CSV, or a directory
   with ``export.csv``, through ``fit.data.load_inputs``. ``input_hash`` is the sha256 of the
   long table and the per-item table as read (rows sorted, so not of a file's bytes).
2. **What is fitted** (``FitSettings``): the forms (``None``: ``forms.default_forms()``), one
   metric, every metric, or one metric per task (``metric_of``: the report's primary metrics;
   tasks with fewer than 2 N are left out, and per-item scores are used only where that metric
   is ``accuracy``), targets, where the forms predict (``at``; ``"grid"``: the measured N),
   bootstrap replicates, seed, interval levels, and whether analysis.json is written.
3. **Reuse** (``reuse=True``, the report): a fits.json at the output path whose recorded
   ``inputs.sha256`` equals the current one is used as it is, whatever settings it was written
   with (``sftscale fit --form power --level 0.8`` stays what the report shows). Otherwise it
   is refitted, and ``warn`` gets one line saying why: it could not be read, it was written by
   another version of sftscale (or an old one, with no input hash), or its inputs changed
   since. A refit keeps the settings recorded in the old file when they can still be used (its
   forms are registered), else the caller's. analysis.json is reused on the same rule, else
   recomputed.
4. **Checks** before any fitting: ``--metric`` names a metric of the table; every target is
   strictly between 0 and 1 when a fitted metric is a rate (``fit.data.is_rate``); and where
   it is about to write, the files there are its own (``io.check_owned``: a fits or analysis
   document), never a user's file or a directory (InputError, nothing written).
5. **Outputs**: ``fits.json`` (``schema.FitsDoc``: the fits, joint fits and forecasts, plus
   ``settings``, ``inputs``, ``written_by`` and ``sftscale_version``; the input files' own
   warnings, such as exact duplicate rows dropped, under ``input_warnings``) at ``out`` or in
   the input's directory; analysis.json (``schema.AnalysisDoc``, with the same ``inputs``)
   beside it when the per-item scores have ``format_ok`` and ``correct``: ``DIR/analysis.json``
   beside the default ``DIR/fits.json``, named after a fits.json the caller named
   (``--out X/f.json`` -> ``X/f.analysis.json``; ``analysis_path``). With ``write_to`` both
   are written into that directory instead (the report's stage, moved into place by the
   report when it is complete); reuse still reads them from their places. Curves are fitted
   under a progress bar on stderr (``fit.progress.run_groups``).

``read_fits`` / ``read_analysis`` read the two files back (ValueError when they are not what
these types say at the top level). Not handled: merging a reused fits.json with fits of other
settings (refit with ``sftscale fit`` to change them), locking against a concurrent writer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence, cast

import pandas as pd

from .. import __version__
from ..io import InputError, atomic_write_json, atomic_write_text, check_owned, json_by_lines, json_with_keys
from ..rundir import layout
from ..rundir.export import load_tables
from ..schema import AnalysisDoc, FitsDoc, FitSettingsDoc, InputsDoc
from .analysis import style_substance
from .data import is_rate, load_inputs, load_items, load_long, match_items
from .fitting import FITS_VERSION, fits_document
from .forms import default_forms, get_form
from .parallel import default_workers
from .progress import run_groups

Warn = Callable[[str], None]


@dataclass(frozen=True)
class FitSettings:
    """What a fit computes (module docstring, item 2); recorded in fits.json as ``settings``."""

    forms: tuple[str, ...] | None = None
    metric: str | None = None
    metric_of: Mapping[str, str] | None = None
    targets: tuple[float, ...] = ()
    at: tuple[float, ...] | Literal["grid"] = ()
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95
    forecast_level: float = 0.9
    analysis: bool = True

    def form_names(self) -> list[str]:
        """The forms by registered name (InputError for an unknown one)."""
        try:
            return [get_form(f).name for f in (self.forms or default_forms())]
        except KeyError as e:
            raise InputError(None, str(e.args[0]), field="form") from None

    def to_doc(self) -> FitSettingsDoc:
        return {"forms": self.form_names(), "metric": self.metric,
                "metric_of": dict(self.metric_of) if self.metric_of is not None else None,
                "targets": [float(t) for t in self.targets],
                "at": "grid" if self.at == "grid" else [float(a) for a in self.at],
                "n_boot": self.n_boot, "seed": self.seed, "level": self.level,
                "forecast_level": self.forecast_level, "analysis": self.analysis}

    @classmethod
    def from_doc(cls, d: FitSettingsDoc) -> FitSettings:
        """The settings a fits.json records (KeyError, TypeError or ValueError when they do not
        parse; InputError when a form is no longer registered)."""
        at = d["at"]
        s = cls(forms=tuple(d["forms"]), metric=d["metric"],
                metric_of=dict(d["metric_of"]) if d["metric_of"] is not None else None,
                targets=tuple(float(t) for t in d["targets"]),
                at="grid" if at == "grid" else tuple(float(a) for a in at),
                n_boot=int(d["n_boot"]), seed=int(d["seed"]), level=float(d["level"]),
                forecast_level=float(d["forecast_level"]), analysis=bool(d["analysis"]))
        s.form_names()
        return s


def describe_settings(d: FitSettingsDoc) -> str:
    """A fits.json's settings in a few words (for the CLI and the report)."""
    what = (f"metric {d['metric']}" if d.get("metric") else
            "each task's primary metric" if d.get("metric_of") is not None else "every metric")
    parts = [f"forms {', '.join(d['forms'])}", what, f"{100 * d['level']:g}% intervals",
             f"{100 * d['forecast_level']:g}% forecast intervals",
             f"targets {', '.join(f'{t:g}' for t in d['targets'])}" if d["targets"] else "no targets",
             f"{d['n_boot']} bootstrap replicates"]
    return "; ".join(parts)


@dataclass
class FitInputs:
    """The tables a fit reads, where its outputs go by default, and their hash."""

    long: pd.DataFrame
    items: pd.DataFrame | None
    out_dir: Path
    source: str
    items_source: str | None = None
    sha256: str = ""

    read_warnings: list[str] = field(default_factory=list)  # the files' own (fit.data)

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = input_hash(self.long, self.items)
        if not self.read_warnings:
            self.read_warnings = [*self.long.attrs.get("input_warnings", []),
                                  *(self.items.attrs.get("input_warnings", [])
                                    if self.items is not None else [])]

    def record(self) -> InputsDoc:
        return {"sha256": self.sha256, "rows": int(len(self.long)),
                "item_rows": 0 if self.items is None else int(len(self.items)),
                "source": self.source, "items": self.items_source}


def input_hash(long: pd.DataFrame, items: pd.DataFrame | None) -> str:
    """sha256 of the tables' content: columns by name, rows sorted, every value as text."""
    h = hashlib.sha256()
    for name, df in (("long", long), ("items", items)):
        h.update(f"\n#{name}\n".encode())
        if df is None:
            continue
        d = df[sorted(c for c in df.columns if not str(c).startswith("_"))].astype(str)
        d = d.sort_values(list(d.columns), kind="mergesort") if len(d.columns) else d
        h.update(d.to_csv(index=False).encode())
    return h.hexdigest()


def inputs_from_tables(metrics: Any, items: Any, run_dir: Path, items_path: Path | None = None) -> FitInputs:
    """FitInputs of a run directory's store tables (``rundir.export.load_tables``); the
    per-item table from ``items_path`` instead when given."""
    if metrics is None or len(metrics) == 0:
        raise InputError(run_dir, "the study has no finished cells yet; see `sftscale status` for its cells")
    long = load_long(pd.DataFrame(metrics))
    if items_path is not None:
        its = load_items(items_path)
    else:
        its = load_items(pd.DataFrame(items)) if items is not None and len(items) else None
    return FitInputs(long, its, Path(run_dir), str(run_dir), str(items_path) if items_path else None)


def load_fit_inputs(src: str | Path, items: str | Path | None = None) -> FitInputs:
    """The inputs of ``sftscale fit SRC [--items F]`` (module docstring, item 1)."""
    path = Path(src)
    if path.is_dir() and layout.store_path(path).exists():
        metrics, its = load_tables(path)
        return inputs_from_tables(metrics, its, path, Path(items) if items is not None else None)
    long, its, out_dir = load_inputs(path, items)
    return FitInputs(long, its, out_dir, str(src), str(items) if items is not None else None)


@dataclass
class FitOutcome:
    """What ``fit_run_dir`` wrote or reused."""

    fits: FitsDoc
    analysis: AnalysisDoc | None
    fits_path: Path
    analysis_path: Path | None  # None: no analysis.json was written or read
    inputs: FitInputs
    reused: bool = False
    note: str | None = None  # one line: reused with which settings, or refitted and why
    refit_reason: str | None = None  # why an existing fits.json was not reused
    warnings: list[str] = field(default_factory=list)
    results: list = field(default_factory=list)  # fitting.FitResult of a fit; empty when reused


def analysis_path(fits_path: Path, named: bool = False) -> Path:
    """Where analysis.json goes, beside fits.json: ``DIR/analysis.json`` beside the default
    ``DIR/fits.json`` (a run directory, or beside the CSV); named after a fits.json the caller
    named (``named``: ``--out X/f.json`` -> ``X/f.analysis.json``, ``layout.side_path``), so
    that two fits written into one folder never share one."""
    return layout.side_path(fits_path, "analysis") if named else fits_path.parent / layout.ANALYSIS


FITS_OURS = json_with_keys("version", "fits")  # what check_owned accepts as a fits.json of ours
ANALYSIS_OURS = json_with_keys("groups")


def check_outputs(fits_path: Path, a_path: Path, field: str | None = None) -> None:
    """InputError unless both paths are free for sftscale to write (missing, or a fits /
    analysis document it wrote): never a user's file, never a directory."""
    if field is not None and fits_path.is_dir():
        raise InputError(fits_path, "is a directory; --out takes the path of the fits.json to "
                         "write", field=field)
    check_owned(fits_path, FITS_OURS, "a fits.json of sftscale fit", field=field)
    check_owned(a_path, ANALYSIS_OURS, "an analysis.json of sftscale fit", field=field)


def check_settings(inputs: FitInputs, s: FitSettings) -> None:
    """The settings against the table (before any fitting): ``metric`` names one of its
    metrics; each target lies strictly between 0 and 1 when a fitted metric is a rate (0 and
    1 are never reached by a forecast)."""
    long = inputs.long
    if s.metric is not None and not (long["metric"] == s.metric).any():
        raise InputError(inputs.source, f"no rows of metric {s.metric!r} (the table has: "
                         f"{', '.join(sorted(set(long['metric'])))})", field="--metric")
    rates = sorted(m for m in set(_asked(long, s)["metric"]) if is_rate(m))
    for t in s.targets:
        if rates and not 0 < t < 1:
            raise InputError(None, f"{t:g} is outside the range of {rates[0]!r}: a rate's target "
                             "lies strictly between 0 and 1 (e.g. 0.8 for 80%)", field="--target")


def read_fits(path: Path) -> FitsDoc:
    """fits.json (ValueError when it is not JSON or not a fits document at the top level)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("fits"), list):
        raise ValueError("not a fits document (no 'fits' list)")
    return cast(FitsDoc, doc)


def read_analysis(path: Path) -> AnalysisDoc:
    """analysis.json (ValueError when it is not JSON or has no 'groups' list)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        raise ValueError("not an analysis document (no 'groups' list)")
    return cast(AnalysisDoc, doc)


def _why_not_reuse(path: Path, inputs: FitInputs) -> tuple[FitsDoc | None, str | None]:
    """(the document, None) when ``path`` can be reused; (the document if readable, why not)
    otherwise; (None, None) when there is no file."""
    if not path.exists():
        return None, None
    try:
        doc = read_fits(path)
    except (OSError, ValueError) as e:
        return None, f"it cannot be read ({e})"
    rec = doc.get("inputs")
    if doc.get("version", 1) < FITS_VERSION or not isinstance(rec, dict) or "sha256" not in rec:
        return doc, "it was written by an older sftscale, without a hash of its inputs"
    if doc.get("sftscale_version") != __version__:
        return doc, f"it was written by sftscale {doc.get('sftscale_version')} (this is {__version__})"
    if rec["sha256"] != inputs.sha256:
        if not _same_source(rec, inputs):
            return doc, f"it was computed from other inputs ({rec.get('source')}{_plus(rec.get('items'))})"
        return doc, (f"the results changed since it was written (sha256 of the results and per-item "
                     f"scores {rec['sha256'][:12]} then, {inputs.sha256[:12]} now)")
    return doc, None


def _plus(items: str | None) -> str:
    return f" with per-item scores {items}" if items else ""


def _same_source(rec: InputsDoc, inputs: FitInputs) -> bool:
    def same(a: str | None, b: str | None) -> bool:
        return a == b or (a is not None and b is not None and Path(a).resolve() == Path(b).resolve())
    return same(rec.get("source"), inputs.source) and same(rec.get("items"), inputs.items_source)


def _recorded_settings(doc: FitsDoc | None) -> FitSettings | None:
    try:
        return FitSettings.from_doc(doc["settings"]) if doc is not None and "settings" in doc else None
    except (KeyError, TypeError, ValueError, InputError):
        return None


def fit_run_dir(src: str | Path, settings: FitSettings | None = None, *, items: str | Path | None = None,
                out: str | Path | None = None, reuse: bool = False, warn: Warn | None = None,
                inputs: FitInputs | None = None, written_by: str = "sftscale fit",
                write_to: Path | None = None, workers: int | None = None) -> FitOutcome:
    """Fit (or, with ``reuse``, reuse) and write fits.json and analysis.json; module docstring.
    ``workers``: processes for big inputs (``fit.parallel``; default: the CPUs, at most 8)."""
    settings = settings or FitSettings()
    settings.form_names()  # an unknown form is refused before anything is read
    warn = warn or (lambda line: None)
    flag = "--out" if out is not None else None
    fits_path = Path(out) if out is not None else \
        layout.fits_path(inputs.out_dir if inputs is not None else _out_dir(src))
    a_path = analysis_path(fits_path, named=out is not None)
    if not reuse:  # never a user's file: refused before the inputs are read
        check_outputs(fits_path, a_path, field=flag)
    inputs = inputs or load_fit_inputs(src, items)
    check_settings(inputs, settings)
    note = why = None
    if reuse:
        doc, why = _why_not_reuse(fits_path, inputs)
        if doc is not None and why is None:
            return _reused(doc, fits_path, a_path, inputs, write_to)
        if why is not None:
            recorded = _recorded_settings(doc)
            settings = recorded or settings
            note = (f"refitting {fits_path.name}: {why}; with "
                    + ("the settings it recorded" if recorded else "this command's settings")
                    + f" ({describe_settings(settings.to_doc())})")
            warn(note)
    if reuse:  # a refit: never over a user's file
        check_outputs(fits_path, a_path, field=flag)
    fits_doc, analysis_doc, warnings, results = _fit(inputs, settings, warn, written_by,
                                                      default_workers() if workers is None else workers)
    atomic_write_text(_dest(fits_path, write_to), json_by_lines(fits_doc))  # one line per fit: fast for 500 curves
    if analysis_doc is not None:
        atomic_write_json(_dest(a_path, write_to), analysis_doc)
    return FitOutcome(fits_doc, analysis_doc, fits_path, a_path if analysis_doc is not None else None,
                      inputs, note=note, refit_reason=why, warnings=warnings, results=results)


def _out_dir(src: str | Path) -> Path:
    """Where ``load_fit_inputs(src)`` puts outputs by default: the run directory, or beside
    the CSV."""
    p = Path(src)
    return p if p.is_dir() else p.parent


def _dest(path: Path, write_to: Path | None) -> Path:
    """Where ``path`` is written: itself, or its name in ``write_to`` (a stage)."""
    return path if write_to is None else Path(write_to) / path.name


def _reused(doc: FitsDoc, fits_path: Path, a_path: Path, inputs: FitInputs,
            write_to: Path | None = None) -> FitOutcome:
    """A fresh fits.json: use it; reuse analysis.json on the same rule, else recompute it."""
    extra = ""
    try:
        analysis: AnalysisDoc | None = read_analysis(a_path)
    except (OSError, ValueError):
        analysis = None
    if analysis is None or analysis.get("inputs", {}).get("sha256") != inputs.sha256:
        s = _recorded_settings(doc) or FitSettings()
        analysis = _analysis(_matched_items(inputs, s)[0], s, inputs)
        if analysis is not None:
            check_outputs(fits_path, a_path)
            atomic_write_json(_dest(a_path, write_to), analysis)
            extra = "; analysis.json recomputed (missing or of other inputs)"
    st = doc.get("settings")
    note = (f"reusing {fits_path.name}, written by {doc.get('written_by', 'sftscale')} for these inputs"
            + (f" ({describe_settings(st)})" if st else "") + extra)
    return FitOutcome(doc, analysis, fits_path, a_path if analysis is not None else None, inputs,
                      reused=True, note=note)


def _has_scores(items: pd.DataFrame | None) -> bool:
    return items is not None and {"format_ok", "correct"} <= set(items.columns)


def _analysis(items: pd.DataFrame | None, s: FitSettings, inputs: FitInputs) -> AnalysisDoc | None:
    if not s.analysis or not _has_scores(items):
        return None
    doc = style_substance(items, n_boot=s.n_boot, seed=s.seed, level=s.level)
    doc["inputs"] = inputs.record()
    return doc


def _groups(long: pd.DataFrame, items: pd.DataFrame | None, s: FitSettings
            ) -> list[tuple[pd.DataFrame, pd.DataFrame | None]]:
    """The (rows, per-item rows) fitted together: the whole table, or one per task (``metric_of``)."""
    if s.metric_of is None:
        return [(long, items)]
    out = []
    for task, met in s.metric_of.items():
        rows = long[(long["task"] == task) & (long["metric"] == met)]
        if rows["n"].nunique() < 2:
            continue
        its = None
        if items is not None and met == "accuracy":  # per-item 'correct' is this metric only for accuracy
            its = items[items["task"] == task]
            its = its if len(its) else None
        out.append((rows, its))
    return out


def _matched_items(inputs: FitInputs, s: FitSettings) -> tuple[pd.DataFrame | None, list[str]]:
    """The per-item rows of the curves asked for, and the warnings of ``data.match_items``."""
    asked = _asked(inputs.long, s)
    return match_items(asked if len(asked) else inputs.long, inputs.items,
                       inputs.items_source or "of the run directory")


def _asked(long: pd.DataFrame, s: FitSettings) -> pd.DataFrame:
    """The rows of the metrics asked for (before any are left out for having too few N)."""
    if s.metric_of is not None:
        keep = [(t, m) for t, m in s.metric_of.items()]
        return long[[(t, m) in keep for t, m in zip(long["task"], long["metric"])]]
    return long if s.metric is None else long[long["metric"] == s.metric]


def _fit(inputs: FitInputs, s: FitSettings, warn: Warn, written_by: str, workers: int = 1
         ) -> tuple[FitsDoc, AnalysisDoc | None, list[str], list]:
    long = inputs.long
    items, matched = _matched_items(inputs, s)
    warnings = inputs.read_warnings + matched
    if s.analysis and items is not None and not _has_scores(items):
        warnings.append("no analysis.json: the per-item scores need both 'format_ok' and 'correct' columns")
    for w in warnings:
        warn(w)
    groups = _groups(long, items, s)
    # fit_table and joint_fits per group, one forecast_table over all, under a progress bar
    # (the same numbers as one call each)
    fits, joint, forecasts = run_groups(groups, metric=s.metric, forms=s.form_names(),
                                        n_boot=s.n_boot, seed=s.seed, level=s.level,
                                        targets=s.targets, forecast_level=s.forecast_level, workers=workers)
    at: Sequence[float] = (sorted({float(n) for n in long["n"].unique()}) if s.at == "grid" else s.at)
    doc = fits_document(fits, targets=s.targets, predict_at=at, source=inputs.source, joint=joint,
                        forecasts=forecasts)
    if warnings:
        doc["input_warnings"] = warnings
    doc["settings"] = s.to_doc()
    doc["inputs"] = inputs.record()
    doc["written_by"] = written_by
    doc["sftscale_version"] = __version__
    return doc, _analysis(items, s, inputs), warnings, fits


__all__ = ["FITS_VERSION", "FitInputs", "FitOutcome", "FitSettings", "analysis_path", "check_outputs",
           "check_settings", "describe_settings", "fit_run_dir", "input_hash", "inputs_from_tables",
           "load_fit_inputs", "read_analysis", "read_fits"]
