"""Fact sources for the knowledge experiment: the toy world's held-out people, or a user file.

A source gives (1) the new facts, each with one or more statements (paraphrases) to finetune
on; (2) DIRECT questions (answerable from one new fact) and MULTIHOP questions (a new fact
combined with knowledge the base model already has), each naming the ``fact_ids`` it needs;
(3) the prompt of a question, closed-book or with its facts in the prompt (the retrieval
baseline); (4) replay text (toy: fresh corpus documents; file: its ``replay`` lines) and
answer-format examples about KNOWN entities (toy: direct and two-hop questions about corpus
pool people, alternating, so every starting point sees both answer formats); (5) toy only:
corpus facts whose cloze recall measures forgetting.

Toy source (``facts: toy``): the held-out people of ``World.generate(world_seed)`` (never in
the pretraining corpus), through ``toyworld.tasks.ToyKnowledge``: statements are the 4
paraphrase templates per fact, questions its ``direct`` and ``multihop`` test splits, format
examples its ``direct`` and ``multihop`` training pools alternating (questions about corpus
people, whose facts the model knows).

File source: JSONL, one object per line with a ``type``; or JSON ``{"facts": [...],
"direct": [...], "multihop": [...], "replay": [...], "format": [...]}`` (schema in
docs/knowledge.md). Prompts are ``"Question: {q}\\nAnswer:"`` (with ``"{facts}\\n\\n"``
before it for retrieval); the response is scored as ``"Answer:" + response`` with the
multi-hop scorer (em, f1, contains).

Not handled: chat templates (every starting point gets the same plain prompt), several gold
answers per fact statement, facts that contradict the base model's knowledge (updates),
multi-turn questions.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import InputError
from ..tasks.base import GenSpec, Item

QTYPES = ("direct", "multihop")


@dataclass
class Fact:
    id: str
    statements: list[str]
    triple: tuple[str, str, str] | None = None  # toy only


@dataclass
class Source:
    """What the experiment needs from a facts source (built by ``toy_source``/``file_source``)."""

    kind: str
    facts: list[Fact]
    questions: dict[str, list[Item]]
    gen: GenSpec
    answer_cue: str = ""  # appended to a question prompt ("Answer:" for file sources)
    replay_texts: list[str] = field(default_factory=list)
    format_pairs: list[tuple[str, str, str]] = field(default_factory=list)  # (id, prompt, completion)
    corpus_recall: list[tuple[str, str, str]] = field(default_factory=list)  # toy: (s, r, o)
    world: Any = None
    path: str | None = None

    def fact_by_id(self) -> dict[str, Fact]:
        return {f.id: f for f in self.facts}

    def statement_pairs(self, paraphrases: int | None) -> list[tuple[str, str, str]]:
        """(id, prompt, completion) fact-statement training pairs: empty prompt, loss on all."""
        out = []
        for f in self.facts:
            for j, s in enumerate(f.statements[:paraphrases]):
                out.append((f"fact/{f.id}/{j}", "", s))
        return out

    def context(self, item: Item) -> str:
        by = self.fact_by_id()
        return " ".join(by[i].statements[0] for i in item.meta.get("fact_ids", []) if i in by)

    def prompt(self, item: Item, retrieval: bool = False) -> str:
        q = f"Question: {item.question}\n{self.answer_cue}"
        if not retrieval:
            return q
        ctx = self.context(item)
        return f"{ctx}\n{q}" if self.kind == "toy" else f"{ctx}\n\n{q}"

    def score(self, item: Item, response: str) -> dict:
        from ..tasks.multihop import score_answer

        text = f"Answer:{response}" if self.answer_cue else response
        return score_answer(text, item.target)

    def corpus_replay(self, n: int, seed: int) -> list[str]:
        """``n`` replay texts (toy: freshly drawn corpus documents without arithmetic)."""
        if n <= 0:
            return []
        if self.kind == "toy":
            from ..toyworld.corpus import build_corpus

            docs, _ = build_corpus(self.world, 40 * n + 200, seed=10_000 + seed, math_share=0.0)
            return docs[:n]
        if not self.replay_texts:
            return []
        rng = random.Random(f"knowledge-replay-{seed}")
        return [self.replay_texts[i % len(self.replay_texts)]
                for i in rng.sample(range(max(n, len(self.replay_texts))), n)]


# --------------------------------------------------------------------------- toy
def toy_source(world_seed: int = 0, limit: int | None = None, recall: int = 150) -> Source:
    """The toy world's held-out people as new facts (see module docstring)."""
    from ..toyworld.pretrain import recall_sets
    from ..toyworld.tasks import ToyKnowledge
    from ..toyworld.world import CHAINS, TEMPLATES, render_fact

    facts_task = ToyKnowledge(split="facts", seed=world_seed)
    triples = facts_task.facts()
    if limit is not None:
        triples = triples[:limit]
    facts = [Fact(id=f"{s}|{r}", statements=[render_fact(s, r, o, t) for t in range(len(TEMPLATES[r]))],
                  triple=(s, r, o)) for s, r, o in triples]
    ids = {f.id for f in facts}
    questions: dict[str, list[Item]] = {}
    for qt in QTYPES:
        task = ToyKnowledge(split=qt, seed=world_seed)
        items = []
        for it in task.test_items():
            rel = it.meta["relation"] if qt == "direct" else CHAINS[it.meta["chain"]][0]
            fid = f"{it.meta['person']}|{rel}"
            if fid in ids:
                items.append(Item(id=it.id, question=it.question, target=it.target,
                                  meta={**it.meta, "fact_ids": [fid]}))
        questions[qt] = items
    # format examples: direct and two-hop questions about CORPUS pool people, alternating
    per = []
    for qt in QTYPES:
        t = ToyKnowledge(split=qt, seed=world_seed)
        per.append([(f"format/{it.id}", *t.training_pair(it)) for it in t.train_items()])
    fmt = [p for pair in zip(*per) for p in pair]
    corpus = recall_sets(facts_task.world, n=recall)["corpus"] if recall else []
    return Source(kind="toy", facts=facts, questions=questions, gen=facts_task_gen(),
                  format_pairs=fmt, corpus_recall=corpus, world=facts_task.world)


def facts_task_gen() -> GenSpec:
    from ..toyworld.tasks import ToyKnowledge

    return ToyKnowledge.gen  # the QA splits' GenSpec (48 new tokens, stop at "Question:")


# --------------------------------------------------------------------------- file
_TYPES = ("fact", "direct", "multihop", "replay", "format", "note")


def file_source(path: str | Path, limit: int | None = None, need_fact_ids: bool = True) -> Source:
    """Read a facts file (JSONL records with ``type``, or one JSON object of lists)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "facts file not found", field="facts")
    recs = _records(p)
    facts: list[Fact] = []
    qs: dict[str, list[Item]] = {"direct": [], "multihop": []}
    replay: list[str] = []
    fmt: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for rec, line, fld in recs:
        def bad(reason: str, key: str | None = None) -> InputError:
            return InputError(p, reason, line=line, field=f"{fld}.{key}" if fld and key else (key or fld))

        t = rec.get("type")
        if t not in _TYPES:
            raise bad(f"type must be one of {', '.join(_TYPES)}", "type")
        if t == "note":  # free text (e.g. a provenance note), ignored
            continue
        if t == "fact":
            fid = _str(rec, "id", bad)
            if fid in seen:
                raise bad(f"duplicate id {fid!r}", "id")
            seen.add(fid)
            stmts = [_str(rec, "text", bad)]
            para = rec.get("paraphrases", [])
            if not isinstance(para, list) or not all(isinstance(x, str) and x.strip() for x in para):
                raise bad("must be a list of non-empty strings", "paraphrases")
            facts.append(Fact(id=fid, statements=stmts + [x.strip() for x in para]))
        elif t in ("direct", "multihop"):
            q = _str(rec, "question", bad)
            ans = rec.get("answer")
            golds = [ans] if isinstance(ans, str) else ans
            if not isinstance(golds, list) or not golds or not all(isinstance(g, str) and g.strip()
                                                                   for g in golds):
                raise bad("must be a non-empty string or list of strings (aliases)", "answer")
            fids = rec.get("fact_ids")
            if fids is None and (t == "multihop" or need_fact_ids):
                raise bad("missing: the ids of the facts this question needs", "fact_ids")
            if fids is not None and (not isinstance(fids, list) or not fids
                                     or not all(isinstance(x, str) for x in fids)):
                raise bad("must be a non-empty list of fact ids", "fact_ids")
            qid = str(rec.get("id", f"{t}/{len(qs[t])}"))
            qs[t].append(Item(id=qid, question=q, target=[g.strip() for g in golds],
                              meta={"fact_ids": list(fids or []), "line": line}))
        elif t == "replay":
            replay.append(_str(rec, "text", bad))
        else:
            q, a = _str(rec, "question", bad), _str(rec, "answer", bad)
            fmt.append((f"format/{len(fmt)}", f"Question: {q}\nAnswer:", f" {a}"))
    if not facts:
        raise InputError(p, "no facts (records with type 'fact')", field="type")
    if limit is not None:
        facts = facts[:limit]
    ids = {f.id for f in facts}
    for t, items in qs.items():
        for it in items:
            unknown = [i for i in it.meta["fact_ids"] if i not in seen]
            if unknown:
                raise InputError(p, f"unknown fact id {unknown[0]!r}", line=it.meta["line"],
                                 field="fact_ids")
        qs[t] = [it for it in items if set(it.meta["fact_ids"]) <= ids]
    if not qs["direct"] and not qs["multihop"]:
        raise InputError(p, "no questions (records with type 'direct' or 'multihop')", field="type")
    return Source(kind="file", facts=facts, questions=qs, answer_cue="Answer:",
                  gen=GenSpec(max_new_tokens=32, stop=("\n", "Question:")),
                  replay_texts=replay, format_pairs=fmt, path=str(p))


def _str(rec: dict, key: str, bad: Any) -> str:
    v = rec.get(key)
    if not isinstance(v, str) or not v.strip():
        raise bad("missing or not a non-empty string", key)
    return v.strip()


def _records(p: Path) -> list[tuple[dict, int | None, str | None]]:
    """(record, line, field prefix) from JSONL (line numbers) or JSON (field paths)."""
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(p, f"not valid JSON ({e.msg})", line=e.lineno) from None
        if not isinstance(data, dict):
            raise InputError(p, "expected an object with lists facts, direct, multihop", line=1)
        out = []
        kinds = {"facts": "fact", "direct": "direct", "multihop": "multihop", "replay": "replay",
                 "format": "format"}
        for key in data:
            if key not in kinds:
                raise InputError(p, f"unknown key (allowed: {', '.join(kinds)})", field=key)
            if not isinstance(data[key], list):
                raise InputError(p, "must be a list", field=key)
            for i, r in enumerate(data[key]):
                r = {"text": r} if key == "replay" and isinstance(r, str) else r
                if not isinstance(r, dict):
                    raise InputError(p, "expected an object", field=f"{key}[{i}]")
                out.append(({**r, "type": kinds[key]}, None, f"{key}[{i}]"))
        return out
    from ..io import read_jsonl

    rows: list[tuple[dict, int | None, str | None]] = []
    with open(p, encoding="utf-8") as f:
        lines = [i for i, ln in enumerate(f, 1) if ln.strip()]
    for rec, line in zip(read_jsonl(p), lines):
        rows.append((rec, line, None))
    return rows


__all__ = ["Fact", "QTYPES", "Source", "file_source", "toy_source"]
