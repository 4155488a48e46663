"""``sftscale fit`` on big inputs: a progress bar while it fits, a summary instead of a table.

``run_groups(groups, ...) -> (fits, joint, forecasts)``: for groups of (rows, per-item rows)
fitted together (``fit.run.fit_run_dir``: the whole table, or one group per task), the same
three results as one call each of ``fitting.fit_table`` and ``joint.joint_fits`` per group and
of ``forecast.forecast_table`` over all of them (every curve's bootstrap generator is seeded by
its own key, ``bootstrap.curve_rng``, and every batched fit solves each row alone, so how the
curves are grouped changes nothing). Each curve's data are built once and shared: the fits
of a group's curves of one N grid run together, form by form (``fitting.fit_curve_data``);
the joint fits take ``fit_table``'s fit of the joint form where it is the same fit
(``joint_fits(reuse=)``); with one group the forecasts use the same curve data
(``forecast.forecast_curve_data``). A progress bar on stderr says how far it is (fits counted
form by form, joint fits per task/metric group): shown when stderr is a terminal; otherwise
one line per stage when there are more than ``SUMMARY_OVER`` curves, and nothing for small
inputs. ``run_fits(long_df, items_df, ...)`` is the one-group case.

``print_summary(doc, analysis_doc, ...)``: what ``sftscale fit`` prints instead of the
per-curve table (and one line per warning and per joint difference) when there are more than
``SUMMARY_OVER`` curves: counts of curves, chosen forms, warnings grouped by kind, joint
differences and forecasts, and where the details are (fits.json). Small inputs keep the
table.

Big inputs (more than ``parallel.PARALLEL_OVER`` curves, ``workers`` > 1) are fitted in forked
worker processes (``fit.parallel``): curve data, fits and backtests per chunk of curves, the
joint fits per task/metric group, the forecasts per chunk after the pooled calibration; the
results are those of one process.

Not handled: an estimate of the remaining time (the curves differ too much in cost), progress inside one
form's batched fit (a 500-curve form is one step of the bar).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from ..schema import ForecastsDoc

#: above this many curves ``sftscale fit`` prints a summary, not one table row per fit
SUMMARY_OVER = 20


def n_curves(long_df: Any, metric: str | None) -> int:
    from .fitting import select_metric

    rows = select_metric(long_df, metric)
    return int(rows.groupby(["model", "task", "metric"]).ngroups)


def run_fits(long_df: Any, items_df: Any, *, metric: str | None, forms: Sequence[str] | None,
             n_boot: int, seed: int, level: float, targets: Sequence[float],
             forecast_level: float, workers: int = 1) -> tuple[list, list, ForecastsDoc | None]:
    """(fit_table results, joint_fits, forecast_table) of one table; see the module docstring."""
    return run_groups([(long_df, items_df)], metric=metric, forms=forms, n_boot=n_boot, seed=seed,
                      level=level, targets=targets, forecast_level=forecast_level, workers=workers)


def run_groups(groups: Sequence[tuple[Any, Any]], *, metric: str | None,
               forms: Sequence[str] | None, n_boot: int, seed: int, level: float,
               targets: Sequence[float], forecast_level: float,
               workers: int = 1) -> tuple[list, list, ForecastsDoc | None]:
    """(fit_table results, joint_fits, forecast_table or None without groups) of ``groups``,
    under a progress bar, in ``workers`` processes for more than ``parallel.PARALLEL_OVER``
    curves (the same numbers); see the module docstring."""
    from ..io import InputError
    from .fitting import select_metric
    from .forms import default_forms, get_form
    from .lm import COMPILED_FROM, compiled, warm_compiled
    from .parallel import PARALLEL_OVER, can_fork

    parts, multi, n_rows, n_cur = [], [], 0, 0
    for rows, its in groups:
        rows = select_metric(rows, metric)
        n_rows += len(rows)
        n_cur += int(rows.groupby(["model", "task", "metric"]).ngroups)
        parts.append((rows, its))
        multi += [(part, its) for _, part in rows.groupby(["task", "metric"], sort=True)
                  if part["model"].nunique() > 1]
    form_names = list(forms or default_forms())
    for f in form_names:  # as fit_table: an unknown form is the user's input
        try:
            get_form(f)
        except KeyError as e:
            raise InputError(None, str(e.args[0]), field="form") from None
    workers = workers if n_cur > PARALLEL_OVER and can_fork() else 1
    big = n_cur * max(n_boot, 1) >= COMPILED_FROM
    if big:
        warm_compiled()
    with compiled(big):  # before any fork: workers inherit it
        return _run(parts, multi, n_rows, n_cur, metric, form_names, n_boot, seed, level, targets,
                    forecast_level, workers, several=len(groups) > 1)


def _run(parts: list, multi: list, n_rows: int, n_cur: int, metric: str | None, form_names: list[str],
         n_boot: int, seed: int, level: float, targets: Sequence[float], forecast_level: float,
         workers: int, several: bool) -> tuple[list, list, ForecastsDoc | None]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .data import load_items, load_long
    from .fitting import _is_items_frame, fit_curve_data, iter_curves, select_metric
    from .forecast import forecasts_document, metric_groups

    con = Console(stderr=True)
    say = (lambda msg: None) if con.is_terminal or n_cur <= SUMMARY_OVER else \
        (lambda msg: print(msg, file=sys.stderr, flush=True))
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=con, transient=True,
                  disable=not con.is_terminal) as bar:
        procs = f" in {workers} processes" if workers > 1 else ""
        say(f"fitting {n_cur} curves ({n_rows:,} rows, {n_boot} bootstrap replicates){procs}")
        task = bar.add_task("fitting curves x forms" + (" and backtests" if workers > 1 else ""),
                            total=n_cur * len(form_names))
        fits: list = []
        all_cds: list = []
        records: dict | None = {} if workers > 1 else None
        for rows, its in parts:  # the curves of a group with one N grid are fitted together
            it = load_items(its) if its is not None and not _is_items_frame(its) else its
            long = select_metric(load_long(rows), metric)
            if workers > 1:
                cds, fs, recs = _fit_parallel(long, it, n_boot, seed, form_names, level, workers,
                                              lambda k: bar.advance(task, k))
                records.update(recs)  # type: ignore[union-attr]
            else:
                cds = list(iter_curves(long, it, n_boot, seed))
                fs = fit_curve_data(cds, form_names, level=level, progress=lambda k: bar.advance(task, k))
            all_cds += cds
            fits += fs
        by_key = {(f.model, f.task, f.metric, f.form): f for f in fits}
        say(f"joint fits across models: {len(multi)} task/metric group(s)")
        task = bar.add_task("joint fits across models", total=len(multi))
        joint = _joint(multi, metric, n_boot, seed, level, by_key, workers, lambda: bar.advance(task))
        forecasts = None
        if parts:  # one calibration over every curve fitted (the same metric pooled)
            say(f"forecasts and their backtests: {n_cur} curves")
            bar.add_task("forecasts and backtests", total=None)
            if several:  # forecast_table's order over all groups: sorted by curve
                all_cds.sort(key=lambda cd: (cd.model, cd.task, cd.metric))
            if records is None:
                forecasts = forecasts_document(metric_groups(all_cds), targets, forecast_level)
            else:
                recs_of = records
                forecasts = forecasts_document(
                    metric_groups(all_cds), targets, forecast_level,
                    backtests=lambda curves: [r for c in curves for r in recs_of.get(c.key, [])],
                    forecasts=lambda jobs, t, lv: _forecast_parallel(jobs, t, lv, workers=workers))
    return fits, joint, forecasts


# --- the parallel path (fit.parallel): each piece a function of its own curves ---------------

def _fit_parallel(long: Any, items: Any, n_boot: int, seed: int, forms: list[str], level: float,
                  workers: int, advance: Any) -> tuple[list, list, dict]:
    from .parallel import CHUNKS_PER_WORKER, chunks, fork_map

    keys = sorted(long.groupby(["model", "task", "metric"]).groups)
    pieces = [[keys[i] for i in r] for r in chunks(len(keys), workers * CHUNKS_PER_WORKER)]
    done = iter(pieces)
    shared = {"long": long, "items": items, "n_boot": n_boot, "seed": seed, "forms": forms, "level": level}
    res = fork_map(_fit_chunk, pieces, workers, shared, done=lambda: advance(len(next(done)) * len(forms)))
    cds, fits, recs = [], [], {}
    for c, f, r in res:
        cds += c
        fits += f
        recs.update(r)
    return cds, fits, recs


def _fit_chunk(keys: list) -> tuple[list, list, dict]:
    """Worker: curve data, fits and backtest records of the curves ``keys``."""
    from .backtest import curve_from_data
    from .fitting import fit_curve_data, iter_curves
    from .forecast import backtest_curves
    from .parallel import SHARED as S

    long = S["long"]
    sub = long[long.set_index(["model", "task", "metric"]).index.isin(keys)]
    cds = list(iter_curves(sub, S["items"], S["n_boot"], S["seed"]))
    fits = fit_curve_data(cds, S["forms"], level=S["level"])
    recs: dict = {}
    for r in backtest_curves([curve_from_data(cd) for cd in cds]):
        recs.setdefault(r.curve, []).append(r)
    return cds, fits, recs


def _joint(multi: list, metric: str | None, n_boot: int, seed: int, level: float, by_key: dict,
           workers: int, advance: Any) -> list:
    from .parallel import fork_map

    shared = {"multi": multi, "metric": metric, "n_boot": n_boot, "seed": seed, "level": level,
              "by_key": by_key}
    return [j for js in fork_map(_joint_one, list(range(len(multi))), workers, shared, done=advance) for j in js]


def _joint_one(i: int) -> list:
    from .joint import joint_fits
    from .parallel import SHARED as S

    part, its = S["multi"][i]
    return joint_fits(part, its, metric=S["metric"], n_boot=S["n_boot"], seed=S["seed"], level=S["level"],
                      reuse=S["by_key"])


def _forecast_parallel(jobs: list, targets: Sequence[float], level: float, *, workers: int) -> list[dict]:
    """Every metric's forecasts (``forecasts_document``'s jobs) in one pool: the curves of all
    metrics, in order, cut into chunks."""
    from .parallel import CHUNKS_PER_WORKER, chunks, fork_map

    flat = [(j, i) for j, (curves, _, _) in enumerate(jobs) for i in range(len(curves))]
    shared = {"jobs": jobs, "flat": flat, "targets": targets, "level": level}
    pieces = chunks(len(flat), workers * CHUNKS_PER_WORKER)
    return [d for ds in fork_map(_forecast_chunk, pieces, workers, shared) for d in ds]


def _forecast_chunk(r: range) -> list[dict]:
    from .forecast import forecast_group
    from .parallel import SHARED as S

    out: list[dict] = []
    by_job: dict[int, list[int]] = {}
    for k in r:
        j, i = S["flat"][k]
        by_job.setdefault(j, []).append(i)
    for j, idx in by_job.items():  # in order: r is contiguous in the flat order
        curves, cal, records = S["jobs"][j]
        out += [f.to_dict() for f in forecast_group([curves[i] for i in idx], cal, records,
                                                      S["targets"], S["level"])]
    return out


def _kind(msg: str) -> str:
    """A warning with its numbers and quoted names blanked, to count warnings of one kind."""
    msg = re.sub(r"'[^']*'", "'…'", msg)
    return re.sub(r"[-+]?\d[\d.,]*(e[-+]?\d+)?", "#", msg)


def _plural(k: int, word: str) -> str:
    return f"{k:,} {word}{'' if k == 1 else 's'}"


def print_summary(doc: Any, analysis_doc: Any, path: Path, analysis_path: Path | None) -> None:
    """The summary of a big fit (see the module docstring), on stdout."""
    from rich.console import Console

    con = Console()
    if not con.is_terminal:  # a log file: long lines rather than lines cut at 80 columns
        con = Console(width=200)
    out = lambda s: con.print(s, highlight=False, markup=False)  # noqa: E731
    fits = doc["fits"]
    curves = {(f["model"], f["task"], f["metric"]) for f in fits}
    forms = sorted({f["form"] for f in fits})
    chosen = Counter(f["form"] for f in fits if f["best"])
    none = len(curves) - sum(chosen.values())
    lv = int(round(100 * (doc.get("level") or 0)))
    out(f"scaling-law fits: {_plural(len(curves), 'curve')} × {_plural(len(forms), 'form')} "
        f"({lv}% intervals); chosen form: "
        + ", ".join(f"{k} {v:,}" for k, v in chosen.most_common())
        + (f", none {none:,} (no form eligible)" if none else ""))
    kinds: dict[str, list] = {}
    for f in fits:
        for w in f["warnings"]:
            kinds.setdefault(_kind(w), []).append((f, w))
    if kinds:
        out(f"warnings on {_plural(sum(len(v) for v in kinds.values()), 'fit')}, by kind "
            "(each fit's are in fits.json, fits[].warnings):")
        for _, v in sorted(kinds.items(), key=lambda kv: -len(kv[1]))[:8]:
            f, w = v[0]
            out(f"  {len(v):>6,} × {w} (e.g. {f['model']}/{f['task']}/{f['metric']}, {f['form']})")
        if len(kinds) > 8:
            out(f"  and {len(kinds) - 8} more kinds")
    diffs = [d for j in doc.get("joint", []) for d in j["differences"]]
    if diffs:
        excl = sum(1 for d in diffs if d.get("identified") and d["lo"] is not None
                   and (d["lo"] > 0 or d["hi"] < 0))
        out(f"joint fits: {_plural(len(diffs), 'exponent difference')} between models over "
            f"{_plural(len(doc['joint']), 'task/metric group')}; {excl:,} identified with an "
            "interval that excludes 0 (fits.json, joint)")
    fcs = (doc.get("forecasts") or {}).get("curves") or []
    if fcs:
        ok = sum(1 for c in fcs if c["status"] == "ok")
        why: dict[str, list[str]] = {}
        for c in fcs:
            if c["status"] != "ok":
                why.setdefault(_kind(c["reason"] or "no reason given"), []).append(c["reason"])
        top = max(why.values(), key=len) if why else None
        out(f"forecasts: {ok:,} of {_plural(len(fcs), 'curve')} forecast (fits.json, forecasts)"
            + (f"; {len(fcs) - ok:,} cannot be, most often ({len(top):,}): {top[0]}" if top else ""))
    if analysis_doc:
        out(f"style/substance analysis: {_plural(len(analysis_doc.get('groups', [])), 'group')} "
            f"({analysis_path})")
    out(f"wrote {path}" + (f" and {analysis_path}" if analysis_doc else ""))


__all__ = ["SUMMARY_OVER", "n_curves", "print_summary", "run_fits", "run_groups"]
