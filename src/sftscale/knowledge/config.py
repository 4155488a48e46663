"""The knowledge-injection configuration (YAML, pydantic, file/line/field errors).

A knowledge run compares STARTING POINTS (the base model; the base post-trained on a reasoning
task with N examples, one starting point per N; optionally an instruct model) after each is
finetuned on the same new facts. See docs/knowledge.md for every field; the shipped examples
are ``studies/knowledge-toy.yaml`` and ``studies/knowledge-real.yaml``.

YAML errors are reported like the study config's, by ``sftscale.yamlconfig.validate_yaml``: an
error names the file, the line of the offending key and its dotted field path. The model
references (``model``, ``instruct.ref``) are resolved here too (``models.resolve_model``: no
download), so an unknown model is reported at its line.

Not handled here: whether the facts file resolves (checked when the run starts, with the
same InputError shape), whether a hub model exists (resolving a hub id is offline), recipe keys
beyond ``Recipe``'s own validation (checked by ``train.recipe_with`` when the first cell trains).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config import Label
from ..io import InputError, sha256_json
from ..yamlconfig import _line_for, _loc_str, read_config_text, strict_scalars, validate_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _strict_scalars(cls, data: Any) -> Any:
        return strict_scalars(cls, data)  # true is not a number (yamlconfig.strict_scalars)


class ReasoningStart(_Strict):
    """Starting point (b): the base model post-trained on a reasoning task, once per N."""

    task: str = Field("toy-multihop", description="registered task with a training pool")
    options: dict[str, Any] = Field(default_factory=dict, description="task constructor options")
    n: list[int] = Field(default_factory=lambda: [256], min_length=1,
                         description="post-training set sizes; one starting point per N")
    seed: int = Field(0, ge=0, description="subset and training seed of the post-training cell")
    recipe: dict[str, Any] = Field(default_factory=dict, description="Recipe overrides")

    @field_validator("n")
    @classmethod
    def _grid(cls, v: list[int]) -> list[int]:
        if any(x < 1 for x in v):
            raise ValueError("N must be >= 1 (N = 0 is the base starting point)")
        if len(set(v)) != len(v):
            raise ValueError("N values must be distinct")
        return sorted(v)


class InstructStart(_Strict):
    """Starting point (c): another model (e.g. the instruct release of the base)."""

    ref: str = Field(description="model reference (toy name, HF id, local dir, .gguf)")
    name: Label = Field("instruct", description="label in tables")


class FactsStage(_Strict):
    """The fact-finetuning stage applied to every starting point."""

    paraphrases: int | None = Field(8, ge=1, description="distinct documents per unit of facts "
                                    "(toy: bios of a new person, each with all 3 facts in a random "
                                    "order and wording; file: a fact's statements); None: a fresh "
                                    "random variant for every exposure")
    exposures: int | None = Field(100, ge=1, description="documents per unit in the stage (the "
                                  "paraphrases repeated), i.e. times each new fact is seen; None: "
                                  "each paraphrase once")
    people: int | None = Field(None, ge=2, description="toy: new people (the world's held-out "
                               "people first, then drawn unused names); None: the held-out ones")
    qa_share: float = Field(0.5, ge=0, lt=1, description="toy: share of the new people whose "
                            "direct and two-hop QA pairs are mixed into the stage; the others "
                            "are the test people")
    qa_examples: int = Field(16, ge=0, description="QA pairs per (QA person, question), "
                             "wordings cycled")
    limit: int | None = Field(None, ge=1, description="use only the first LIMIT facts (toy: "
                              "their people's facts; questions are limited to match)")
    epochs: float = Field(1.0, gt=0, description="passes over the mix (the mix already "
                          "repeats each fact `exposures` times)")
    steps: int | None = Field(None, ge=1, description="optimizer steps (overrides epochs)")
    lr: float = Field(3e-4, gt=0)
    batch_size: int = Field(16, ge=1)
    packing: bool = Field(True, description="pack the short documents into rows of the "
                          "recipe's max_length (fewer, fuller steps)")
    replay: float = Field(0.5, ge=0, description="replay examples per fact document")
    replay_own: float = Field(0.5, ge=0, le=1, description="share of the replay drawn from the "
                              "starting point's own post-training data (the rest: corpus text)")
    format_examples: int = Field(0, ge=0, description="question/answer examples about KNOWN "
                                 "entities mixed into every starting point's stage (answer format "
                                 "without the new facts)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    recipe: dict[str, Any] = Field(default_factory=dict, description="other Recipe overrides")
    workers: int = Field(1, ge=1, description="train the facts stages (every start x seed) in "
                         "this many spawned processes of one torch thread each (CPU); results "
                         "do not depend on it")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or any(s < 0 for s in v):
            raise ValueError("seeds must be distinct and >= 0")
        return v


class EvalSpec(_Strict):
    limit: int | None = Field(None, ge=1, description="questions per type (first LIMIT)")
    retrieval: bool = Field(True, description="also score each starting point with the facts "
                            "in the prompt (no fact finetuning)")
    before: bool = Field(True, description="also score each starting point closed-book before "
                         "the facts stage")
    recall: int = Field(150, ge=0, description="toy: corpus facts sampled to measure forgetting "
                        "(cloze recall); 0 = off")
    batch_size: int | None = Field(None, ge=1)


class BootstrapSpec(_Strict):
    n_boot: int = Field(2000, ge=100)
    level: float = Field(0.95, gt=0, lt=1)
    seed: int = Field(0, ge=0)


class KnowledgeConfig(_Strict):
    name: Label = "knowledge"
    description: str = ""
    model: str = Field(description="base model reference")
    facts: str = Field("toy", description="'toy' (the toy world's held-out people) or a facts "
                       "file (JSONL/JSON, see docs/knowledge.md)")
    world_seed: int = Field(0, ge=0, description="toy world seed")
    base: bool = Field(True, description="include the base model as starting point (a)")
    reasoning: ReasoningStart | None = None
    instruct: InstructStart | None = None
    stage: FactsStage = Field(default_factory=FactsStage)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    bootstrap: BootstrapSpec = Field(default_factory=BootstrapSpec)
    output: str | None = Field(None, description="run directory (default: runs/<name>)")

    @model_validator(mode="after")
    def _some_start(self) -> "KnowledgeConfig":
        if not self.base and self.reasoning is None and self.instruct is None:
            raise ValueError("no starting point: set base: true, or give reasoning: or instruct:")
        return self

    def output_dir(self) -> Path:
        return Path(self.output) if self.output else Path("runs") / self.name

    def fingerprint(self) -> str:
        return sha256_json(self.model_dump(mode="json"))


def load_config(path: str | os.PathLike) -> KnowledgeConfig:
    """Read and validate a knowledge YAML; errors are InputError(path, reason, line, field)."""
    text, p = read_config_text(path, "knowledge")
    return parse_config(text, p)


def parse_config(text: str, path: str | os.PathLike | None = None) -> KnowledgeConfig:
    where = str(path) if path is not None else "<knowledge>"
    cfg, lines = validate_yaml(text, KnowledgeConfig, where, "model:, facts:, reasoning:, ...")
    _check_models(cfg, where, lines)
    return cfg


def _check_models(cfg: KnowledgeConfig, where: str, lines: dict[tuple, int]) -> None:
    """Resolve the model references; an unknown one is reported at its file, line and field
    (the study config's line index and field names: ``config._line_for`` / ``_loc_str``)."""
    from ..models import resolve_model

    refs: list[tuple[tuple[str, ...], str]] = [(("model",), cfg.model)]
    if cfg.instruct is not None:
        refs.append((("instruct", "ref"), cfg.instruct.ref))
    for loc, ref in refs:
        try:
            resolve_model(ref)
        except InputError as e:
            reason = e.reason if e.path is None else f"{e.path}: {e.reason}"
            raise InputError(where, reason, line=_line_for(lines, loc),
                             field=_loc_str(loc)) from None


__all__ = ["BootstrapSpec", "EvalSpec", "FactsStage", "InstructStart", "KnowledgeConfig",
           "ReasoningStart", "load_config", "parse_config"]
