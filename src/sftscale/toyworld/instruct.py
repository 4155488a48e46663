"""``toy-instruct``: IFEval-style verifiable instructions applied to answers about the world.

An item asks a direct question about a corpus person (``world.DIRECT_QUESTIONS``) followed by
one style instruction and, on half of the items, a word bound (in either order); prompt
``"Question: Where does Ada Baker live? Use at most 9 words. End with the phrase 'That is
all.'\nResponse:\n"``. The gold response is the fact sentence (``render_fact`` template 0) with
the instructions applied by code (``apply``): ``"Ada Baker lives in Amsk. That is all."``.

Instructions (lm-eval's IFEval instruction ids, scored by ``tasks.ifeval.score_response``):
the style instruction is one of ``TASK_KINDS``: end phrase (``startend:end_checker``),
postscript (``detectable_content:postscript``, ``P.S.``), a required word
(``keywords:existence``), double quotes (``startend:quotation``); the word bound is
``length_constraints:number_words`` ("less than" M + 1; M = the gold's word count plus 0-3),
never alone (a bare answer meets it). Each style instruction has ONE phrase in the task
(``TASK_END``, ``TASK_PS``, ``TASK_KEYWORD``); the corpus uses all of ``END_PHRASES``,
``POSTSCRIPTS`` and ``KEYWORDS``.

Why this set (toy-S, default recipe, N = 64, first 60 test items, seeds 0/1; docs/toy-models.md):
- task v1 drew 2-3 of six kinds with 4-5 phrases each: format rate 0.15/0.22 at N = 64.
  The tiny models do not copy a phrase from the prompt after 64 examples (one kind plus the
  bound, 4-5 phrases each: 0.48/0.48; one phrase each: 0.98/0.95); by N = 1,024 they do (1.00).
- lowercase (``change_case:english_lowercase``, in ``KINDS`` for the corpus vocabulary) is
  not drawn: with word-level tokens it rewrites every token of the answer, which toy-S learns
  only by N ~ 1,000 (failed on 11 of 11 items at N = 64, on 0 of 12 at N = 1,024), so it
  measures substance rather than format here. It would also need langdetect (IFEval's case
  checkers require English, and short sentences of invented names often fail it).
- 2-3 combined instructions (one phrase each, no lowercase): 0.58-0.82 at N = 64.

Scores: the IFEval fields (strict and loose, prompt and instruction level; aggregates by
``tasks.ifeval.aggregate_records``), ``fact_ok`` = the object is named (any case) and no other
entity of its kind is; ``format_ok`` = non-empty and every instruction followed (loose);
``correct`` = every instruction followed (strict) AND ``fact_ok``. Loose is IFEval's: an
instruction passes if any of 8 variants passes (first/last line dropped, ``*`` removed), so on
two-line answers (a postscript) it forgives a broken first or last line.

Split, by person: train items ask about the world's "pool" people, test items about its "test"
people (the toy-multihop split); both know the facts from pretraining, no test fact is in the
finetuning pool. 6 distinct prompts per (person, relation, question wording).

``toy-instruct-ood`` (``ToyInstructOOD``, evaluation only): the same prompt, phrases and
scoring, but TWO style instructions per item (``OOD_PAIRS``: every pair of ``TASK_KINDS``
whose gold response can meet both; end phrase + quotes cannot, the quote would end it), with
the word bound on half of them. toy-instruct's items carry one style instruction each, so no
finetuning item combines two. Test people, one item per (person, relation, wording).

Corpus (``corpus_documents``): prose about corpus people that uses the constraint words
(facts retold in lowercase, word counts of sentences, notes that end with the end phrases,
postscripts, quoted sentences, the keywords), never the ``Question: ... Response:`` format.
Not handled: other IFEval instructions (case, sentence counts, JSON, bullets, sections...),
other wordings or phrases of the instructions, questions about cities or companies.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from ..tasks import register_task
from ..tasks.base import GenSpec, Item, Task, mean_metrics
from .world import (
    CITIES,
    COMPANIES,
    DIRECT_QUESTIONS,
    PERSON_RELATIONS,
    TEMPLATES,
    Person,
    World,
    all_names,
    render_fact,
)

END_PHRASES: tuple[str, ...] = ("That is all.", "Hope this helps.", "Any other questions?",
                                "Thank you.")
POSTSCRIPTS: tuple[str, ...] = ("I hope this helps.", "Ask me again any time.",
                                "This is from my notes.", "Have a nice day.")
KEYWORDS: tuple[str, ...] = ("indeed", "surely", "certainly", "clearly", "truly")
# kind -> (IFEval instruction id, prompt sentence; {p} end phrase, {w} keyword, {m} words);
# all six shape the corpus vocabulary, the task draws TASK_KINDS and "words" (module docstring)
KINDS: dict[str, tuple[str, str]] = {
    "lower": ("change_case:english_lowercase", "Use lowercase letters only."),
    "words": ("length_constraints:number_words", "Use at most {m} words."),
    "end": ("startend:end_checker", "End with the phrase '{p}'"),
    "ps": ("detectable_content:postscript", "Add a postscript starting with P.S."),
    "keyword": ("keywords:existence", "Include the word {w}."),
    "quote": ("startend:quotation", "Wrap your whole answer in double quotes."),
}
TASK_KINDS: tuple[str, ...] = ("end", "ps", "keyword", "quote")
TASK_END, TASK_PS, TASK_KEYWORD = END_PHRASES[0], POSTSCRIPTS[0], KEYWORDS[0]


def count_words(text: str) -> int:
    """Words as IFEval counts them (``nltk.RegexpTokenizer(r"\\w+")``)."""
    return len(re.findall(r"\w+", text))


# --- corpus ---------------------------------------------------------------------------------
def _person_fact(p, rng: random.Random) -> str:
    r = rng.choice(PERSON_RELATIONS)
    return render_fact(p.name, r, p.obj(r), rng=rng)


def _doc_case(world: World, rng: random.Random) -> str:
    facts = " ".join(_person_fact(rng.choice(world.corpus_people), rng) for _ in range(rng.randint(1, 2)))
    intro = rng.choice(("In small letters this reads:", "The same note in lowercase:",
                        "Someone typed it all in lowercase:"))
    return f"{facts} {intro} {facts.lower()}"


def _doc_count(world: World, rng: random.Random) -> str:
    s = _person_fact(rng.choice(world.corpus_people), rng)
    n = count_words(s)
    return rng.choice((f'The sentence "{s}" has {n} words.', f"{s} That sentence is {n} words long.",
                       f'Count the words of "{s}" and you get {n}.'))


def _doc_letter(world: World, rng: random.Random) -> str:
    p = rng.choice(world.corpus_people)
    body = " ".join(_person_fact(p, rng) for _ in range(rng.randint(1, 2)))
    first = p.name.split()[0]
    kind = rng.randrange(4)
    if kind == 0:
        return f"Dear {first}. {body} {rng.choice(END_PHRASES)}"
    if kind == 1:
        return f"{body}\nP.S. {rng.choice(POSTSCRIPTS)}"
    if kind == 2:
        who = rng.choice(world.corpus_people).name
        return f'{who} wrote "{body}" in a short note.'
    w = rng.choice(KEYWORDS)
    return f"{w.capitalize()} {body} That is {w} so."


def corpus_documents(world: World, rng: random.Random, n: int) -> list[str]:
    """``n`` short prose documents about corpus people using the constraint vocabulary."""
    makers = (_doc_case, _doc_count, _doc_letter)
    return [" ".join(rng.choice(makers)(world, rng) for _ in range(rng.randint(1, 3))) for _ in range(n)]


def _case_words() -> list[str]:
    words = [*all_names(), *(w for ts in TEMPLATES.values() for t in ts for w in re.findall(r"[A-Za-z]+", t))]
    words += [w for t in (*END_PHRASES, *POSTSCRIPTS, *KEYWORDS) for w in re.findall(r"[A-Za-z]+", t)]
    words += ["P", "S", "Dear", "wrote", "note", "short", "so", "That", "is"]
    return words


def vocabulary_texts() -> list[str]:
    """Texts whose pieces the toy tokenizer must hold: every name and fact word in lowercase
    and capitalised (with and without a leading space), the instruction sentences, end phrases,
    postscripts, keywords and the corpus's framing sentences."""
    texts = []
    for w in _case_words():
        for v in (w, w.lower(), w.capitalize()):
            texts += [v, " " + v]
    texts += [s.format(p=p, w=w, m=12) for _, s in KINDS.values() for p in END_PHRASES for w in KEYWORDS]
    texts += ["Question: X?\nResponse:\n", "P.S.", "p.s.", '"X."', *END_PHRASES, *POSTSCRIPTS]
    framing = ["In small letters this reads:", "The same note in lowercase:", "Someone typed it all in lowercase:",
              'The sentence "X" has 5 words.', "X That sentence is 5 words long.",
              'Count the words of "X" and you get 5.', "Dear X.", 'X wrote "X" in a short note.',
              "That is indeed so."]
    texts += framing + [" " + t for t in framing]
    texts += [PROMPT.format(q=t.replace("{p}", "X")) for ts in DIRECT_QUESTIONS.values() for t in ts]
    texts += [" " + s.format(p=p, w=w, m=12) for _, s in KINDS.values() for p in END_PHRASES for w in KEYWORDS]
    return texts


# --- items ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """One instruction set: the kinds in prompt order and their parameters."""

    kinds: tuple[str, ...]
    end: str = ""
    ps: str = ""
    keyword: str = ""
    extra_words: int = 0  # the word bound is the gold's word count plus this


def draw_config(rng: random.Random) -> Config:
    """One of ``TASK_KINDS``, with the word bound on half of the items (either order)."""
    kinds = (rng.choice(TASK_KINDS), "words") if rng.random() < 0.5 else (rng.choice(TASK_KINDS),)
    if rng.random() < 0.5:
        kinds = kinds[::-1]
    return Config(kinds=kinds, end=TASK_END, ps=TASK_PS, keyword=TASK_KEYWORD,
                  extra_words=rng.randint(0, 3))


def apply(fact: str, cfg: Config) -> str:
    """The gold response: ``fact`` with the instructions of ``cfg`` applied."""
    text = fact
    if "keyword" in cfg.kinds:
        text = f"{cfg.keyword.capitalize()} {text}"
    if "ps" in cfg.kinds:
        text += f"\nP.S. {cfg.ps}"
    if "end" in cfg.kinds:
        text += f" {cfg.end}"
    if "quote" in cfg.kinds:
        text = f'"{text}"'
    if "lower" in cfg.kinds:
        text = text.lower()
    return text


def instructions(cfg: Config, gold: str) -> tuple[str, list[str], list[dict]]:
    """(prompt sentences, IFEval instruction ids, kwargs) of ``cfg`` for its ``gold``."""
    m = count_words(gold) + cfg.extra_words
    sentences: list[str] = []
    ids: list[str] = []
    kwargs: list[dict] = []
    for k in cfg.kinds:
        iid, sentence = KINDS[k]
        sentences.append(sentence.format(p=cfg.end, w=cfg.keyword, m=m))
        ids.append(iid)
        by_kind: dict[str, dict[str, Any]] = {
            "words": {"relation": "less than", "num_words": m + 1}, "end": {"end_phrase": cfg.end},
            "ps": {"postscript_marker": "P.S."}, "keyword": {"keywords": [cfg.keyword]}}
        kwargs.append(by_kind.get(k, {}))
    return " ".join(sentences), ids, kwargs


def make_item(p: Person, rel: str, t: int, cfg: Config, split: str, i: int) -> Item:
    fact = render_fact(p.name, rel, p.obj(rel), 0)
    gold = apply(fact, cfg)
    text, ids, kwargs = instructions(cfg, gold)
    q = f"{DIRECT_QUESTIONS[rel][t].format(p=p.name)} {text}"
    return Item(id=f"toy-instruct/{split}/{p.name.replace(' ', '_')}/{rel}/{t}/{i}", question=q,
                target={"instruction_id_list": ids, "kwargs": kwargs, "answer": p.obj(rel), "relation": rel},
                completion=gold, meta={"person": p.name, "kinds": list(cfg.kinds)})


@lru_cache(maxsize=4)
def instruct_items(seed: int = 0, per_question: int = 6) -> dict[str, tuple[Item, ...]]:
    """Candidate items by split ("train": pool people, "test": test people), each shuffled;
    ``per_question`` distinct instruction sets per (person, relation, wording)."""
    world = World.generate(seed)
    out: dict[str, tuple[Item, ...]] = {}
    for split, group in (("train", "pool"), ("test", "test")):
        items = []
        for p in world.group(group):
            for rel in PERSON_RELATIONS:
                for t in range(len(DIRECT_QUESTIONS[rel])):
                    rng = random.Random(f"toy-instruct|{seed}|{p.name}|{rel}|{t}")
                    seen: set = set()
                    while len(seen) < per_question:  # distinct prompts (unused parameters aside)
                        it = make_item(p, rel, t, draw_config(rng), split, len(seen))
                        if it.question not in seen:
                            seen.add(it.question)
                            items.append(it)
        random.Random(f"toy-instruct-{split}-{seed}").shuffle(items)
        out[split] = tuple(items)
    return out


def fact_ok(response: str, answer: str, relation: str) -> bool:
    """The object is named (any case) and no other entity of its kind is."""
    pool = COMPANIES if relation == "works_for" else CITIES
    words = set(re.findall(r"[a-z]+", response.lower()))
    return {e for e in pool if e.lower() in words} == {answer}


def score_item(item: Item, response: str) -> dict:
    """IFEval fields (strict/loose) plus ``fact_ok``; see the module docstring for format/correct."""
    from ..tasks.ifeval import score_response

    t = item.target
    rec = score_response(item.question, t["instruction_id_list"], t["kwargs"], response)
    rec["fact_ok"] = fact_ok(response, t["answer"], t["relation"])
    rec["format_ok"] = bool(response.strip()) and rec["prompt_level_loose"]
    rec["correct"] = rec["prompt_level_strict"] and rec["fact_ok"]
    return rec


@register_task("toy-instruct")
class ToyInstruct(Task):
    """Verifiable instructions on questions about the world; see the module docstring.
    Options: ``n_test`` (test items; default 2,000), ``seed``, ``limit``."""

    name = "toy-instruct"
    version = "3"  # v3: test people split from pool people by first name
    primary_metric = "accuracy"
    license = "Apache-2.0 (generated)"
    gen = GenSpec(max_new_tokens=48, stop=("<|endoftext|>", "\nQuestion:"))

    def __init__(self, n_test: int = 2000, seed: int = 0, limit: int | None = None):
        self.n_test, self.seed, self.limit = n_test, seed, limit

    def test_items(self) -> list[Item]:
        want = self.n_test if self.limit is None else min(self.n_test, self.limit)
        return list(instruct_items(self.seed)["test"][:want])

    def train_items(self) -> list[Item]:
        return list(instruct_items(self.seed)["train"])

    def prompt_text(self, item: Item) -> str:
        return PROMPT.format(q=item.question)

    def user_message(self, item: Item) -> str:
        return item.question

    def score(self, item: Item, response: str) -> dict:
        return score_item(item, response)

    role_scheme = "toy-instruct"

    def role_spans(self, item: Item, response: str) -> tuple[list[tuple[int, int, str]], str]:
        """The phrases the instructions require (keyword, postscript line, end phrase, quotes)
        format; the fact sentence content."""
        from ..tasks.roles import CONTENT, instruction_spans

        t = item.target
        return instruction_spans(response, t["instruction_id_list"], t["kwargs"]), CONTENT

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        from ..tasks.ifeval import aggregate_records

        out = aggregate_records(records)
        out.update(mean_metrics([{"fact_ok": bool(r.get("fact_ok"))} for r in records]))
        return out


PROMPT = "Question: {q}\nResponse:\n"


# --- toy-instruct-ood -----------------------------------------------------------------------
#: pairs of style kinds a gold response can meet together ("end" then "quote" cannot: the
#: closing quote would follow the end phrase)
OOD_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (a, b) for i, a in enumerate(TASK_KINDS) for b in TASK_KINDS[i + 1:]
    if {a, b} != {"end", "quote"})


def style_kinds(item: Item) -> list[str]:
    """The style instructions of an item (the word bound left out)."""
    return [k for k in item.meta.get("kinds", []) if k != "words"]


@lru_cache(maxsize=4)
def instruct_ood_items(seed: int = 0) -> tuple[Item, ...]:
    """toy-instruct-ood's items: test people, two style kinds each (``OOD_PAIRS``)."""
    world = World.generate(seed)
    items = []
    for p in world.group("test"):
        for rel in PERSON_RELATIONS:
            for t in range(len(DIRECT_QUESTIONS[rel])):
                rng = random.Random(f"toy-instruct-ood|{seed}|{p.name}|{rel}|{t}")
                kinds: tuple[str, ...] = rng.choice(OOD_PAIRS)
                if rng.random() < 0.5:
                    kinds = (*kinds, "words")
                kinds = tuple(rng.sample(kinds, len(kinds)))
                cfg = Config(kinds=kinds, end=TASK_END, ps=TASK_PS, keyword=TASK_KEYWORD,
                             extra_words=rng.randint(0, 3))
                it = make_item(p, rel, t, cfg, "test", 0)
                items.append(Item(id=it.id.replace("toy-instruct/", "toy-instruct-ood/", 1),
                                  question=it.question, target=it.target,
                                  completion=it.completion, meta=it.meta))
    random.Random(f"toy-instruct-ood-test-{seed}").shuffle(items)
    return tuple(items)


@register_task("toy-instruct-ood")
class ToyInstructOOD(ToyInstruct):
    """toy-instruct's format with two style instructions per item (module docstring).
    Options: ``n_test`` (default: all, 402), ``seed``, ``limit``."""

    name = "toy-instruct-ood"
    version = "1"

    def test_items(self) -> list[Item]:
        want = self.n_test if self.limit is None else min(self.n_test, self.limit)
        return list(instruct_ood_items(self.seed)[:want])

    def train_items(self) -> list[Item]:
        from .tasks import no_training_pool

        raise no_training_pool(self.name, "toy-instruct")
