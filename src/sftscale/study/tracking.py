"""Experiment tracking: the study driver mirrors each finished cell to MLflow and/or W&B.

Turned on by the study YAML's ``tracking:`` section (``config.TrackingSettings``)::

    tracking:
      mlflow: {uri: http://127.0.0.1:5000}   # or `mlflow: true`: sqlite:///<run dir>/mlflow.db
      wandb: {project: my-sweeps, mode: auto}

``open_tracker(cfg, run_dir)`` (called by ``runner.run_study`` in the driver, once the run
directory's lock is held) returns a ``Tracker``: ``NullTracker`` when tracking is off (nothing
imported), else one per configured backend. The study is a parent run (MLflow: a run whose
children carry the ``mlflow.parentRunId`` tag; W&B has no nesting: a ``job_type="study"`` run and
the cells' ``job_type="cell"`` runs share one ``group``). ``cell_done(cell, outcome)`` logs a cell
after its outcome is recorded in the store, as a child run of its own:

- parameters: model, model_ref, task, task_name, n, seed, recipe_sha and the resolved recipe
  (``recipe.*``) from the cell's ``train_meta.json``, spec_hash, chat, limit;
- ``train/loss`` at every optimizer step: the loss curve that ``train_meta.json`` records (so it
  works the same for cells run in worker processes or on Ray, and for reused ``train/`` dirs);
- ``eval/<metric>``: the aggregates the store records, plus ``train/final_loss``, timings;
- artifacts: the cell's results JSON and its ``train_meta.json``.

Where things go: the tracker's ids are kept in ``DIR/tracking.json``; a resumed study logs into
the same MLflow parent run (W&B: a new study run in the same group). The default MLflow store is
SQLite (MLflow 3.7+ made ``sqlite:///mlflow.db`` its default and put the file store in
maintenance mode) in the run directory, artifacts in ``DIR/mlartifacts``. W&B ``mode: auto``
uses ``$WANDB_MODE`` if set, else online when the W&B host answers within 3 s (an online start
that fails falls back to offline), else offline files under ``DIR/wandb`` (``wandb sync``
uploads them later).

Failure policy: a missing package or an unreachable tracker at the start is an ``InputError``
naming the extra or the URI (before any cell runs); a failure while logging a cell is a warning
(logger ``sftscale.study.tracking``) and never fails the study: the store is the record.

Not handled: live loss curves while a cell trains (a cell appears once it is finished),
cells finished before tracking was turned on (not back-filled), deleting runs when a cell is
rerun (``--rerun-changed``, ``--retry-failed``: the new outcome is a new child run), W&B resume
of the study run, MLflow/W&B authentication (use their own env vars / ``wandb login``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Any, Mapping, Protocol

from ..config import MlflowSettings, StudyConfig, WandbSettings
from ..grid.cells import Cell
from ..io import InputError, atomic_write_json
from ..rundir import layout

log = logging.getLogger(__name__)

EXTRA = "pip install 'sftscale[tracking]'"
STATE = layout.TRACKING


class Tracker(Protocol):
    """What the driver calls: ``cell_done`` per finished (or failed) cell, inside ``with``."""

    def __enter__(self) -> "Tracker": ...

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...

    def cell_done(self, cell: Cell, outcome: Mapping[str, Any]) -> None: ...


class NullTracker:
    """Tracking off: does nothing."""

    def __enter__(self) -> "NullTracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def cell_done(self, cell: Cell, outcome: Mapping[str, Any]) -> None:
        return None


def open_tracker(cfg: StudyConfig, run_dir: Path) -> Tracker:
    """The study's tracker (NullTracker when ``tracking:`` is off); starts the parent run(s)."""
    t = cfg.tracking
    trackers: list[Tracker] = []
    try:
        if t.mlflow is not None:
            trackers.append(MlflowTracker(cfg, run_dir, t.mlflow))
        if t.wandb is not None:
            trackers.append(WandbTracker(cfg, run_dir, t.wandb))
    except BaseException as e:  # the other tracker's parent run is closed as failed
        for started in trackers:
            started.__exit__(type(e), e, None)
        raise
    if not trackers:
        return NullTracker()
    return trackers[0] if len(trackers) == 1 else _Both(trackers)


class _Both:
    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    def __enter__(self) -> "_Both":
        return self

    def __exit__(self, *exc: Any) -> None:
        for t in self.trackers:
            t.__exit__(*exc)

    def cell_done(self, cell: Cell, outcome: Mapping[str, Any]) -> None:
        for t in self.trackers:
            t.cell_done(cell, outcome)


# --- what is logged for a cell (shared by the backends) ------------------------------------

def cell_params(cell: Cell, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Flat parameters of a cell: its identity, and the recipe it was trained with."""
    p: dict[str, Any] = {"cell": cell.key, "model": cell.model, "model_ref": cell.model_ref,
                         "task": cell.task, "task_name": cell.task_name, "n": cell.n,
                         "seed": cell.seed, "spec_hash": cell.spec_hash, "chat": cell.chat,
                         "limit": cell.limit, "recipe_sha": meta.get("recipe_sha")}
    if cell.n_requested is not None and cell.n_requested != cell.n:
        p["n_requested"] = cell.n_requested
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), dict) else cell.recipe
    p.update(_flat("recipe", recipe))
    p.update(_flat("task_options", cell.task_options))
    return {k: v for k, v in p.items() if v is not None}


def cell_metrics(outcome: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, float]:
    """Final numbers of a cell: evaluation aggregates (``eval/``), final loss and timings."""
    out = {f"eval/{k}": float(v) for k, v in (outcome.get("metrics") or {}).items()
           if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if isinstance(meta.get("final_loss"), (int, float)):
        out["train/final_loss"] = float(meta["final_loss"])
    for k in ("train_s", "eval_s", "wall_s"):
        if isinstance(outcome.get(k), (int, float)):
            out[f"time/{k}"] = float(outcome[k])
    if isinstance(outcome.get("n_items"), int):
        out["eval/n_items"] = float(outcome["n_items"])
    return out


def loss_curve(meta: Mapping[str, Any]) -> list[float]:
    """The per-step training losses ``train_meta.json`` recorded (step i+1 at index i)."""
    curve = meta.get("loss_curve")
    if not isinstance(curve, list):
        return []
    return [float(x) for x in curve if isinstance(x, (int, float))]


def _cell_files(run_dir: Path, outcome: Mapping[str, Any]) -> tuple[dict, list[Path]]:
    """(train_meta dict or {}, existing files to attach: results JSON, train_meta.json)."""
    recorded = [Path(p) for _, p, _ in outcome.get("files") or ()]  # a done cell's
    files = [run_dir / p for pat in (layout.RESULTS_GLOB, layout.TRAIN_META) for p in recorded
             if p.match(pat) and (run_dir / p).is_file()]
    path = layout.cell_dir(run_dir, str(outcome.get("key"))) / layout.TRAIN / layout.TRAIN_META
    meta: dict[str, Any] = {}
    try:  # a failed cell: its train/ may exist
        loaded = json.loads(path.read_text(encoding="utf-8"))
        meta = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    return meta, files


def _flat(prefix: str, d: Any) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, Mapping):
            out.update(_flat(key, v))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else v
    return out


def metric_key(name: str) -> str:
    """A metric/param name both trackers accept (``acc,strict`` -> ``acc.strict``)."""
    return re.sub(r"[^\w./\- ]", "_", name.replace(",", "."))


def _safely(what: str, fn: Any, *args: Any) -> None:
    """Call ``fn``; a failure is a warning naming ``what`` (tracking never fails a study)."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - the store has the result; the tracker is a mirror
        log.warning("tracking: could not log %s: %s: %s", what, type(e).__name__, e)


def _state(run_dir: Path) -> dict[str, Any]:
    try:
        d = json.loads((run_dir / STATE).read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_state(run_dir: Path, key: str, value: dict[str, Any]) -> None:
    d = _state(run_dir)
    d[key] = value
    atomic_write_json(run_dir / STATE, d)


def _require(module: str, cfg: StudyConfig, section: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise cfg.error(f"tracking with {section} needs the {module} package ({e}); install "
                        f"the tracking extra: {EXTRA}", "tracking", section) from None


# --- MLflow --------------------------------------------------------------------------------

class MlflowTracker:
    """MLflow through ``MlflowClient`` (no fluent global run state): parent run + child runs."""

    def __init__(self, cfg: StudyConfig, run_dir: Path, s: MlflowSettings):
        _require("mlflow", cfg, "mlflow")
        from mlflow import MlflowClient

        self.run_dir = Path(run_dir).resolve()
        self.uri = s.uri or os.environ.get("MLFLOW_TRACKING_URI") or \
            f"sqlite:///{self.run_dir / 'mlflow.db'}"
        for var, val in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
                         ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
                         ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")):  # one per run
            os.environ.setdefault(var, val)  # a dead server: an error in seconds, not minutes
        self.done = self.failed = 0
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            self.exp_id = self._experiment(s.experiment or cfg.name)
            self.parent = self._parent(cfg)
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to reach the store, one message
            first = str(e).splitlines()[0] if str(e) else ""
            raise cfg.error(f"MLflow tracking at {self.uri}: {type(e).__name__}: {first}",
                            "tracking", "mlflow") from None

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        art = None
        if urllib.parse.urlparse(self.uri).scheme in ("sqlite", "", "file"):
            art = (self.run_dir / layout.MLARTIFACTS).as_uri()  # not ./mlruns of the cwd
        return self.client.create_experiment(name, artifact_location=art)

    def _parent(self, cfg: StudyConfig) -> str:
        from mlflow.entities import Param

        old = _state(self.run_dir).get("mlflow") or {}
        if old.get("uri") == self.uri and old.get("parent_run_id"):
            try:
                self.client.update_run(old["parent_run_id"], status="RUNNING")
                return old["parent_run_id"]
            except Exception:  # noqa: BLE001 - deleted or another store: start a new parent
                pass
        run = self.client.create_run(self.exp_id, run_name=cfg.name,
                                     tags={"sftscale.kind": "study",
                                           "sftscale.run_dir": str(self.run_dir)})
        rid = run.info.run_id
        params = {"study": cfg.name, "models": ",".join(m.label for m in cfg.models),
                  "tasks": ",".join(t.label or t.name for t in cfg.tasks),
                  "n": json.dumps(cfg.n), "seeds": json.dumps(cfg.seeds),
                  "config_fingerprint": cfg.fingerprint()}
        self.client.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
        if layout.study_yaml(self.run_dir).is_file():
            self.client.log_artifact(rid, str(layout.study_yaml(self.run_dir)))
        _save_state(self.run_dir, "mlflow", {"uri": self.uri, "experiment_id": self.exp_id,
                                             "parent_run_id": rid})
        return rid

    def __enter__(self) -> "MlflowTracker":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        status = "FINISHED" if exc_type is None else (
            "KILLED" if issubclass(exc_type, (KeyboardInterrupt, SystemExit)) else "FAILED")
        _safely("the study run", self._close, status)

    def _close(self, status: str) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.parent, metrics=[
            Metric("cells_done", self.done, now, 0), Metric("cells_failed", self.failed, now, 0)])
        self.client.set_terminated(self.parent, status=status)

    def cell_done(self, cell: Cell, outcome: Mapping[str, Any]) -> None:
        _safely(f"cell {cell.key} to MLflow", self._log_cell, cell, outcome)

    def _log_cell(self, cell: Cell, outcome: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        ok = bool(outcome.get("ok"))
        self.done, self.failed = self.done + ok, self.failed + (not ok)
        meta, files = _cell_files(self.run_dir, outcome)
        start = outcome.get("started_at")
        run = self.client.create_run(
            self.exp_id, run_name=cell.key,
            start_time=int(start * 1000) if isinstance(start, (int, float)) else None,
            tags={"mlflow.parentRunId": self.parent, "sftscale.kind": "cell",
                  "sftscale.cell": cell.key, "sftscale.state": "done" if ok else "failed"})
        rid, now = run.info.run_id, int(time.time() * 1000)
        metrics = [Metric("train/loss", v, now, i + 1) for i, v in enumerate(loss_curve(meta))
                   if math.isfinite(v)]
        metrics += [Metric(metric_key(k), v, now, 0)
                    for k, v in cell_metrics(outcome, meta).items()]
        params = [Param(metric_key(k), str(v)[:6000]) for k, v in cell_params(cell, meta).items()]
        err = outcome.get("error")
        tags = [RunTag("sftscale.error", str(err)[:5000])] if err else []
        self.client.log_batch(rid, metrics=metrics, params=params, tags=tags)
        for f in files:
            self.client.log_artifact(rid, str(f))
        self.client.set_terminated(rid, status="FINISHED" if ok else "FAILED")


# --- Weights & Biases ------------------------------------------------------------------------

class WandbTracker:
    """W&B: a ``study`` run open for the whole study, one ``cell`` run per cell, one group."""

    def __init__(self, cfg: StudyConfig, run_dir: Path, s: WandbSettings):
        self.wandb = _require("wandb", cfg, "wandb")
        self.run_dir = Path(run_dir).resolve()
        self.dir = Path(s.dir).resolve() if s.dir else self.run_dir
        self.project, self.entity = s.project or cfg.name, s.entity
        old = _state(self.run_dir).get("wandb") or {}
        self.group = old.get("group") or f"{cfg.name}-{secrets.token_hex(3)}"
        self.mode, why = wandb_mode(s.mode, self.dir / layout.WANDB)
        self.done = self.failed = 0
        config = {"study": cfg.name, "config_fingerprint": cfg.fingerprint(),
                  "config": cfg.model_dump(mode="json")}
        try:
            self.parent = self._init(cfg.name, "study", config)
        except Exception as e:  # noqa: BLE001 - one clear message, or offline when auto
            if s.mode != "auto" or self.mode == "offline":
                raise cfg.error(f"W&B ({self.mode}): {type(e).__name__}: {e}",
                                "tracking", "wandb") from None
            log.warning("tracking: W&B online start failed (%s); writing offline runs under %s "
                        "(upload them later with `wandb sync %s`)", e, self.dir / layout.WANDB,
                        self.dir / layout.WANDB)
            self.mode, why = "offline", "online start failed"
            self.parent = self._init(cfg.name, "study", config)
        _save_state(self.run_dir, "wandb", {"group": self.group, "project": self.project,
                                            "mode": self.mode, "mode_reason": why,
                                            "dir": str(self.dir / layout.WANDB),
                                            "study_run_id": self.parent.id})

    def _init(self, name: str, job_type: str, config: dict[str, Any]) -> Any:
        wb = self.wandb
        self.dir.mkdir(parents=True, exist_ok=True)
        return wb.init(project=self.project, entity=self.entity, group=self.group,
                       job_type=job_type, name=name, config=config, dir=str(self.dir),
                       mode=self.mode, reinit="create_new",
                       settings=wb.Settings(silent=True, console="off", x_disable_stats=True,
                                            init_timeout=60, save_code=False))

    def __enter__(self) -> "WandbTracker":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        _safely("the W&B study run", self._close, 0 if exc_type is None else 1)

    def _close(self, code: int) -> None:
        self.parent.summary.update({"cells_done": self.done, "cells_failed": self.failed})
        self.parent.finish(exit_code=code)

    def cell_done(self, cell: Cell, outcome: Mapping[str, Any]) -> None:
        _safely(f"cell {cell.key} to W&B", self._log_cell, cell, outcome)

    def _log_cell(self, cell: Cell, outcome: Mapping[str, Any]) -> None:
        ok = bool(outcome.get("ok"))
        self.done, self.failed = self.done + ok, self.failed + (not ok)
        meta, files = _cell_files(self.run_dir, outcome)
        run = self._init(cell.key, "cell", cell_params(cell, meta))
        try:
            for i, v in enumerate(loss_curve(meta)):
                run.log({"train/loss": v}, step=i + 1)
            run.summary.update({metric_key(k): v for k, v in cell_metrics(outcome, meta).items()})
            run.summary["state"] = "done" if ok else "failed"
            if outcome.get("error"):
                run.summary["error"] = str(outcome["error"])
            if files:
                art = self.wandb.Artifact(re.sub(r"[^\w.-]", "-", f"results-{cell.key}"),
                                          type="results")
                for f in files:
                    art.add_file(str(f))
                run.log_artifact(art)
        finally:
            run.finish(exit_code=0 if ok else 1)


def wandb_mode(mode: str, where: Path, timeout: float = 3.0) -> tuple[str, str]:
    """(``online``/``offline``/$WANDB_MODE, why): ``auto`` probes the W&B host with a TCP
    connect bounded by ``timeout`` seconds."""
    if mode != "auto":
        return mode, "configured"
    env = os.environ.get("WANDB_MODE")
    if env:
        return env, "$WANDB_MODE"
    url = urllib.parse.urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "api.wandb.ai", port), timeout=timeout):
            return "online", f"{url.hostname} answered"
    except OSError as e:
        log.warning("tracking: W&B host %s unreachable (%s); writing offline runs under %s "
                    "(upload them later with `wandb sync %s`)", url.hostname, e, where, where)
        return "offline", f"{url.hostname} unreachable"


__all__ = ["EXTRA", "MlflowTracker", "NullTracker", "Tracker", "WandbTracker", "cell_metrics",
           "cell_params", "loss_curve", "metric_key", "open_tracker", "wandb_mode"]
