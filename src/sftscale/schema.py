"""The shapes of the files sftscale writes for people and other tools, written down once.

Like lm-evaluation-harness's ``result_schema.py``: ``TypedDict``s of

- a per-sample record of a samples file (``ScoreRecord``: what a task's ``score`` returns,
  with ``format_ok`` and ``correct``; ``SampleRecord``: the line of ``samples_<task>_<ts>.jsonl``);
- ``fits.json`` (``FitsDoc``: the forms' fits, the joint fits across model sizes, the
  forecasts, and how and from what it was computed: ``settings`` and ``inputs``);
- ``analysis.json`` (``AnalysisDoc``: format versus substance errors per (model, task)).

The writers (``fit.fitting.fits_document``, ``fit.run.fit_run_dir``, ``fit.analysis.style_substance``,
``evaluation.results.sample_records``) return these types and the readers (``fit.run.read_fits``,
``fit.run.read_analysis``, the report) take them. Keys are only ever added, never renamed; a
key marked ``NotRequired`` may be absent (older files, or a part that was not computed). Numbers
that were NaN or infinite are written as null (``fitting.json_safe``), hence ``float | None``.

This module imports nothing of sftscale. Not handled: validating a file against these types
at run time (``fit.run.read_fits`` checks only what reuse needs).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

Num = float | None
Interval = list[Num]  # [lo, hi]


# --- per-sample records -----------------------------------------------------------------
class ScoreRecord(TypedDict):
    """What ``Task.score`` returns for one response: at least these two flags (tasks add
    their own fields, e.g. ``extracted``, ``em``, ``followed_strict``)."""

    format_ok: bool
    correct: bool


class SampleRecord(ScoreRecord):
    """One line of a samples file: the item, the generation and the task's scores."""

    id: str
    prompt: str
    response: str
    n_tokens: int
    sample: NotRequired[int]


# --- fits.json --------------------------------------------------------------------------
class Band(TypedDict):
    mid: Num
    lo: Num
    hi: Num


class Points(TypedDict):
    n: list[float]
    y: list[float]
    y_hat: list[float]
    residual_fit_space: list[Num]


class Loo(TypedDict):
    n: list[float]
    error: list[Num]
    rmse: Num


class Bootstrap(TypedDict):
    method: str
    n_boot: int
    n_ok: int


class Selection(TypedDict, total=False):
    eligible: bool
    reasons: list[str]
    identified: bool
    aicc: Num
    loo_rmse_pos: Num
    criterion: str | None
    chosen: bool


class PaperTerms(TypedDict):
    one_over_b: Band
    b: Band
    note: str


class FormPrediction(TypedDict):
    n: float
    mid: Num
    lo: Num
    hi: Num
    note: NotRequired[str]


class FormTarget(TypedDict, total=False):
    target: float
    form: str
    n_max_measured: Num
    reachable: bool
    n: Num
    x_largest_n: Num
    extrapolation: bool | None
    lo: Num
    hi: Num
    frac_reachable: Num
    note: str
    hi_note: str
    interval_note: str


class FitEntry(TypedDict):
    """One form fitted to one (model, task, metric) curve (``FitResult.to_dict``)."""

    model: str
    task: str
    metric: str
    form: str
    space: str
    best: bool
    params: dict[str, Num]
    dof: int
    loss: Num
    r2: Num
    r2_metric: Num
    aic: Num
    aicc: Num
    loo: Loo
    level: float
    warnings: list[str]
    r2_space: str
    param_ci: dict[str, Interval]
    bootstrap: Bootstrap
    points: Points
    identified: bool
    unidentified: list[str]
    selection: Selection
    n_max_measured: Num
    paper_terms: NotRequired[PaperTerms]  # the paper's form (Form.paper), when fitted
    predictions: NotRequired[list[FormPrediction]]  # with --at (the report: at the grid's N)
    targets: NotRequired[list[FormTarget]]  # with --target


class JointExponent(TypedDict):
    name: str
    mid: Num
    lo: Num
    hi: Num


class JointModel(TypedDict):
    model: str
    params: dict[str, Num]
    param_ci: dict[str, Interval]
    exponent: JointExponent
    dof: int
    n: list[float]
    identified: bool
    reasons: list[str]
    warnings: list[str]


class JointDifference(TypedDict):
    a: str
    b: str
    diff: Num
    lo: Num
    hi: Num
    p_two_sided: Num
    n_rep: int
    identified: bool
    paired: bool


class JointEntry(TypedDict):
    """The exponents of one (task, metric) across model sizes (``fit.joint``)."""

    task: str
    metric: str
    form: str
    exponent: str
    level: float
    method: str
    paired: bool
    models: list[JointModel]
    differences: list[JointDifference]


class ForecastPrediction(TypedDict, total=False):
    n: float
    ratio: float
    bucket: str
    method: str
    mid: float
    curve: Interval
    measurement: Interval
    gain_over_largest: Num
    gain_curve: Interval
    calibration: str


class ForecastTarget(TypedDict, total=False):
    target: float
    n: Num
    lo: Num
    hi: Num
    how: str
    note: str
    hi_note: str


class Backtest(TypedDict):
    fit_n_max: float
    points_fitted: int
    n: float
    ratio: float
    bucket: str
    method: str
    predicted: float
    measurement: Interval
    measured: float
    error: float
    inside: bool
    naive: dict[str, Num]


class PathPoint(TypedDict):
    n: float
    mid: float
    lo: Num
    hi: Num


class ForecastCurve(TypedDict):
    """The forecast of one curve (``fit.forecast.Forecast.to_dict``)."""

    model: str
    task: str
    metric: str
    status: Literal["ok", "cannot forecast"]
    reason: str | None
    level: float
    n_max_measured: Num
    points: dict[str, list[float]]
    noise: dict[str, Any]
    lack_of_fit: dict[str, dict[str, Any]]
    members_used: list[str]
    predictions: list[ForecastPrediction]
    targets: list[ForecastTarget]
    backtests: list[Backtest]
    backtest_summary: dict[str, Any]
    path: list[PathPoint]
    warnings: list[str]


class BucketCalibration(TypedDict):
    backtests: int
    method: str
    weights: dict[str, Num]
    mse: dict[str, Num]
    mae: dict[str, Num]
    q: float
    q_source: Literal["study", "reference"]
    in_sample_coverage: Num


class ForecastsDoc(TypedDict):
    """fits.json's ``forecasts``: the answers (``fit.forecast.forecast_table``)."""

    level: float
    method: str
    intervals: str
    calibration: dict[str, dict[str, BucketCalibration]]  # metric -> horizon bucket -> calibration
    curves: list[ForecastCurve]


class FitSettingsDoc(TypedDict):
    """What fits.json was computed with (``fit.run.FitSettings``); a report reuses any."""

    forms: list[str]  # resolved: the default forms are listed by name
    metric: str | None  # one metric; None: every metric (or ``metric_of``)
    metric_of: dict[str, str] | None  # task -> the one metric fitted (the report's primary metrics)
    targets: list[float]
    at: list[float] | Literal["grid"]  # where the forms predict; "grid": the measured N
    n_boot: int
    seed: int
    level: float
    forecast_level: float
    analysis: bool


class InputsDoc(TypedDict):
    """The inputs fits.json was computed from: a report refits when their hash changed."""

    sha256: str  # of the long table and the per-item table as read (``fit.run.input_hash``)
    rows: int
    item_rows: int
    source: str
    items: str | None  # a separate per-item file (``--items``), if any


class FitsDoc(TypedDict):
    """``fits.json``."""

    version: int
    source: str
    level: float | None
    notes: list[str]
    fits: list[FitEntry]
    joint: NotRequired[list[JointEntry]]
    forecasts: NotRequired[ForecastsDoc]
    input_warnings: NotRequired[list[str]]
    settings: NotRequired[FitSettingsDoc]  # absent in files of version 1
    inputs: NotRequired[InputsDoc]  # absent in files of version 1
    written_by: NotRequired[str]  # "sftscale fit" or "sftscale report"
    sftscale_version: NotRequired[str]  # a report refits a fits.json of another version


# --- analysis.json ----------------------------------------------------------------------
class BandSeries(TypedDict):
    mid: list[Num]
    lo: list[Num]
    hi: list[Num]


class Saturation(TypedDict):
    n: Num
    plateau: Num
    frac: float
    lo: Num
    hi: Num
    definition: str


class Plateau(TypedDict, total=False):
    n: Num
    still_rising: bool | None
    steps: list[dict[str, Num]]
    definition: str


class R2(TypedDict, total=False):
    r2: Num
    lo: Num
    hi: Num
    n_points: int
    from_n: Num


class AnalysisGroup(TypedDict, total=False):
    """Format versus substance errors of one (model, task) (``fit.analysis``)."""

    model: str
    task: str
    n: list[float]
    n_items: int
    format_error: BandSeries
    substance_error: BandSeries
    total_error: BandSeries
    format_rate: BandSeries
    accuracy: BandSeries
    style_saturation_n: Saturation
    accuracy_plateau_n: Plateau
    r2_total_vs_substance: R2
    r2_total_vs_substance_after_style: R2
    note: str
    loose_minus_strict: dict[str, dict[str, Any]]
    categories: dict[str, dict[str, Any]]


class AnalysisDoc(TypedDict):
    """``analysis.json``."""

    version: int
    level: float
    n_boot: int
    definitions: dict[str, str]
    groups: list[AnalysisGroup]
    inputs: NotRequired[InputsDoc]  # the same inputs record as fits.json's (absent in version 1)


__all__ = ["AnalysisDoc", "AnalysisGroup", "Backtest", "Band", "BandSeries", "BucketCalibration", "FitEntry",
           "FitSettingsDoc", "FitsDoc", "ForecastCurve", "ForecastPrediction", "ForecastTarget", "ForecastsDoc",
           "FormPrediction", "FormTarget", "InputsDoc", "JointDifference", "JointEntry", "JointModel", "Loo",
           "PaperTerms", "PathPoint", "Points", "R2", "SampleRecord", "ScoreRecord", "Selection"]
