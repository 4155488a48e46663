"""The study configuration: one YAML file describes a whole study.

A study is models × tasks × a grid of N (finetuning examples) × seeds. The YAML is validated
by pydantic v2 with ``extra="forbid"`` everywhere, and every error names the file, the LINE
and the field (``models[1].ref``): the YAML is composed into a node tree whose marks give the
line of each key, and a pydantic error location is walked through that tree.

The YAML-to-InputError path that every config file shares (``parse_yaml``, ``validation_error``,
``validate_yaml``, ``strict_scalars``) lives in ``yamlconfig.py``; this module re-exports it.

Example (see ``studies/toy.yaml`` for a full one)::

    name: toy
    models:
      - {name: toy-S, ref: toy-S}
    tasks:
      - {name: toy-math, limit: 200}
    n: [0, 16, 64]
    seeds: [0, 1]

Relative paths in the config (``output``, data paths inside task ``options``, ``train_data``)
are taken relative to the current working directory, like any command-line path.

Not handled here: whether a model or task actually resolves, and whether recipe override
keys are valid ``Recipe`` fields (that needs torch/transformers; ``sftscale plan`` and
``sftscale run`` check it before anything runs, and point at the line with ``StudyConfig.error``).
YAML anchors/aliases are accepted; a key that appears twice in one mapping is an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from .io import InputError, sha256_json
from .yamlconfig import (
    _loc_str,
    _LocError,
    parse_yaml,
    read_config_text,
    strict_scalars,
    validate_yaml,
    validation_error,
)

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _check_label(v: str) -> str:
    if not _LABEL.match(v):
        raise ValueError(f"name {v!r}: use letters, digits and . _ + -")
    return v


#: a name used in file names, cell keys and tables
Label = Annotated[str, AfterValidator(_check_label)]
#: k-shot baselines (``fewshot:``): distinct k >= 1, sorted
Shots = Annotated[list[Annotated[int, Field(ge=1)]], AfterValidator(lambda v: _check_grid(v, "k"))]


def _label_from_ref(ref: str) -> str:
    base = ref.rstrip("/").split("/")[-1] or ref
    if base.endswith(".gguf"):
        base = base[:-5]
    return re.sub(r"[^A-Za-z0-9._+-]", "-", base).lstrip("._+-") or "model"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)

    @model_validator(mode="before")
    @classmethod
    def _strict_scalars(cls, data: Any) -> Any:
        return strict_scalars(cls, data)


class ModelArch(_Strict):
    """A transformer's shapes (``plan --no-check``: 12·layers·hidden² + 2·vocab·hidden params)."""

    layers: int = Field(ge=1)
    hidden: int = Field(ge=1)
    heads: int | None = Field(None, ge=1)
    vocab: int = Field(32000, ge=1)


class ModelEntry(_Strict):
    """One base model of the study."""

    ref: str = Field(description="toy name, HF id, local dir, .gguf file or GGUF alias")
    name: str | None = Field(None, description="label used in cell keys and tables (default: from ref)")
    recipe: str | dict[str, Any] | None = Field(
        None, description="name of an entry of `recipes`, or inline Recipe overrides")
    gpus: float = Field(0.0, ge=0, description="GPUs per cell (Ray resource request); with "
                        "recipe sharding ddp/fsdp, one training process per GPU")
    processes: int | None = Field(None, ge=1, description="training processes per cell with "
                                  "recipe sharding ddp/fsdp (default: gpus); on CPU: gloo")
    cpus: float | None = Field(None, gt=0, description="CPUs per cell (default: executor.cpus_per_cell)")
    chat: bool | None = Field(None, description="use the chat template (default: evaluation.chat)")
    params: float | None = Field(None, gt=0, description="parameter count, for `plan --no-check` "
                                 "(planning without the weights)")
    arch: ModelArch | None = Field(None, description="shapes, for `plan --no-check` when params "
                                   "is not given")

    @model_validator(mode="after")
    def _default_name(self) -> "ModelEntry":
        if self.name is None:
            self.name = _label_from_ref(self.ref)
        if not _LABEL.match(self.name) or "__" in self.name:
            raise _LocError(f"name {self.name!r}: use letters, digits and . _ + - (no '__')", "name")
        return self

    @property
    def label(self) -> str:
        return self.name or _label_from_ref(self.ref)


class EvalTaskEntry(_Strict):
    """A task the cells are also evaluated on (``eval_tasks``); a string is ``{name: STRING}``."""

    name: str = Field(description="registered task name (see `sftscale tasks`)")
    label: Label | None = Field(None, description="label in tables (default: the name)")
    options: dict[str, Any] = Field(default_factory=dict, description="task constructor options")
    limit: int | None = Field(None, ge=1, description="first LIMIT test items (default: the task's)")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


class TaskEntry(_Strict):
    """One task of the study."""

    name: str = Field(description="registered task name (see `sftscale tasks`)")
    label: str = Field("", description="label in cell keys and tables (default: name)")
    options: dict[str, Any] = Field(default_factory=dict, description="task constructor options")
    limit: int | None = Field(None, ge=1, description="evaluate on the first LIMIT test items")
    train_data: str | None = Field(
        None, description="training data source (HF dataset id or local file), passed to the "
                          "task as option `train_data`")
    max_new_tokens: int | None = Field(None, ge=1, description="override the task's GenSpec")
    n: list[int] | None = Field(None, description="this task's own N grid (default: the study's)")
    recipe: dict[str, Any] = Field(default_factory=dict, description="Recipe overrides for this task")
    fewshot: Shots | None = Field(None, description="this task's k-shot baselines (default: the study's)")
    eval_tasks: list[EvalTaskEntry] = Field(default_factory=list, description="other tasks to evaluate on")

    @field_validator("n")
    @classmethod
    def _grid(cls, v: list[int] | None) -> list[int] | None:
        return None if v is None else _check_grid(v)

    @model_validator(mode="after")
    def _default_label(self) -> "TaskEntry":
        if "label" not in self.model_fields_set:
            self.label = re.sub(r"[^A-Za-z0-9._+-]", "-", self.name)
        if not _LABEL.match(self.label) or "__" in self.label:
            raise _LocError(f"label {self.label!r}: use letters, digits and . _ + - (no '__')",
                            "label" if "label" in self.model_fields_set else "name")
        if self.train_data is not None and "train_data" in self.options:
            raise _LocError("give train_data either as a field or in options, not both",
                            "train_data")
        return self

    def task_options(self) -> dict[str, Any]:
        """The keyword options the task constructor gets."""
        opts = dict(self.options)
        if self.train_data is not None:
            opts["train_data"] = self.train_data
        return opts


class EvalSettings(_Strict):
    limit: int | None = Field(None, ge=1, description="test items per task (task.limit wins)")
    batch_size: int | None = Field(None, ge=1, description="generation batch size (default: auto)")
    max_new_tokens: int | None = Field(None, ge=1, description="override every task's GenSpec")
    chat: bool = Field(False, description="apply the chat template for training and evaluation")
    allow_template_mismatch: bool = False
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0: greedy)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    n_samples: int = Field(1, ge=1, description="samples per prompt (pass@k for code tasks)")
    seed: int = Field(0, description="sampling seed (each prompt and sample index seeded apart)")
    num_fewshot: int = Field(0, ge=0, description="in-context examples (lm-eval's context; never "
                                                  "from the cell's finetuning subset)")


class ExecutorSettings(_Strict):
    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster address (default: $RAY_ADDRESS, "
                                                   "else a local cluster)")
    cpus_per_cell: float = Field(1.0, gt=0)
    max_parallel: int | None = Field(None, ge=1, description="cells in flight at once (Ray)")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray cluster")
    workers: int = Field(1, ge=1, description="local executor: cells run at once, each in its own "
                                                 "process (1 = in the driver process)")
    threads: int | None = Field(None, ge=1, description="torch threads per cell (default: torch's "
                                                           "choice; 1 is fastest when workers fill the cores)")


class MlflowSettings(_Strict):
    """MLflow tracking (the ``tracking`` extra): the study is a parent run, each cell a child run."""

    uri: str | None = Field(None, description="tracking URI, e.g. http://host:5000 (default: "
                            "$MLFLOW_TRACKING_URI, else sqlite:///<run dir>/mlflow.db)")
    experiment: str | None = Field(None, description="experiment name (default: the study name)")


class WandbSettings(_Strict):
    """Weights & Biases tracking (the ``tracking`` extra): one group per study, a run per cell."""

    project: str | None = Field(None, description="W&B project (default: the study name)")
    entity: str | None = Field(None, description="W&B entity (default: your default entity)")
    mode: Literal["auto", "online", "offline"] = Field(
        "auto", description="auto: $WANDB_MODE if set, else online when the W&B host answers "
                            "and offline files otherwise")
    dir: str | None = Field(None, description="where wandb/ is written (default: the run directory)")


class TrackingSettings(_Strict):
    """Experiment trackers fed by the study driver (sftscale.study.tracking); ``true`` turns one
    on with its defaults."""

    mlflow: MlflowSettings | None = None
    wandb: WandbSettings | None = None

    @field_validator("mlflow", "wandb", mode="before")
    @classmethod
    def _switch(cls, v: Any) -> Any:
        if v is True or v is None:  # `mlflow: true` or a bare `mlflow:` key: on, defaults
            return {}
        return None if v is False else v


class JudgeSettings(_Strict):
    """``analysis: {judge: {...}}``: label the wrong responses after the run (docs/judge.md)."""

    model: str = Field(description="openai:http://host:port/v1/<model>, or a local model reference")
    concurrency: int = Field(8, ge=1)
    timeout: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=0)
    limit: int | None = Field(None, ge=1, description="at most this many wrong responses per cell")


class AnalysisSettings(_Strict):
    """Per-cell analyses that run after evaluation (``analysis:`` in a study)."""

    token_shift: bool = Field(True, description="compare each finetuned cell with its base token "
                              "by token (the `shift` stage; docs/token-shift.md)")
    judge: JudgeSettings | None = Field(None, description="label the wrong responses with a judge model after the run "
                                        "(off by default; docs/judge.md)")


class ValidationSplit(_Strict):
    """The validation split of a recipe search, carved from each task's TRAINING pool."""

    n: int = Field(64, ge=1, description="validation items per cell (disjoint from its subset)")
    seed: int = Field(0, ge=0, description="seed of the permutation the items are taken from")


class RecipeSearch(BaseModel):
    """``recipe_search``: Recipe fields mapped to lists of values (a grid over all of them),
    plus ``validation`` and ``keep_checkpoints``; see docs/recipe-search.md."""

    model_config = ConfigDict(extra="allow")

    validation: ValidationSplit = Field(default_factory=ValidationSplit)
    keep_checkpoints: bool = Field(False, description="keep every candidate's checkpoint "
                                   "(default: only the chosen one's)")

    @model_validator(mode="after")
    def _grid(self) -> "RecipeSearch":
        grid = self.model_extra or {}
        if not grid:
            raise ValueError("name at least one recipe field with a list of values, e.g. "
                             "{lr: [3e-4, 1e-3, 3e-3]}")
        for k, v in grid.items():
            if not isinstance(v, list) or not v:
                raise _LocError("give a non-empty list of values", k)
            if len({repr(x) for x in v}) != len(v):
                raise _LocError("values must be distinct", k)
        return self

    def grid(self) -> dict[str, list[Any]]:
        """Recipe field -> candidate values, in the order written."""
        return dict(self.model_extra or {})


class StudyConfig(_Strict):
    name: Label = "study"
    description: str = ""
    models: list[ModelEntry] = Field(min_length=1)
    tasks: list[TaskEntry] = Field(min_length=1)
    n: list[int] = Field(min_length=1, description="grid of finetuning set sizes; 0 = base model")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    recipe: dict[str, Any] = Field(default_factory=dict, description="Recipe overrides, all cells")
    recipes: dict[str, dict[str, Any]] = Field(default_factory=dict, description="named overrides")
    evaluation: EvalSettings = Field(default_factory=EvalSettings)
    output: str | None = Field(None, description="run directory (default: runs/<name>)")
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    n_over_pool: Literal["error", "cap", "skip"] = Field(
        "error", description="N larger than a task's training pool: error, cap to the pool, or skip")
    tracking: TrackingSettings = Field(default_factory=TrackingSettings,
                                       description="MLflow / W&B tracking (off by default)")
    recipe_search: RecipeSearch | None = Field(
        None, description="choose recipe values per cell on a validation split of the training "
                          "pool, e.g. {lr: [3e-4, 1e-3, 3e-3]} (docs/recipe-search.md)")
    fewshot: Shots = Field(default_factory=list, description="k-shot baselines: base model, k in-context "
                           "examples from the training pool, a cell per k (docs/fewshot.md)")
    fewshot_seeds: Annotated[list[Annotated[int, Field(ge=0)]], AfterValidator(
        lambda v: _check_grid(v, "seed"))] | None = Field(None, description="draws (default: the task's seed)")
    fewshot_on_finetuned: bool = Field(False, description="k-shot cells for every finetuned cell too")
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings,
                                       description="token shift per cell; judge labels after the run")
    eval_tasks: list[EvalTaskEntry] = Field(default_factory=list, description="all tasks' eval_tasks")

    _path: str | None = PrivateAttr(None)
    _lines: dict[tuple, int] = PrivateAttr(default_factory=dict)

    @field_validator("n")
    @classmethod
    def _grid(cls, v: list[int]) -> list[int]:
        return _check_grid(v)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        return v

    @model_validator(mode="after")
    def _cross(self) -> "StudyConfig":
        seen: set[str] = set()
        for i, m in enumerate(self.models):
            if m.label in seen:
                raise _LocError(f"duplicate model name {m.label!r}", "models", i)
            seen.add(m.label)
            if isinstance(m.recipe, str) and m.recipe not in self.recipes:
                raise _LocError(f"no recipe named {m.recipe!r} in `recipes`", "models", i, "recipe")
        seen = set()
        for i, t in enumerate(self.tasks):
            if t.label in seen:
                raise _LocError(f"duplicate task label {t.label!r} (give each a `label`)",
                                "tasks", i)
            seen.add(t.label)
        return self

    # --- helpers -------------------------------------------------------------------------
    @property
    def path(self) -> str | None:
        return self._path

    def output_dir(self) -> Path:
        return Path(self.output) if self.output else Path("runs") / self.name

    def recipe_overrides(self, model: ModelEntry, task: TaskEntry) -> dict[str, Any]:
        """Study recipe < task recipe < model recipe (named or inline)."""
        out = dict(self.recipe)
        out.update(task.recipe)
        if isinstance(model.recipe, str):
            out.update(self.recipes[model.recipe])
        elif isinstance(model.recipe, dict):
            out.update(model.recipe)
        return out

    def chat_for(self, model: ModelEntry) -> bool:
        return self.evaluation.chat if model.chat is None else model.chat

    def grid_for(self, task: TaskEntry) -> list[int]:
        return list(task.n) if task.n is not None else list(self.n)

    def line_of(self, *loc: Any) -> int | None:
        """Line of the deepest existing key along ``loc`` (None when not loaded from YAML)."""
        for k in range(len(loc), -1, -1):
            if tuple(loc[:k]) in self._lines:
                return self._lines[tuple(loc[:k])]
        return None

    def error(self, reason: str, *loc: Any) -> InputError:
        """An InputError pointing at ``loc`` (e.g. ``("models", 0, "ref")``) of this file."""
        return InputError(self._path, reason, line=self.line_of(*loc), field=_loc_str(loc) or None)

    def fingerprint(self) -> str:
        return sha256_json(self.model_dump(mode="json"))


def _check_grid(v: list[int], what: str = "N") -> list[int]:
    if any(x < 0 for x in v):
        raise ValueError("N must be >= 0")
    if len(set(v)) != len(v):
        raise ValueError(f"{what} values must be distinct")
    return sorted(v)


# --- loading ---------------------------------------------------------------------------------

def load_study(path: str | os.PathLike) -> StudyConfig:
    """Read and validate a study YAML; errors are InputError(path, reason, line, field)."""
    text, p = read_config_text(path, "study")
    return parse_study(text, p)


def parse_study(text: str, path: str | os.PathLike | None = None) -> StudyConfig:
    where = str(path) if path is not None else "<study>"
    cfg, lines = validate_yaml(text, StudyConfig, where, "models:, tasks:, n:, ...")
    cfg._path = where
    cfg._lines = lines
    return cfg


__all__ = ["AnalysisSettings", "EvalSettings", "ExecutorSettings", "MlflowSettings", "ModelEntry", "StudyConfig",
           "TaskEntry", "TrackingSettings", "WandbSettings",
           "Label", "load_study", "parse_study", "parse_yaml", "read_config_text", "strict_scalars",
           "validate_yaml", "validation_error"]
