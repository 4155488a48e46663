"""Stage *fit*: scaling-law fits with bootstrap intervals, and style-versus-substance analysis.

Modules: ``forms`` (the curve families and the batched Levenberg-Marquardt solver), ``data``
(loading a CSV, an items table or a run directory), ``fitting`` (fits, bootstrap, N for a
target, ``fits.json``), ``analysis`` (format errors vs substance errors).
Not handled here: drawing (``sftscale.report``).
"""

from .analysis import style_substance
from .data import load_inputs, load_items, load_long
from .fitting import FitResult, fit_table, fits_document, n_for_target, paired_bootstrap_means

__all__ = ["FitResult", "fit_table", "fits_document", "load_inputs", "load_items", "load_long",
           "n_for_target", "paired_bootstrap_means", "style_substance"]
