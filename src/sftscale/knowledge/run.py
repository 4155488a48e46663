"""``run_knowledge(cfg, out)``: starting points -> facts stage -> evaluation -> table.

Layout of the run directory ``out``::

    starts/reasoning-<N>/cell/       train_cell of the reasoning task (train_meta.json, ckpt/)
    starts/reasoning-<N>/merged/     LoRA starting points only: adapter merged into the base
    facts/<start>/s<seed>-<mix>/     train_cell of the facts mix (<mix>: hash of its examples)
    eval/<start>/<condition>[-s<seed>]/<qtype>/   evaluate() results_*.json + samples_*.jsonl
    eval/.../recall.json             toy: cloze recall of corpus facts and of the new facts
    knowledge/table.json, table.md   the results table (shape: docs/knowledge.md)

Reruns reuse everything finished: ``train_cell`` keeps a cell whose ``train_meta.json``
exists (a finished starting point or facts cell that ``train_cell`` would refuse, for another
task version, recipe or base weights, is removed and trained again: ``replace_if_stale``), an
evaluation directory with a ``results_*.json`` and a matching ``eval_key.json`` (``_eval_key``:
the model and adapter, the questions, the retrieval flag, the recall facts) is read back
instead of re-run (a directory whose key differs, or that has none, is stale: it is removed
and evaluated again), a
merged directory with ``merged.json`` is kept, and generations are cached under ``cache/gen``.
The facts mix (statements, replay, format examples) is a pure function of the
config and the seed, and its hash names the cell directory, so a changed mix trains anew.

Facts stage: one ``train_cell`` on an in-memory task whose training pool is the mix; the
recipe is ``default_recipe(base model)`` (toy: full finetuning; real: LoRA) with the stage's
``epochs``, ``lr``, ``batch_size``, ``max_steps: null`` and its ``recipe`` overrides. LoRA
starting points (the reasoning cell of a real model) are merged into the base first
(``peft``'s ``merge_and_unload``), so the facts adapter sits on the merged weights.

Not handled: chat templates, several reasoning seeds (one post-training seed; the facts stage
has seeds), GPU scheduling across cells (cells run one after another in this process).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..io import InputError, atomic_write_json, atomic_write_text, read_jsonl, remove_path, sha256_json
from ..rundir import layout
from ..tasks.base import GenSpec, Item, Task
from .config import BootstrapSpec, KnowledgeConfig
from .sources import QTYPES, Source, file_source
from .stats import bootstrap_rows, interval, paired_contrast, table_markdown
from .toy import toy_source

METRICS = ("em", "f1", "contains", "format_ok")
Log = Callable[[str], None]


@dataclass
class Start:
    name: str
    kind: str  # base | reasoning | instruct
    ref: str
    n: int | None = None
    own: list[tuple[str, str, str]] = field(default_factory=list)  # its post-training pairs


class MixTask(Task):
    """A training pool of fixed (id, prompt, completion) triples (no test set)."""

    name = "knowledge-mix"

    def __init__(self, pairs: list[tuple[str, str, str]]):
        self.pairs = pairs
        self.version = sha256_json(pairs)[:16]
        self._items = [Item(id=i, question=p, completion=c) for i, p, c in pairs]

    def test_items(self) -> list[Item]:
        return []

    def train_items(self) -> list[Item]:
        return self._items

    def prompt_text(self, item: Item) -> str:
        return item.question

    def training_pair(self, item: Item, tokenizer: Any = None, chat: bool = False) -> tuple[str, str]:
        return item.question, item.completion or ""

    def score(self, item: Item, response: str) -> dict:
        return {"format_ok": True, "correct": False}


class QATask(Task):
    """The source's questions of one type, closed-book or with their facts in the prompt."""

    version = "1"
    license = "see the facts source"

    def __init__(self, src: Source, qtype: str, items: list[Item], retrieval: bool):
        self.src, self.items, self.retrieval = src, items, retrieval
        self.name = f"knowledge-{qtype}{'-retrieval' if retrieval else ''}"
        self.gen: GenSpec = src.gen

    def test_items(self) -> list[Item]:
        return self.items

    def prompt_text(self, item: Item) -> str:
        return self.src.prompt(item, self.retrieval)

    def score(self, item: Item, response: str) -> dict:
        return self.src.score(item, response)


# --------------------------------------------------------------------------- stages
def _source(cfg: KnowledgeConfig) -> Source:
    if cfg.facts == "toy":
        st = cfg.stage
        try:
            return toy_source(cfg.world_seed, people=st.people, qa_share=st.qa_share,
                              limit=st.limit, recall=cfg.eval.recall)
        except ValueError as e:
            raise InputError(None, str(e), field="stage.people") from None
    return file_source(cfg.facts, limit=cfg.stage.limit, need_fact_ids=cfg.eval.retrieval)


def _merge_lora(base_ref: str, adapter: Path, dst: Path, log: Log) -> Path:
    """Merge a peft adapter into its base and save a plain model directory (kept on rerun)."""
    if (dst / "merged.json").is_file():
        return dst
    import shutil
    import tempfile

    from peft import PeftModel

    from ..models import load_model

    log(f"merging {adapter} into {base_ref}")
    model, tok = load_model(base_ref, device="cpu")
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".merged.", dir=dst.parent))
    try:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        atomic_write_json(tmp / "merged.json", {"base": base_ref, "adapter": str(adapter)})
        if dst.exists():
            shutil.rmtree(dst)
        tmp.rename(dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def starting_points(cfg: KnowledgeConfig, out: Path, log: Log,
                    reuse: Sequence[str | Path] = ()) -> list[Start]:
    """(a) base, (b) reasoning-N for each N (trained here, or linked from a finished cell of a
    study run directory in ``reuse`` with the same model, task, N, seed and recipe), (c)
    instruct."""
    from ..tasks import get_task
    from ..train.cell import adopt_cell, replace_if_stale, train_cell

    starts: list[Start] = []
    if cfg.base:
        starts.append(Start("base", "base", cfg.model))
    if cfg.reasoning is not None:
        r = cfg.reasoning
        try:
            task = get_task(r.task, **r.options)
        except InputError as e:
            raise InputError(None, f"reasoning task: {e.reason}", field="reasoning.task") from None
        except ValueError as e:
            raise InputError(None, f"reasoning task: {e}", field="reasoning.task") from None
        by_id = {it.id: it for it in task.train_items()}
        for n in r.n:
            cell = out / "starts" / f"reasoning-{n}" / "cell"
            if replace_if_stale(cfg.model, task, n, r.seed, cell, recipe=dict(r.recipe) or None,
                                task_options=r.options or None, log=log):
                remove_path(cell.parent / "merged")  # merged from the replaced adapter
            sources = [p for d in reuse
                       for p in sorted((Path(d) / layout.CELLS).glob(f"*/{layout.TRAIN}"))]
            src = adopt_cell(cfg.model, task, n, r.seed, cell, sources,
                             recipe=dict(r.recipe) or None, task_options=r.options or None)
            if src is not None:
                remove_path(cell.parent / "merged")
                log(f"reasoning-{n}: the study's finished cell {src.parent.name} (linked, not "
                    "trained again)")
            t0 = time.perf_counter()
            meta = train_cell(cfg.model, task, n, r.seed, cell, recipe=dict(r.recipe) or None,
                              task_options=r.options or None)
            if src is None:
                log(f"reasoning-{n}: post-trained ({meta.get('steps')} steps, "
                    f"{time.perf_counter() - t0:.1f}s)")
            if meta.get("checkpoint_kind") == "lora":
                ref = str(_merge_lora(cfg.model, cell / "ckpt", cell.parent / "merged", log))
            else:
                ref = str(cell / "ckpt")
            own = [(f"own/{i}", *task.training_pair(by_id[i], None, False)) for i in meta["subset_ids"]]
            starts.append(Start(f"reasoning-{n}", "reasoning", ref, n=n, own=own))
    if cfg.instruct is not None:
        starts.append(Start(cfg.instruct.name, "instruct", cfg.instruct.ref))
    return starts


def facts_mix(src: Source, cfg: KnowledgeConfig, start: Start, seed: int) -> list[tuple[str, str, str]]:
    """Fact documents (paraphrases x exposures) + QA pairs about the QA people + replay (own
    post-training data / corpus text) + format examples about known entities."""
    st = cfg.stage
    facts = src.fact_documents(st.paraphrases, st.exposures, seed)
    qa = src.qa_examples(st.qa_examples, seed) if st.qa_examples else []
    n_replay = int(round(st.replay * len(facts)))
    n_own = min(int(round(n_replay * st.replay_own)), n_replay) if start.own else 0
    rng = random.Random(f"knowledge-mix-{start.name}-{seed}")
    own = []
    if n_own:
        reps = (n_own + len(start.own) - 1) // len(start.own)
        pool = [p for _ in range(reps) for p in rng.sample(start.own, len(start.own))]
        own = [(f"{i}#{k}", p, c) for k, (i, p, c) in enumerate(pool[:n_own])]
    corpus = [(f"corpus/{k}", "", t) for k, t in enumerate(src.corpus_replay(n_replay - n_own, seed))]
    fmt = src.format_pairs[:st.format_examples]
    if st.format_examples > len(src.format_pairs):
        raise InputError(None, f"format_examples = {st.format_examples} but the source has only "
                         f"{len(src.format_pairs)} format examples", field="stage.format_examples")
    return facts + qa + own + corpus + fmt


def facts_recipe(cfg: KnowledgeConfig) -> Any:
    from ..train import recipe_with

    st = cfg.stage
    # no early stopping: the facts stage trains on its whole mix (no validation items to spare)
    over = {"epochs": st.epochs, "lr": st.lr, "batch_size": st.batch_size, "max_steps": None,
            "packing": st.packing, "early_stopping": False}
    if st.steps is not None:
        over.update(min_steps=st.steps, max_steps=st.steps)
    return recipe_with(cfg.model, {**over, **st.recipe}, where="stage.recipe")


# --------------------------------------------------------------------------- evaluation
def _read_done(d: Path) -> list[dict] | None:
    if not sorted(d.glob("results_*.json")):
        return None
    samples = sorted(d.glob("samples_*.jsonl"))
    return read_jsonl(samples[-1]) if samples else None


EVAL_KEY = "eval_key.json"


def _eval_key(src: Source, items: dict[str, list[Item]], gen_ref: str, adapter: str | None,
              retrieval: bool, recall: bool) -> dict:
    """What an evaluation directory's results depend on (besides the code): the model, the
    questions asked (ids, prompts, answers), retrieval, and the facts cloze recall reads."""
    key: dict[str, Any] = {
        "model": gen_ref, "adapter": adapter, "retrieval": retrieval,
        "questions": {qt: sha256_json([[it.id, it.question, it.target] for it in items[qt]])
                      for qt in QTYPES}}
    if recall:
        key["recall"] = sha256_json([list(src.corpus_recall),
                                     [f.triple for f in src.test_facts() if f.triple is not None]])
    return key


def _claim_eval_dir(d: Path, key: dict, log: Log | None = None) -> None:
    """Make ``d`` hold evaluations for ``key`` only: remove it when it holds another key's (or
    an unkeyed one's) results, then record the key."""
    path = d / EVAL_KEY
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if old == key:
        return
    if d.exists() and any(d.iterdir()):
        if log is not None:
            log(f"{d}: evaluated for other questions or another model; evaluating again")
        remove_path(d)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, key)


def _eval_model(src: Source, items: dict[str, list[Item]], gen_ref: str, adapter: str | None,
                d: Path, retrieval: bool, cfg: KnowledgeConfig, cache: Path,
                recall: bool, log: Log | None = None) -> tuple[dict[str, list[dict]], dict | None]:
    """Score one model on every question type; toy: also cloze recall. Reuses finished dirs
    of the same ``_eval_key``."""
    from ..evaluation.run import evaluate

    _claim_eval_dir(d, _eval_key(src, items, gen_ref, adapter, retrieval, recall), log)
    samples: dict[str, list[dict]] = {}
    todo = []
    for qt in QTYPES:
        got = _read_done(d / qt)
        if got is None:
            todo.append(qt)
        else:
            samples[qt] = got
    rec_path = d / "recall.json"
    need_recall = recall and not rec_path.is_file()
    gen = None
    if todo or need_recall:
        from ..generation.generator import Generator

        gen = Generator(gen_ref, adapter=adapter, batch_size=cfg.eval.batch_size, cache_dir=cache)
    for qt in todo:
        res = evaluate(gen_ref, QATask(src, qt, items[qt], retrieval), adapter=adapter,
                       out=d / qt, generator=gen)
        samples[qt] = res["samples"]
    rec = None
    if recall:
        if need_recall:
            from ..toyworld.pretrain import fact_recall

            assert gen is not None  # made above when the recall is needed
            new = [f.triple for f in src.test_facts() if f.triple is not None]
            rec = {"corpus": fact_recall(gen.model, gen.tokenizer, src.corpus_recall),
                   "new": fact_recall(gen.model, gen.tokenizer, new),
                   "n_corpus": len(src.corpus_recall), "n_new": len(new)}
            atomic_write_json(rec_path, rec)
        else:
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
    return samples, rec


# --------------------------------------------------------------------------- table
def _matrix(rows_samples: list[list[dict]], ids: list[str], metric: str) -> np.ndarray:
    """(S, I) item scores of one metric for one row (one line per seed)."""
    out = np.full((len(rows_samples), len(ids)), np.nan)
    pos = {i: k for k, i in enumerate(ids)}
    for s, recs in enumerate(rows_samples):
        for r in recs:
            if r["id"] in pos and metric in r:
                out[s, pos[r["id"]]] = float(r[metric])
    return out


def _contrasts(items: dict[str, list[Item]], bs: BootstrapSpec, cond: str, a: str, b: str,
               terms: list[tuple[dict, float]]) -> list[dict]:
    """sum(weight * row mean) per question type and metric, paired over questions (and seeds),
    with the unpaired interval beside it for comparison."""
    out = []
    for qt in QTYPES:
        ids = [it.id for it in items[qt]]
        if not ids:
            continue
        for m in ("em", "f1", "contains"):
            mats = [_matrix(r["samples"][qt], ids, m) for r, _ in terms]
            w = [wt for _, wt in terms]
            p = paired_contrast(mats, w, bs.n_boot, bs.level, bs.seed)
            u = paired_contrast(mats, w, bs.n_boot, bs.level, bs.seed, paired=False)
            out.append({"condition": cond, "a": a, "b": b, "question_type": qt, "metric": m,
                        **p, "lo_unpaired": u["lo"], "hi_unpaired": u["hi"]})
    return out


def _differences(rows: list[dict], items: dict[str, list[Item]], bs: BootstrapSpec) -> list[dict]:
    """Each start minus the base start under each condition; then ``gain``: (injected -
    before) of each start minus that of the base start, which separates learning the facts
    from answering closed book."""
    out = []
    for cond in ("injected", "before", "retrieval"):
        crow = [r for r in rows if r["condition"] == cond]
        if not crow:
            continue
        ref = next((r for r in crow if r["kind"] == "base"), crow[0])
        for r in crow:
            if r is not ref:
                out += _contrasts(items, bs, cond, r["start"], ref["start"], [(r, 1.0), (ref, -1.0)])
    inj = {r["start"]: r for r in rows if r["condition"] == "injected"}
    bef = {r["start"]: r for r in rows if r["condition"] == "before"}
    starts = [s for s in inj if s in bef]
    if not starts:
        return out
    ref_s = next((s for s in starts if inj[s]["kind"] == "base"), starts[0])
    for s in starts:
        if s != ref_s:
            out += _contrasts(items, bs, "gain", s, ref_s, [(inj[s], 1.0), (bef[s], -1.0),
                                                           (inj[ref_s], -1.0), (bef[ref_s], 1.0)])
    return out


def build_table(cfg: KnowledgeConfig, src: Source, items: dict[str, list[Item]],
                rows: list[dict]) -> dict:
    """rows: {start, kind, n, condition, seeds, samples: {qtype: [per-seed records]}, recall}."""
    bs = cfg.bootstrap
    for qt in QTYPES:
        ids = [it.id for it in items[qt]]
        for m in METRICS:
            mats = [_matrix(r["samples"][qt], ids, m) for r in rows]
            if not ids:
                for r in rows:
                    r.setdefault(qt, {})[m] = None
                continue
            point, reps = bootstrap_rows(mats, n_boot=bs.n_boot, seed=bs.seed)
            for k, r in enumerate(rows):
                lo, hi = interval(reps[:, k], bs.level)
                r.setdefault(qt, {})[m] = {"mean": float(point[k]), "lo": lo, "hi": hi}
    diffs = _differences(rows, items, bs)
    out_rows = [{k: v for k, v in r.items() if k != "samples"} for r in rows]
    return {"name": cfg.name, "model": cfg.model, "facts": cfg.facts, "n_facts": len(src.facts),
            "n_items": {qt: len(items[qt]) for qt in QTYPES},
            "metrics": list(METRICS), "conditions": ["injected", "before", "retrieval"],
            "rows": out_rows, "differences": diffs,
            "bootstrap": {**bs.model_dump(), "paired": "items (and facts-stage seeds)"},
            "config": cfg.model_dump(mode="json"), "config_sha": cfg.fingerprint()}


# --------------------------------------------------------------------------- driver
def _facts_cell(cfg: KnowledgeConfig, src: Source, st: Start, seed: int, out: Path
                ) -> tuple[list[tuple[str, str, str]], MixTask, Path]:
    pairs = facts_mix(src, cfg, st, seed)
    task = MixTask(pairs)
    return pairs, task, out / "facts" / st.name / f"s{seed}-{task.version[:10]}"


def _train_facts_job(job: tuple) -> dict:
    """One facts-stage training in a pool worker (module level so it pickles)."""
    from ..train.cell import train_cell

    ref, pairs, seed, cell, recipe = job
    return train_cell(ref, MixTask(pairs), len(pairs), seed, cell, recipe=recipe)


def _train_facts_parallel(facts: dict, starts: list, workers: int, recipe: Any, log: Log) -> None:
    """Train every (start, seed) facts stage not yet done in ``workers`` spawned processes;
    the sequential loop then finds each cell done (``train_cell`` returns the existing meta).
    ``facts``: (start name, seed) -> (pairs, task, cell dir), as ``_facts_cell`` builds them."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from ..study.executors import set_threads
    from ..train.cell import read_meta

    ref = {st.name: st.ref for st in starts}
    jobs = [(ref[name], pairs, seed, cell, recipe)
            for (name, seed), (pairs, _, cell) in facts.items() if read_meta(cell) is None]
    if len(jobs) < 2:
        return
    workers = min(workers, len(jobs))
    log(f"facts stages: {len(jobs)} trainings in {workers} processes")
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=set_threads,
                             initargs=(1,)) as ex:
        list(ex.map(_train_facts_job, jobs))


def run_knowledge(cfg: KnowledgeConfig, out: str | Path | None = None, log: Log | None = None,
                  reuse: Sequence[str | Path] = ()) -> dict:
    """Run the whole experiment; write knowledge/table.json and table.md; return the table.
    ``reuse``: study run directories whose finished cells may serve as reasoning starts."""
    log = log or (lambda s: None)
    out = Path(out) if out is not None else cfg.output_dir()
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    src = _source(cfg)
    items = {qt: src.questions[qt][:cfg.eval.limit] for qt in QTYPES}
    log(f"{len(src.facts)} facts; {len(items['direct'])} direct, {len(items['multihop'])} multihop questions")
    recipe = facts_recipe(cfg)
    cache = out / "cache" / "gen"
    recall = src.kind == "toy" and cfg.eval.recall > 0

    t0 = time.perf_counter()
    starts = starting_points(cfg, out, log, reuse)
    timings["starting_points_s"] = time.perf_counter() - t0

    from ..train.cell import replace_if_stale, train_cell

    rows: list[dict] = []
    t_train = t_eval = 0.0
    facts = {(st.name, seed): _facts_cell(cfg, src, st, seed, out)
             for st in starts for seed in cfg.stage.seeds}
    for st in starts:  # a facts cell of another start or base weights is retrained, not refused
        for seed in cfg.stage.seeds:
            pairs, task, cell = facts[(st.name, seed)]
            replace_if_stale(st.ref, task, len(pairs), seed, cell, recipe=recipe, log=log)
    if cfg.stage.workers > 1:
        t0 = time.perf_counter()
        _train_facts_parallel(facts, starts, cfg.stage.workers, recipe, log)
        t_train += time.perf_counter() - t0
    for st in starts:
        conds: list[tuple[str, bool]] = []
        if cfg.eval.before:
            conds.append(("before", False))
        if cfg.eval.retrieval:
            conds.append(("retrieval", True))
        for cond, rag in conds:
            t0 = time.perf_counter()
            s, rec = _eval_model(src, items, st.ref, None, out / "eval" / st.name / cond, rag, cfg,
                                 cache, recall and not rag, log)
            t_eval += time.perf_counter() - t0
            rows.append({"start": st.name, "kind": st.kind, "n": st.n, "condition": cond,
                         "seeds": None, "samples": {qt: [s[qt]] for qt in QTYPES}, "recall": rec})
        per_seed: dict[str, list] = {qt: [] for qt in QTYPES}
        recs, metas = [], []
        for seed in cfg.stage.seeds:
            pairs, task, cell = facts[(st.name, seed)]
            t0 = time.perf_counter()
            meta = train_cell(st.ref, task, len(pairs), seed, cell, recipe=recipe)
            t_train += time.perf_counter() - t0
            metas.append({"seed": seed, "dir": str(cell), "steps": meta.get("steps"),
                          "examples": len(pairs), "final_loss": meta.get("final_loss"),
                          "train_wall_s": meta.get("train_wall_s")})
            log(f"{st.name} seed {seed}: facts stage {meta.get('steps')} steps on {len(pairs)} "
                f"examples, final loss {meta.get('final_loss')}")
            ckpt = cell / "ckpt"
            if meta.get("checkpoint_kind") == "lora":
                gen_ref, adapter = st.ref, str(ckpt)
            else:
                gen_ref, adapter = str(ckpt), None
            t0 = time.perf_counter()
            s, rec = _eval_model(src, items, gen_ref, adapter, out / "eval" / st.name / f"injected-s{seed}",
                                 False, cfg, cache, recall, log)
            t_eval += time.perf_counter() - t0
            for qt in QTYPES:
                per_seed[qt].append(s[qt])
            if rec is not None:
                recs.append(rec)
        mrec = ({k: float(np.mean([r[k] for r in recs])) for k in ("corpus", "new")} if recs else None)
        rows.append({"start": st.name, "kind": st.kind, "n": st.n, "condition": "injected",
                     "seeds": list(cfg.stage.seeds), "samples": per_seed, "recall": mrec,
                     "facts_stage": metas})
    order = {"injected": 0, "before": 1, "retrieval": 2}
    rows.sort(key=lambda r: order[r["condition"]])
    table = build_table(cfg, src, items, rows)
    timings.update({"facts_train_s": t_train, "eval_s": t_eval, "total_s": time.perf_counter() - t_all})
    table["timings"] = timings
    table["facts_recipe"] = recipe.model_dump(mode="json")
    kd = out / "knowledge"
    atomic_write_json(kd / "table.json", table)
    atomic_write_text(kd / "table.md", table_markdown(table))
    log(f"wrote {kd / 'table.json'} and table.md ({timings['total_s']:.0f}s)")
    return table


__all__ = ["MixTask", "QATask", "Start", "build_table", "facts_mix", "facts_recipe",
           "run_knowledge", "starting_points"]
