"""Stage *fit*: scaling-law fits with bootstrap intervals, and style-versus-substance analysis.

Modules: ``forms`` (the curve families and their registry ``FORMS``, the batched
Levenberg-Marquardt solver, R²), ``data`` (loading a CSV, an items table or a run directory),
``bootstrap`` (per-N points and their paired bootstrap replicates), ``fitting`` (fits,
intervals, N for a target, ``fits.json``), ``selection`` (identifiability and the rule that
chooses a form), ``joint`` (one fit across model sizes: exponent differences), ``analysis``
(format errors vs substance errors), ``forecast`` with ``members`` and ``backtest`` (the
answers), ``run`` (``fit_run_dir``: inputs, settings, reuse, fits.json and analysis.json, for
``sftscale fit`` and ``sftscale report``), ``progress`` (the fits of ``sftscale fit`` under a progress bar;
the summary of a big fit). The files' shapes: ``sftscale.schema``.
Not handled here: drawing (``sftscale.report``).
"""

from .analysis import style_substance
from .bootstrap import paired_bootstrap_means
from .data import load_inputs, load_items, load_long
from .fitting import FitResult, fit_table, fits_document, n_for_target
from .forms import FORMS, Form, default_forms, register_form
from .run import FitSettings, fit_run_dir

__all__ = ["FORMS", "FitResult", "FitSettings", "Form", "default_forms", "fit_run_dir", "fit_table",
           "fits_document", "load_inputs", "load_items", "load_long", "n_for_target", "paired_bootstrap_means",
           "register_form", "style_substance"]
