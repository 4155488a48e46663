"""Every path name in a run directory, in one place.

::

    DIR/study.yaml              the config as given (snapshot)             STUDY_YAML
    DIR/study.sqlite            the store (store.py)                       STORE
    DIR/.sftscale.lock          one writer at a time (lock.py)             LOCK
    DIR/plan.json               the plan saved at the run's start          PLAN
    DIR/cache/gen/              generations shared by the cells            gen_cache()
    DIR/cells/<key>/            one cell                                   cell_dir()
        cell.json               its spec (and spec hash)                   CELL_JSON
        error.txt               traceback of its last failure              ERROR
        <stage>/                a stage's finished files                   stage_dir()
        <stage>.tmp/            the stage while it runs                    stage_tmp()
        <stage>/.hashes.json    its hashed files' sha256 when it finished  SEAL
        search/<cand>/          recipe-search candidates (study/search.py) search_dir()
    DIR/export.csv, DIR/items.jsonl   the tables (export.py)               EXPORT_CSV, ITEMS_JSONL
    DIR/fits.json, DIR/analysis.json  fits and the style/substance analysis FITS, ANALYSIS
    DIR/judge.json              error labels' shares and agreement (judge/) JUDGE_JSON, judge_json_path()
    DIR/judge/labels.jsonl, cache.jsonl  one line per judged response; answers  judge_dir()
    DIR/report/report.html      the report (and its figures)               REPORT, REPORT_HTML
    DIR/.report.tmp-<pid>/      a report's outputs until it is complete    report_stage()
    DIR/tracking.json, DIR/mlartifacts/, DIR/wandb/   experiment tracking (study/tracking.py)

The stage directories' own names are the stages' (``STAGES`` in study/stages.py): ``train/``
(``train_meta.json``, ``ckpt/``, ``checkpoint.sha256``) and ``eval/`` (``results_*.json``,
``samples_*.jsonl``) are the first two. ``TRAIN_META`` is the name ``train.cell.META`` writes.

A leaf: imports nothing of sftscale, so every layer can name run-directory paths.
"""

from __future__ import annotations

import os
from pathlib import Path

STUDY_YAML = "study.yaml"
STORE = "study.sqlite"
LOCK = ".sftscale.lock"
PLAN = "plan.json"
CACHE = "cache"
GEN_CACHE = "gen"
CELLS = "cells"
CELL_JSON = "cell.json"
ERROR = "error.txt"
SEARCH = "search"
TMP_SUFFIX = ".tmp"
SEAL = ".hashes.json"  # in every finished stage directory: the hashes of its hashed files

EXPORT_CSV = "export.csv"
ITEMS_JSONL = "items.jsonl"
FITS = "fits.json"
ANALYSIS = "analysis.json"
REPORT = "report"
REPORT_HTML = "report.html"
REPORT_META = "report_meta.json"
REPORT_STAGE_PREFIX = ".report.tmp-"  # + the report's pid: its outputs until they are moved in
KNOWLEDGE = "knowledge"  # a knowledge-injection run's directory, inside or beside a run dir

JUDGE = "judge"  # sftscale judge: DIR/judge/ (labels, cache) and DIR/judge.json
JUDGE_JSON = "judge.json"
JUDGE_LABELS = "labels.jsonl"
JUDGE_CACHE = "cache.jsonl"

TRACKING = "tracking.json"
MLARTIFACTS = "mlartifacts"
WANDB = "wandb"

# the first two stages' files (study/stages.py)
TRAIN = "train"
EVAL = "eval"
TRAIN_META = "train_meta.json"
CKPT = "ckpt"  # the default checkpoint directory (train_meta's ``checkpoint`` may name another)
CKPT_SHA = "checkpoint.sha256"  # the checkpoint's hash in a train/ sealed before SEAL existed
RESULTS_GLOB = "results_*.json"
SAMPLES_GLOB = "samples_*.jsonl"

# the xeval stage (study/xeval.py): cells/<key>/xeval/xeval.json + <eval label>/{results,samples}
XEVAL = "xeval"
XEVAL_JSON = "xeval.json"
XEVAL_METRIC = "xeval/{label}/{metric}"  # a store metric of an eval task (rundir/export.py)
PAIR_SEP = "→"  # export's task of a (trained on, evaluated on) pair: "toy-math→toy-math-ood"

# a recipe-search candidate's files (study/search.py), under search/<cand>/
CAND_VAL = "val"
CAND_VAL_JSON = "val.json"
VAL_LOSS = "val_loss.json"

# the token-shift stage (cells/<key>/shift/) and its run-level outputs (DIR/shift.json, DIR/shift/)
SHIFT = "shift"
SHIFT_TOKENS = "tokens.jsonl.gz"
SHIFT_META = "shift_meta.json"
SHIFT_JSON = "shift.json"

PathLike = str | os.PathLike


def store_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / STORE


def lock_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / LOCK


def study_yaml(run_dir: PathLike) -> Path:
    return Path(run_dir) / STUDY_YAML


def plan_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / PLAN


def gen_cache(run_dir: PathLike) -> Path:
    return Path(run_dir) / CACHE / GEN_CACHE


def cells_dir(run_dir: PathLike) -> Path:
    return Path(run_dir) / CELLS


def cell_rel(key: str) -> str:
    """A cell's directory relative to the run directory (as the store records it)."""
    return f"{CELLS}/{key}"


def cell_dir(run_dir: PathLike, key: str) -> Path:
    return Path(run_dir) / CELLS / key


def stage_dir(cell_dir: PathLike, stage: str) -> Path:
    """A stage's finished directory in a cell (``train/``, ``eval/``, ...)."""
    return Path(cell_dir) / stage


def stage_tmp(cell_dir: PathLike, stage: str) -> Path:
    """Where a stage works until it is complete, then renamed to ``stage_dir``."""
    return Path(cell_dir) / f"{stage}{TMP_SUFFIX}"


def search_dir(cell_dir: PathLike) -> Path:
    return Path(cell_dir) / SEARCH


def export_name(fmt: str) -> str:
    """The metrics table's default file name for a format (``export.csv``)."""
    return f"export.{fmt}"


def items_name(fmt: str) -> str:
    """The items table's default file name for a format (``items.jsonl``)."""
    return f"items.{fmt}"


def side_path(main: PathLike, part: str, suffix: str | None = None) -> Path:
    """A side output named after the main output it belongs to, beside it:
    ``side_path("X/metrics.csv", "items")`` is ``X/metrics.items.csv``,
    ``side_path("X/fits.json", "analysis")`` is ``X/fits.analysis.json`` (``suffix``: another
    extension than the main file's). For outputs the user named (``--out``), so that two
    outputs written into one folder under different names never share a side file."""
    p = Path(main)
    return p.with_name(f"{p.stem}.{part}{p.suffix if suffix is None else suffix}")


def fits_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / FITS


def analysis_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / ANALYSIS


def shift_path(run_dir: PathLike) -> Path:
    """``DIR/shift.json``: token shift per model, task, N and role (``sftscale shift``)."""
    return Path(run_dir) / SHIFT_JSON


def shift_tokens_path(run_dir: PathLike) -> Path:
    """``DIR/shift/tokens.jsonl.gz``: one line per (cell, item) with its per-token shift."""
    return Path(run_dir) / SHIFT / SHIFT_TOKENS


def judge_dir(run_dir: PathLike) -> Path:
    return Path(run_dir) / JUDGE


def judge_json_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / JUDGE_JSON


def report_dir(run_dir: PathLike) -> Path:
    return Path(run_dir) / REPORT


def report_stage(run_dir: PathLike, pid: int) -> Path:
    """Where report ``pid`` writes fits.json, analysis.json and report/ until it is complete."""
    return Path(run_dir) / f"{REPORT_STAGE_PREFIX}{pid}"


def rel(run_dir: PathLike, path: PathLike) -> str:
    """``path`` relative to the run directory, as the store records paths."""
    return str(Path(path).resolve().relative_to(Path(run_dir).resolve()))


__all__ = [n for n in dir() if n.isupper() and not n.startswith("_")] + [
    "analysis_path", "cell_dir", "cell_rel", "cells_dir", "export_name", "fits_path",
    "gen_cache", "items_name", "judge_dir", "judge_json_path", "lock_path", "plan_path", "rel", "report_dir",
    "report_stage", "search_dir",
    "shift_path", "shift_tokens_path", "side_path", "stage_dir", "stage_tmp", "store_path", "study_yaml"]
