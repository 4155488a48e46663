"""Fact sources for the knowledge experiment: the toy world's new people, or a user file.

A source gives (1) the new facts, each with one or more statements (paraphrases) to finetune
on; (2) DIRECT questions (answerable from one new fact) and MULTIHOP questions (a new fact
combined with knowledge the base model already has), each naming the ``fact_ids`` it needs;
(3) the prompt of a question, closed-book or with its facts in the prompt (the retrieval
baseline); (4) replay text (toy: fresh corpus documents; file: its ``replay`` lines) and
answer-format examples about KNOWN entities (toy: direct and two-hop questions about corpus
pool people, alternating, so every starting point sees both answer formats); (5) toy only:
corpus facts whose cloze recall measures forgetting.

Toy source (``facts: toy``): built in ``knowledge.toy`` (new people, bios, QA people and test
people); it fills the same ``Source``.

A source's facts come in UNITS stated together (toy: a person's three facts; file: each fact
alone): ``fact_documents`` writes each unit in several variants (statement choice and order)
and repeats them to a number of exposures; ``qa_examples`` draws question/answer pairs from
``qa_pool`` (toy: about the QA people).

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

from ..io import InputError, read_text_input
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
    # groups of facts stated together in one document (toy: a person's 3 facts; file: each fact)
    units: list[tuple[str, list[Fact]]] = field(default_factory=list)
    # QA pairs about facts of the stage (toy: the QA people): question key -> (prompt, completion)
    # variants (wordings and wrappers)
    qa_pool: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    qa_people: list[str] = field(default_factory=list)

    def fact_by_id(self) -> dict[str, Fact]:
        return {f.id: f for f in self.facts}

    def test_facts(self) -> list[Fact]:
        """The facts some test question needs (toy: the test people's, not the QA people's)."""
        need = {i for items in self.questions.values() for it in items for i in it.meta.get("fact_ids", [])}
        return [f for f in self.facts if f.id in need]

    def fact_documents(self, paraphrases: int | None, exposures: int | None, seed: int
                       ) -> list[tuple[str, str, str]]:
        """(id, "", text) documents stating the facts: per unit, ``paraphrases`` distinct
        documents (each fact of the unit in one of its statements, the facts in a random
        order; fewer when the unit has fewer variants), cycled (reshuffled each round) to
        ``exposures`` documents, so each fact is seen ``exposures`` times. ``exposures``
        None: each variant once. ``paraphrases`` None: a fresh random variant per exposure."""
        rng = random.Random(f"knowledge-docs-{seed}")
        out = []
        for uid, facts in self.units:
            n_var = 1
            for k, f in enumerate(facts, 1):
                n_var *= len(f.statements) * k  # statement choices x orders
            want = n_var if paraphrases is None else min(paraphrases, n_var)
            if paraphrases is None and exposures is not None:
                docs = [_variant(facts, rng) for _ in range(exposures)]
            else:
                seen: dict[str, None] = {}
                while len(seen) < want:
                    seen.setdefault(_variant(facts, rng))
                variants = list(seen)
                docs = list(variants)
                while exposures is not None and len(docs) < exposures:
                    docs += rng.sample(variants, len(variants))
                docs = docs[:exposures] if exposures is not None else docs
            out += [(f"fact/{uid}/{j}", "", d) for j, d in enumerate(docs)]
        return out

    def qa_examples(self, per_question: int, seed: int) -> list[tuple[str, str, str]]:
        """``per_question`` (id, prompt, completion) pairs per question of ``qa_pool``, its
        wordings cycled in a seeded order."""
        rng = random.Random(f"knowledge-qa-examples-{seed}")
        out = []
        for key, variants in self.qa_pool.items():
            picks: list[tuple[str, str]] = []
            while len(picks) < per_question:
                picks += rng.sample(variants, len(variants))
            out += [(f"qa/{key}/{j}", p, c) for j, (p, c) in enumerate(picks[:per_question])]
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
        def bad(reason: str, key: str | None = None, line: int | None = line, fld: str | None = fld) -> InputError:
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
                  units=[(f.id, [f]) for f in facts],
                  gen=GenSpec(max_new_tokens=32, stop=("\n", "Question:")),
                  replay_texts=replay, format_pairs=fmt, path=str(p))


def _variant(facts: list[Fact], rng: random.Random) -> str:
    order = rng.sample(facts, len(facts))
    return " ".join(rng.choice(f.statements) for f in order)


def _str(rec: dict, key: str, bad: Any) -> str:
    v = rec.get(key)
    if not isinstance(v, str) or not v.strip():
        raise bad("missing or not a non-empty string", key)
    return v.strip()


def _records(p: Path) -> list[tuple[dict, int | None, str | None]]:
    """(record, line, field prefix) from JSONL (line numbers) or JSON (field paths)."""
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(read_text_input(p))
        except json.JSONDecodeError as e:
            raise InputError(p, f"not valid JSON ({e.msg})", line=e.lineno) from None
        if not isinstance(data, dict):
            raise InputError(p, "expected an object with lists facts, direct, multihop", line=1)
        out: list[tuple[dict, int | None, str | None]] = []
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

    return [(rec, line, None) for line, rec in read_jsonl(p, numbered=True)]


__all__ = ["Fact", "QTYPES", "Source", "file_source"]
