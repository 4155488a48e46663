"""Expanding a study config into cells: model × task × N × seed.

A cell is one finetuning run plus its evaluation. N = 0 (the base model, untrained) is
seed-independent, so it appears once per model/task; it carries the study's first seed so
that tables keep an integer seed column (documented in docs/notes/study.md).

The cell key (``<model>__<task>__n<N>__s<seed>``, or ``<model>__<task>__n0`` for N = 0) names
the cell's directory and its row in the store. ``spec`` is everything that determines the
cell's outputs that the config can see: besides the config's own fields, the task's
``version`` and a toy model's own finetuning defaults (``toyworld.toy_sft_defaults``, where
they differ from the shared ones). Its hash is stored, so a run directory is never silently
reused for a different configuration of the same key. Not in the spec: the base model's
weights (a re-pretrained model under the same name or path; docs/footguns.md).

A study's ``recipe_search`` (search.py) gives every N > 0 cell a ``search`` dict (the grid
and the validation split), part of its spec and so of its hash.

Not handled here: whether models and tasks resolve (``plan/check.py``), running (``study/runner.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from ..config import StudyConfig
from ..io import InputError, sha256_json
from .searchspec import cell_search, search_spec


@dataclass
class Cell:
    model: str  # label
    model_ref: str
    task: str  # label
    task_name: str
    n: int
    seed: int
    task_options: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)  # overrides of default_recipe(model_ref)
    chat: bool = False
    limit: int | None = None
    batch_size: int | None = None
    max_new_tokens: int | None = None
    allow_template_mismatch: bool = False
    gpus: float = 0.0
    cpus: float = 1.0
    n_requested: int | None = None  # the grid value before capping to the pool
    sampling: dict[str, Any] = field(default_factory=dict)  # evaluate(sampling=); {}: greedy
    num_fewshot: int = 0
    processes: int | None = None  # training processes with recipe sharding ddp/fsdp
    search: dict[str, Any] = field(default_factory=dict)  # recipe search (search.py); {}: none
    task_version: str = ""  # the task's version (registry); part of the spec when set
    model_defaults: dict[str, Any] = field(default_factory=dict)  # a toy model's own defaults
    kshot: int = 0  # a k-shot cell of the study's ``fewshot``: k in-context examples (0: none)
    fewshot_seed: int | None = None  # its draw's seed (None: the task's own)
    # other tasks the cell is evaluated on (the xeval stage; NOT part of the spec: adding one
    # evaluates only it): {label, name, options, limit, version} each
    eval_tasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def world(self) -> int:
        """Training processes of the cell: 1 unless the recipe asks for ``sharding`` ddp or
        fsdp, then the model's ``processes`` (default: its whole ``gpus``)."""
        if self.recipe.get("sharding", "none") == "none":
            return 1
        return self.processes or max(1, int(self.gpus))

    @property
    def key(self) -> str:
        base = f"{self.model}__{self.task}__n{self.n}"
        base = base if self.n == 0 else f"{base}__s{self.seed}"
        if self.kshot:  # only k-shot cells: every other key stays as it was
            base += f"__k{self.kshot}" + ("" if self.fewshot_seed is None else f"__fs{self.fewshot_seed}")
        return base

    def spec(self) -> dict[str, Any]:
        """What determines the outputs (resources and labels excluded)."""
        return {"model_ref": self.model_ref, "task_name": self.task_name,
                "task_options": self.task_options, "n": self.n,
                "seed": None if self.n == 0 else self.seed,
                "recipe": None if self.n == 0 else self.recipe,
                "chat": self.chat, "limit": self.limit, "max_new_tokens": self.max_new_tokens,
                "allow_template_mismatch": self.allow_template_mismatch,
                # only when set, so the specs (and hashes) of greedy zero-shot cells stay
                **({"sampling": self.sampling} if self.sampling else {}),
                **({"num_fewshot": self.num_fewshot} if self.num_fewshot else {}),
                **({"fewshot_seed": self.fewshot_seed} if self.fewshot_seed is not None else {}),
                **({"recipe_search": search_spec(self.search)} if self.search and self.n else {}),
                **({"task_version": self.task_version} if self.task_version else {}),
                **({"model_defaults": self.model_defaults} if self.model_defaults and self.n else {})}

    @property
    def spec_hash(self) -> str:
        return sha256_json(self.spec())[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Cell":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def model_defaults(ref: str) -> dict[str, Any]:
    """A toy model's own finetuning defaults (``train.default_recipe``) where they differ from
    the shared ``TOY_SFT_DEFAULTS``; ``{}`` for real models."""
    from ..models import is_toy
    from ..toyworld import TOY_SFT_DEFAULTS
    from ..train.recipe import Recipe, default_recipe

    if not is_toy(ref):
        return {}
    shared = Recipe(**TOY_SFT_DEFAULTS).model_dump()
    return {k: v for k, v in default_recipe(ref).model_dump().items() if shared[k] != v}


def expand_cells(cfg: StudyConfig, pool_sizes: Mapping[str, int] | None = None) -> list[Cell]:
    """All cells of the study, model-major (so one worker can keep a base model loaded).

    ``pool_sizes`` (task label -> training pool size) applies ``cfg.n_over_pool``: ``error``
    raises an InputError pointing at the grid, ``cap`` replaces N by the pool size (once),
    ``skip`` drops the cell. Without it, N is not checked against pools here (train does).
    """
    from ..tasks.registry import task_version

    cells: list[Cell] = []
    search = cell_search(cfg)
    xtasks = [_eval_tasks(cfg, ti) for ti in range(len(cfg.tasks))]
    for m in cfg.models:
        own = model_defaults(m.ref)
        for ti, t in enumerate(cfg.tasks):
            pool = None if pool_sizes is None else pool_sizes.get(t.label)
            _check_search_task(cfg, ti, pool)
            seen: set[tuple[int, int]] = set()
            for n_req in cfg.grid_for(t):
                n = n_req
                if pool is not None and n > pool:
                    if cfg.n_over_pool == "error":
                        loc = ("tasks", ti, "n") if t.n is not None else ("n",)
                        raise cfg.error(f"N={n} exceeds the training pool of task {t.label!r} "
                                        f"({pool} items); set n_over_pool: cap or skip, or "
                                        f"remove it from the grid", *loc)
                    if cfg.n_over_pool == "skip":
                        continue
                    n = pool
                seeds = cfg.seeds[:1] if n == 0 else cfg.seeds
                for s in seeds:
                    if (n, s) in seen:
                        continue
                    seen.add((n, s))
                    cells.append(Cell(
                        model=m.label, model_ref=m.ref, task=t.label or t.name, task_name=t.name,
                        n=n, seed=s, task_options=t.task_options(),
                        recipe=cfg.recipe_overrides(m, t), chat=cfg.chat_for(m),
                        limit=t.limit if t.limit is not None else cfg.evaluation.limit,
                        batch_size=cfg.evaluation.batch_size,
                        max_new_tokens=(t.max_new_tokens if t.max_new_tokens is not None
                                        else cfg.evaluation.max_new_tokens),
                        allow_template_mismatch=cfg.evaluation.allow_template_mismatch,
                        gpus=m.gpus, cpus=m.cpus if m.cpus is not None else cfg.executor.cpus_per_cell,
                        n_requested=n_req, sampling=_sampling(cfg),
                        num_fewshot=cfg.evaluation.num_fewshot, processes=m.processes,
                        search=search if n > 0 else {}, task_version=task_version(t.name),
                        model_defaults=own, eval_tasks=xtasks[ti]))
    cells = _with_kshot(cfg, cells)
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):  # impossible with validated labels; guard anyway
        raise InputError(cfg.path, "two cells share a key; make model/task labels distinct")
    return cells


def fewshot_for(cfg: StudyConfig, task: Any) -> list[int]:
    """A task entry's k-shot baselines: its own ``fewshot``, else the study's."""
    return list(task.fewshot) if task.fewshot is not None else list(cfg.fewshot)


def _with_kshot(cfg: StudyConfig, cells: list[Cell]) -> list[Cell]:
    """The k-shot cells of ``fewshot`` after each model/task's curve cells: the base model
    (N = 0) with each k and draw seed, and with ``fewshot_on_finetuned`` every N > 0 cell too
    (its examples never from its own subset: the eval stage excludes them)."""
    from dataclasses import replace

    seeds: list[int | None] = list(cfg.fewshot_seeds) if cfg.fewshot_seeds else [None]
    out: list[Cell] = []
    by_task = {t.label or t.name: (ti, t) for ti, t in enumerate(cfg.tasks)}
    for i, c in enumerate(cells):
        out.append(c)
        nxt = cells[i + 1] if i + 1 < len(cells) else None
        if nxt is not None and (nxt.model, nxt.task) == (c.model, c.task):
            continue  # the last cell of this model/task: its k-shot cells follow
        ti, t = by_task[c.task]
        ks = fewshot_for(cfg, t)
        if not ks:
            continue
        if c.chat:
            loc = ("tasks", ti, "fewshot") if t.fewshot is not None else ("fewshot",)
            raise cfg.error(f"k-shot contexts are plain text; model {c.model!r} uses the chat "
                            "template (drop chat or fewshot)", *loc)
        mine = [x for x in cells if (x.model, x.task) == (c.model, c.task)]
        zero = [x for x in mine if x.n == 0] or [replace(mine[0], n=0, seed=cfg.seeds[0], search={},
                                                         n_requested=0)]
        group = zero + ([x for x in mine if x.n > 0] if cfg.fewshot_on_finetuned else [])
        for base in group:
            for k in ks:
                for fs in seeds:
                    out.append(replace(base, kshot=k, num_fewshot=k, fewshot_seed=fs,
                                       eval_tasks=[]))  # other tasks: the plain cell's
    return out


def _eval_tasks(cfg: StudyConfig, ti: int) -> list[dict[str, Any]]:
    """Task ``ti``'s eval tasks as its cells carry them: its own ``eval_tasks``, then the
    study-wide ones it does not name (the task itself left out); an unknown task name or a
    label named twice is an InputError at its line."""
    from ..tasks.registry import task_names, task_version

    t = cfg.tasks[ti]
    known = task_names()
    entries: list[tuple[Any, tuple]] = [(e, ("tasks", ti, "eval_tasks", j))
                                        for j, e in enumerate(t.eval_tasks)]
    entries += [(e, ("eval_tasks", j)) for j, e in enumerate(cfg.eval_tasks)]
    out: dict[str, dict[str, Any]] = {}
    for e, loc in entries:
        label = e.label or e.name
        if e.name not in known:
            raise cfg.error(f"unknown eval task {e.name!r}; known: {', '.join(known)}", *loc, "name")
        if label == (t.label or t.name) or label in out:
            if loc[0] == "eval_tasks":
                continue  # a study-wide entry the task already has
            raise cfg.error(f"eval task {label!r} is named twice (a cell is always evaluated "
                            "on its own task; give each a distinct `label`)", *loc)
        out[label] = {"label": label, "name": e.name, "options": dict(e.options),
                      "limit": e.limit if e.limit is not None else (
                          t.limit if t.limit is not None else cfg.evaluation.limit),
                      "version": task_version(e.name)}
    return list(out.values())


def _check_search_task(cfg: StudyConfig, ti: int, pool: int | None) -> None:
    """A recipe search needs training items the task can score (not ``train_data``) and room
    in the pool for the validation split beside the largest N."""
    rs, t = cfg.recipe_search, cfg.tasks[ti]
    if rs is None:
        return
    if "train_data" in t.task_options():
        raise cfg.error("recipe_search scores validation items with the task's scorer, which "
                        "cannot score external train_data records; drop one of them",
                        "tasks", ti, "train_data" if t.train_data else "options")
    if pool is None:
        return
    top = max((min(n, pool) for n in cfg.grid_for(t)
               if n <= pool or cfg.n_over_pool == "cap"), default=0)
    if top and top + rs.validation.n > pool:
        raise cfg.error(f"task {t.label!r}: N = {top} plus {rs.validation.n} validation items "
                        f"exceed its training pool ({pool}); lower validation.n or N",
                        "recipe_search", "validation", "n")


def _sampling(cfg: StudyConfig) -> dict[str, Any]:
    """The evaluation section's sampling settings that differ from greedy (evaluate's names)."""
    e = cfg.evaluation
    vals = {"temperature": e.temperature, "top_p": e.top_p, "n": e.n_samples, "seed": e.seed}
    dflt = {"temperature": 0.0, "top_p": 1.0, "n": 1, "seed": 0}
    return {k: v for k, v in vals.items() if v != dflt[k]}


__all__ = ["Cell", "expand_cells", "fewshot_for"]
