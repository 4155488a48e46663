"""THE place where third-party warnings and log lines that are not the user's to act on are
silenced: ``quiet_third_party_warnings()``.

Called by the CLI's ``main``, by ``study.runner.run_study`` (the driver) and by
``CellRunner.run`` (each cell, so worker processes and Ray tasks are quiet too); idempotent
and cheap (it imports nothing heavy: filters match by message and module, not by class).

Each entry of ``WARNINGS`` and ``LOGGERS`` says where it comes from and why the user cannot
act on it. Everything else is kept: warnings of sftscale itself, and any third-party warning
not listed here (a new one shows, so it can be judged and, if it is noise, listed).

Not handled: text a library prints straight to stdout/stderr (neither a warning nor a log
record); tqdm bars (``HF_HUB_DISABLE_PROGRESS_BARS`` is the CLI's business).
"""

from __future__ import annotations

import logging
import warnings

#: (action category, message regex, module regex, where it comes from / why it is not the user's)
WARNINGS: list[tuple[type[Warning], str, str, str]] = [
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated", r"",
     "raised in transformers/modeling_utils.py when peft (0.18-0.21) calls transformers 5's "
     "deprecated `is_gradient_checkpointing` while it wraps a model in a LoRA adapter "
     "(train.cell.wrap_lora): every LoRA cell; fixed by peft, not by the user"),
    (DeprecationWarning, r"The ``noload`` loader strategy is deprecated", r"",
     "SQLAlchemy 2.1 about MLflow's own ORM mappings (mlflow/store/tracking/sqlalchemy_store.py), "
     "raised when the MLflow tracker opens a SQLite store"),
    (RuntimeWarning, r"", r"sftscale\.(fit|report)(\.|$)",
     "numpy's floating-point warnings (overflow in exp, invalid value or divide by zero, mean "
     "of an empty slice) inside the fit and report code, on the edge cases of a curve (flat, "
     "at 0 or 1, few points): the code tests every result for NaN/inf and says so in the fit's "
     "own warnings (fits.json, fits[].warnings), which name the curve; numpy's line names "
     "only a line of sftscale's source"),
    (UserWarning, r"(Data has no positive values|Attempting to set identical|No artists with "
     r"labels found|posx and posy should be finite|Tight layout not applied)",
     r"sftscale\.report(\.|$)",
     "matplotlib about a degenerate figure of the report (a flat or empty curve on a log "
     "axis); the figure is still drawn and the numbers are in the report's tables"),
]

#: logger -> level: INFO chatter of libraries on stderr
LOGGERS: dict[str, int] = {
    # MLflow's "Creating initial MLflow database tables..." / "Updating database tables" when
    # the tracker creates the run directory's SQLite store (MLflow installs its own handler)
    "mlflow.store.db.utils": logging.WARNING,
    "alembic": logging.WARNING,  # MLflow's schema migrations, same moment
}


def quiet_third_party_warnings() -> None:
    """Install the filters of ``WARNINGS`` and the levels of ``LOGGERS`` (a filter already
    installed is not added twice)."""
    for category, message, module, _why in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, level in LOGGERS.items():
        logging.getLogger(name).setLevel(level)


__all__ = ["LOGGERS", "WARNINGS", "quiet_third_party_warnings"]
