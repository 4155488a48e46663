"""``toy-code``: a specification in words -> a small Python function, scored in the sandbox.

Every item is one *derivation*: a family (``FAMILIES``: integer, list and world-record
functions) with its constants (a number, a company, a city or a country). The task's spec
sentence, the reference code and the corpus docstrings are all rendered from the same
derivation, so every reference is correct by construction; the hidden tests are the
reference's own outputs on a few inputs (run in-process: the reference is our code).

Prompt ``"Task: Write a Python function solve(x) that returns x plus 7.\\nSolution:\\n"``;
completion a fenced block::

    ```python
    def solve(x):
        return x + 7
    ```

World-record functions use the documented helpers ``employer(name)``, ``birthplace(name)``,
``home(name)`` (a person's city of residence), ``country(city)`` and ``origin(company)`` (the
country a company was founded in). In the sandbox the candidate runs after a hidden preamble
that defines them from the world's records (``preamble``).

Scoring (``ToyCode.score_many``): the program is the first fenced python block that parses and
defines the entry point (``humaneval.extract_program``); it runs with the HumanEval task's
``check`` harness in ``tasks.sandbox``. ``format_ok`` = such a fenced block exists (a bare
``def`` without a fence is NOT format: the fence never occurs in pretraining, so zero-shot
format is ~0); ``correct`` = format_ok and every hidden test passes.

Record derivations that no corpus person fits (a company without a corpus employee) are left
out: their tests could not tell the spec from its negation. Hidden tests use corpus people only.

Split, by derivation: a derivation (family + constants) is a test derivation when a hash of it
(with the seed) falls under ``TEST_SHARE``; train items come only from the other derivations,
so no test (family, constants) pair is ever seen in finetuning, under either wording (every
family is seen in training).

Sizes (seed 0): 18 families, one entry point (``ENTRY``; the corpus uses all ten
``FUNC_NAMES``), constants from ``task_constants`` (task and corpus), 2 spec wordings per
family: 2,554 train and 2,122 test items; prompt + answer at most 95 tokens. The corpus may
show a test derivation's code under a docstring (that is the knowledge), never its spec sentence.

``toy-code-ood`` (``ToyCodeOOD``, evaluation only): the same prompt, fence and scoring, on
``OOD_FAMILIES``, which combine two operations that no toy-code family combines (x times k
compared with m; the larger of x plus k and m; the sum of xs with k added to each; x minus k
divisible by m). ``op_signature`` names a program's operations; no toy-code derivation has the
signature of an OOD family (tests/test_ood.py).

Corpus (``corpus_documents``): short functions with docstrings (imperative paraphrases that
differ from the task's "returns ..." specs), helper definitions with docstrings, never a fence
and never the ``Task:``/``Solution:`` format. Not handled: specs beyond these families,
multi-function programs, identifiers with underscores (not pieces of the toy tokenizer).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Sequence

from ..tasks import register_task
from ..tasks.base import GenSpec, Item, first_n
from ..tasks.humaneval import HumanEval
from .pieces import count_tokens
from .world import CITIES, COMPANIES, COUNTRIES, World, all_names

FUNC_NAMES: tuple[str, ...] = ("solve", "compute", "calc", "decide", "transform", "process",
                               "evaluate", "handle", "find", "get")
TEST_SHARE = 0.45


@dataclass(frozen=True)
class Family:
    """One kind of function. ``{k}``/``{m}`` numbers, ``{e}`` an entity; ``arg`` the parameter."""

    key: str
    arg: str
    specs: tuple[str, ...]  # task wordings ("returns ...")
    docs: tuple[str, ...]  # corpus docstrings (imperative paraphrases)
    body: tuple[str, ...]  # code lines after the def line (4-space indents added)
    consts: str  # "k", "km", "company", "city", "country"


FAMILIES: tuple[Family, ...] = (
    Family("add", "x", ("returns x plus {k}", "adds {k} to x and returns the result"),
           ("Add {k} to x.", "Give back x increased by {k}."), ("return x + {k}",), "k"),
    Family("sub", "x", ("returns x decreased by {k}", "subtracts {k} from x and returns the result"),
           ("Take {k} away from x.", "Give back x decreased by {k}."), ("return x - {k}",), "k"),
    Family("mul", "x", ("returns x times {k}", "multiplies x by {k} and returns the result"),
           ("Give back {k} times the number x.", "Scale x by {k}."), ("return x * {k}",), "k"),
    Family("affine", "x", ("returns {k} times x plus {m}", "multiplies x by {k}, adds {m} and returns the result"),
           ("Scale x by {k} and then add {m}.", "Give back {m} more than {k} times x."),
           ("return {k} * x + {m}",), "km"),
    Family("greater", "x", ("returns True when x is greater than {k}", "tells whether x is greater than {k}"),
           ("Check whether x is above {k}.", "Say if the number x is bigger than {k}."),
           ("return x > {k}",), "k"),
    Family("divisible", "x", ("returns True when x is divisible by {k}", "tells whether x is divisible by {k}"),
           ("Check whether {k} divides x with no remainder.", "Say if x is a multiple of {k}."),
           ("return x % {k} == 0",), "k"),
    Family("larger", "x", ("returns the larger of x and {k}", "returns x or {k}, whichever is larger"),
           ("Give back x, but never less than {k}.", "Pick the bigger one of x and {k}."),
           ("return max(x, {k})",), "k"),
    Family("sumabove", "xs", ("returns the sum of the numbers in xs that are greater than {k}",
                              "adds up the numbers in xs that are greater than {k}"),
           ("Total of the values in the list xs that are above {k}.",
            "Add together every item of xs bigger than {k}."),
           ("return sum([v for v in xs if v > {k}])",), "k"),
    Family("countabove", "xs", ("returns how many numbers in xs are greater than {k}",
                                "counts the numbers in xs that are greater than {k}"),
           ("Count the values in the list xs that are above {k}.",
            "Number of items of xs bigger than {k}."),
           ("return len([v for v in xs if v > {k}])",), "k"),
    Family("keepbelow", "xs", ("returns the numbers in xs that are less than {k}",
                               "returns a list of the numbers in xs that are less than {k}"),
           ("Keep only the values of the list xs under {k}.", "Drop every item of xs that is {k} or more."),
           ("return [v for v in xs if v < {k}]",), "k"),
    Family("addeach", "xs", ("returns the numbers in xs with {k} added to each",
                             "adds {k} to every number in xs and returns the new list"),
           ("Make a new list with every value of xs increased by {k}.", "Shift each item of xs up by {k}."),
           ("return [v + {k} for v in xs]",), "k"),
    Family("countequal", "xs", ("returns how many times {k} appears in xs",
                                "counts how often the number {k} occurs in xs"),
           ("Count the items of the list xs equal to {k}.", "Number of places where xs holds {k}."),
           ("n = 0", "for v in xs:", "    if v == {k}:", "        n = n + 1", "return n"), "k"),
    Family("worksat", "name", ("returns True when the person called name works for {e}",
                               "tells whether the person called name works for {e}"),
           ("Check whether this person has a job at {e}.", "Say if {e} is the employer of the person."),
           ('return employer(name) == "{e}"',), "company"),
    Family("bornin", "name", ("returns True when the person called name was born in {e}",
                              "tells whether the person called name was born in {e}"),
           ("Check whether this person is a native of {e}.", "Say if {e} is the birthplace of the person."),
           ('return birthplace(name) == "{e}"',), "city"),
    Family("livesincountry", "name", ("returns True when the person called name lives in {e}",
                                      "tells whether the person called name lives in {e}"),
           ("Check whether the home of this person is in {e}.", "Say if the person has a house in {e}."),
           ('return country(home(name)) == "{e}"',), "country"),
    Family("borncountry", "name", ("returns True when the person called name was born in a city of {e}",
                                   "tells whether the person called name was born in {e}"),
           ("Check whether the birthplace of this person lies in {e}.", "Say if the person is a native of {e}."),
           ('return country(birthplace(name)) == "{e}"',), "country"),
    Family("employerfrom", "name", ("returns True when the employer of the person called name was founded in {e}",
                                    "tells whether the company that employs name was founded in {e}"),
           ("Check whether the employer of this person began in {e}.",
            "Say if the company of the person is from {e}."),
           ('return origin(employer(name)) == "{e}"',), "country"),
    Family("countworkers", "names", ("returns how many of the people in names work for {e}",
                                     "counts the people in names who work for {e}"),
           ("Count the persons of the list names employed by {e}.",
            "Number of people in names with a job at {e}."),
           ('return len([p for p in names if employer(p) == "{e}"])',), "company"),
)
FAMILY = {f.key: f for f in FAMILIES}

# The documented helpers: (definition line, docstring, body), as the corpus shows them.
HELPERS: tuple[tuple[str, str, str], ...] = (
    ("def employer(name):", "Give the company that the person called name works for.", "return jobs[name]"),
    ("def birthplace(name):", "Give the city where the person called name was born.", "return births[name]"),
    ("def home(name):", "Give the city where the person called name lives.", "return homes[name]"),
    ("def country(city):", "Give the country that the city lies in.", "return places[city]"),
    ("def origin(company):", "Give the country where the company was founded.", "return origins[company]"),
)


def constants(fam: Family) -> list[tuple]:
    """A family's narrow base range (numbers up to 20): the lower bounds of ``task_constants``
    and the derivations ``vocabulary_texts`` renders. Corpus and task draw from
    ``task_constants``."""
    if fam.consts == "k":
        lo, hi = {"mul": (2, 10), "divisible": (2, 9), "greater": (0, 20), "larger": (0, 20),
                  "sumabove": (0, 12), "countabove": (0, 12), "keepbelow": (1, 12),
                  "addeach": (1, 12), "countequal": (0, 12)}.get(fam.key, (1, 20))
        return [(k,) for k in range(lo, hi + 1)]
    if fam.consts == "km":
        return [(k, m) for k in range(2, 10) for m in range(1, 10)]
    pool = {"company": COMPANIES, "city": CITIES, "country": COUNTRIES}[fam.consts]
    return [(e,) for e in pool]


#: the function every toy-code prompt asks for. Tiny models do not copy a name from the spec
#: into the code: with ten names (FUNC_NAMES) toy-S wrote a correct body under the wrong name
#: (format_rate 0.12 at N = 1,024; renamed, 1.00 and accuracy 0.56). The corpus keeps all ten.
ENTRY = "solve"


def task_constants(fam: Family) -> list[tuple]:
    """The constants of the task and (since corpus v3) of the corpus's functions: the base
    ranges widened (numbers up to 124, k·x+m up to 29·x+29) so that pools with one entry point
    still hold >= 2,000 items each."""
    if fam.consts == "k":
        return [(k,) for k in range(constants(fam)[0][0], 125)]
    if fam.consts == "km":
        return [(k, m) for k in range(2, 30) for m in range(1, 30)]
    return constants(fam)


def _fill(text: str, fam: Family, c: tuple) -> str:
    if fam.consts in ("k", "km"):
        return text.format(k=c[0], m=c[1] if len(c) > 1 else "")
    return text.format(e=c[0])


def render_code(fam: Family, c: tuple, fname: str, doc: str | None = None) -> str:
    """The function's source (4-space indents), with a docstring when ``doc`` is given."""
    lines = [f"def {fname}({fam.arg}):"]
    if doc is not None:
        lines.append(f'    """{doc}"""')
    lines += ["    " + _fill(b, fam, c) for b in fam.body]
    return "\n".join(lines)


def spec_sentence(fam: Family, c: tuple, fname: str, wording: int) -> str:
    return f"Write a Python function {fname}({fam.arg}) that {_fill(fam.specs[wording], fam, c)}."


def completion(fam: Family, c: tuple, fname: str) -> str:
    return f"```python\n{render_code(fam, c, fname)}\n```"


# --- corpus ---------------------------------------------------------------------------------
def _corpus_function(rng: random.Random) -> str:
    """One or two functions with docstrings, over the task's constant range: corpus v2 used the
    narrower ``constants`` (numbers up to 20), and toy-M then miscopied the task's larger numbers
    (``26 * x`` -> ``16 * x``, ``v == 103`` -> ``v == 104``: docs/notes/toyworld.md)."""
    fam = rng.choice(FAMILIES)
    c = rng.choice(task_constants(fam))
    text = render_code(fam, c, rng.choice(FUNC_NAMES), _fill(rng.choice(fam.docs), fam, c))
    if rng.random() < 0.3:  # a second, unrelated function in the same file, when short enough
        fam2 = rng.choice(FAMILIES)
        c2 = rng.choice(task_constants(fam2))
        more = render_code(fam2, c2, rng.choice(FUNC_NAMES), _fill(rng.choice(fam2.docs), fam2, c2))
        if count_tokens(text) + count_tokens(more) <= 118:
            text += "\n\n" + more
    return text


def _corpus_helpers(rng: random.Random) -> str:
    chosen = rng.sample(HELPERS, rng.randint(1, 3))
    return "\n\n".join(f'{d}\n    """{doc}"""\n    {body}' for d, doc, body in chosen)


def _corpus_records(world: World, rng: random.Random) -> str:
    """A record table of a few corpus people, as code (``jobs["Ada Baker"] = "Acmex"``)."""
    people = rng.sample(world.corpus_people, rng.randint(2, 4))
    table, attr = rng.choice((("jobs", "works_for"), ("births", "born_in"), ("homes", "lives_in")))
    return "\n".join(f'{table}["{p.name}"] = "{p.obj(attr)}"' for p in people)


def corpus_documents(world: World, rng: random.Random, n: int) -> list[str]:
    """``n`` short code documents: functions with docstrings (70%), helper definitions (20%),
    record tables of corpus people (10%). Never fenced, never in the task's format."""
    docs = []
    for _ in range(n):
        r = rng.random()
        if r < 0.7:
            docs.append(_corpus_function(rng))
        elif r < 0.9:
            docs.append(_corpus_helpers(rng))
        else:
            docs.append(_corpus_records(world, rng))
    return docs


PROMPT = "Task: {spec}\nSolution:\n"


def vocabulary_texts() -> list[str]:
    """Texts whose pieces the toy tokenizer must hold: every spec, completion and docstring of
    every derivation and function name, the helpers, and the corpus's record tables."""
    texts = [PROMPT.format(spec="x"), "```python\n", "\n```", "True", "False", " True", " False",
             "jobs", "births", "homes", "places", "origins"]
    for fam in FAMILIES:
        for c in constants(fam):
            for w in range(len(fam.specs)):
                texts.append(PROMPT.format(spec=spec_sentence(fam, c, "solve", w)))
            texts += [render_code(fam, c, "solve", _fill(d, fam, c)) for d in fam.docs]
    texts += [f"def {n}(x):" for n in FUNC_NAMES]
    texts += [f'{d}\n    """{doc}"""\n    {body}' for d, doc, body in HELPERS]
    texts += ['["X"] = "Y"', *all_names(), *(" " + n for n in all_names())]  # record tables
    return texts


# --- items ----------------------------------------------------------------------------------
def _helper_namespace(world: World) -> dict:
    """The helpers bound to the world's records (for running references in-process)."""
    jobs = {p.name: p.works_for for p in world.people}
    births = {p.name: p.born_in for p in world.people}
    homes = {p.name: p.lives_in for p in world.people}
    return {"employer": jobs.__getitem__, "birthplace": births.__getitem__, "home": homes.__getitem__,
            "country": world.city_country.__getitem__, "origin": world.company_country.__getitem__}


def preamble(world: World, names: Sequence[str]) -> str:
    """Hidden source defining the helpers over the records of ``names`` (and every city and
    company), run before a candidate in the sandbox."""
    people = {p.name: p for p in world.people}
    tables = {"jobs": {n: people[n].works_for for n in names}, "births": {n: people[n].born_in for n in names},
              "homes": {n: people[n].lives_in for n in names}, "places": dict(world.city_country),
              "origins": dict(world.company_country)}
    lines = [f"{k} = {v!r}" for k, v in tables.items()]
    lines += [f"{d}\n    {body}" for d, _, body in HELPERS]
    return "\n".join(lines) + "\n\n"


def _inputs(fam: Family, c: tuple, world: World, rng: random.Random) -> list[tuple]:
    """Test inputs: around the constant, random values, and for records people who match."""
    if fam.arg == "x":
        near = [c[0] - 1, c[0], c[0] + 1] if fam.consts == "k" else []
        vals = sorted(set(near + [0, 1] + [rng.randint(-10, 40) for _ in range(4)]))
        return [(v,) for v in vals]
    if fam.arg == "xs":
        lists = [[], [c[0]], [rng.randint(0, 15) for _ in range(rng.randint(3, 6))] + [c[0], c[0] + 1]]
        lists += [[rng.randint(0, 15) for _ in range(rng.randint(1, 6))] for _ in range(2)]
        return [(xs,) for xs in lists]
    fn = _reference(fam, c, "f", world)
    people = [p.name for p in world.corpus_people]  # held-out people stay out, even hidden
    if fam.arg == "name":
        hits = [n for n in people if fn(n)]
    else:
        jobs = {p.name: p.works_for for p in world.people}
        hits = [n for n in people if jobs[n] == c[0]]
    others = [n for n in people if n not in set(hits)]
    if fam.arg == "name":
        chosen = rng.sample(hits, min(3, len(hits))) + rng.sample(others, 3)
        return [(n,) for n in chosen]
    groups = []
    for n_hits in (1, 2, 0):
        g = rng.sample(hits, min(len(hits), n_hits)) + rng.sample(others, rng.randint(1, 3))
        rng.shuffle(g)
        groups.append((g,))
    return groups


def matches(fam: Family, c: tuple, world: World) -> bool:
    """False for a record derivation that no corpus person fits (e.g. a company with no
    corpus employee); such derivations are left out of both pools."""
    if fam.arg == "name":
        fn = _reference(fam, c, "f", world)
        return any(fn(p.name) for p in world.corpus_people)
    if fam.arg == "names":
        return any(p.works_for == c[0] for p in world.corpus_people)
    return True


def _reference(fam: Family, c: tuple, fname: str, world: World):
    ns = _helper_namespace(world)
    exec(compile(render_code(fam, c, fname), "<reference>", "exec"), ns)
    return ns[fname]


def _test_code(fam: Family, c: tuple, world: World, rng: random.Random) -> tuple[str, list[str]]:
    """(``check(candidate)`` source with the reference's outputs, names the tests use)."""
    fn = _reference(fam, c, "f", world)
    lines = ["def check(candidate):"]
    names: list[str] = []
    for args in _inputs(fam, c, world, rng):
        expected = fn(*[list(a) if isinstance(a, list) else a for a in args])
        lines.append(f"    assert candidate({', '.join(repr(a) for a in args)}) == {expected!r}")
        for a in args:
            if isinstance(a, str):
                names.append(a)
            elif isinstance(a, list):
                names += [v for v in a if isinstance(v, str)]
    return "\n".join(lines) + "\n", sorted(set(names))


def split_of(fam: Family, c: tuple, seed: int) -> str:
    """"test" for a hashed ``TEST_SHARE`` of the derivations, else "train"."""
    h = int(hashlib.sha256(f"toy-code|{seed}|{fam.key}|{c!r}".encode()).hexdigest()[:8], 16)
    return "test" if h % 1000 < TEST_SHARE * 1000 else "train"


@lru_cache(maxsize=4)
def code_items(seed: int = 0) -> dict[str, tuple[Item, ...]]:
    """Every item of the seed's world, by split, each split in a seeded shuffled order."""
    world = World.generate(seed)
    out: dict[str, list[Item]] = {"train": [], "test": []}
    for fam in FAMILIES:
        for c in task_constants(fam):
            if not matches(fam, c, world):
                continue  # no corpus person fits: the tests could not tell the spec from its negation
            split = split_of(fam, c, seed)
            rng = random.Random(f"toy-code-tests|{seed}|{fam.key}|{c!r}")
            tests, names = _test_code(fam, c, world, rng)
            pre = preamble(world, names) if fam.consts in ("company", "city", "country") else ""
            tag = "-".join(str(v) for v in c)
            for w in range(len(fam.specs)):
                out[split].append(Item(
                    id=f"toy-code/{split}/{fam.key}/{tag}/{ENTRY}/{w}",
                    question=spec_sentence(fam, c, ENTRY, w), completion=completion(fam, c, ENTRY),
                    target={"entry_point": ENTRY, "test": tests, "preamble": pre},
                    meta={"family": fam.key, "constants": list(c), "entry_point": ENTRY}))
    for split, items in out.items():
        random.Random(f"toy-code-{split}-{seed}").shuffle(items)
    return {k: tuple(v) for k, v in out.items()}


@register_task("toy-code")
class ToyCode(HumanEval):
    """Spec in words -> a fenced Python function; see the module docstring. Options: ``n_test``
    (first N of the shuffled test pool; default all), ``seed`` (world and split), ``limit``,
    ``timeout_s``/``workers``/``memory_mb`` (the sandbox's, as for humaneval)."""

    name = "toy-code"
    version = "2"
    role_scheme = "toy-code"  # HumanEval's rule: fence and ``def solve(x):`` format, body content
    primary_metric = "accuracy"
    license = "Apache-2.0 (generated)"
    gen = GenSpec(max_new_tokens=96, stop=("<|endoftext|>", "\nTask:"))
    response_keys = ("response",)
    plus = False

    def __init__(self, n_test: int | None = None, seed: int = 0, limit: int | None = None,
                 timeout_s: float = 5.0, workers: int | None = None, memory_mb: int = 1024):
        self.n_test, self.seed, self.limit = n_test, seed, limit
        self.path, self.timeout_s, self.workers, self.memory_mb = None, float(timeout_s), workers, memory_mb
        self.gt_cache = False

    @cached_property
    def _test(self) -> list[Item]:
        items = list(code_items(self.seed)["test"])
        return items if self.n_test is None else items[:self.n_test]

    def test_items(self) -> list[Item]:
        return first_n(self._test, self.limit)

    def train_items(self) -> list[Item]:
        return list(code_items(self.seed)["train"])

    def prompt_text(self, item: Item) -> str:
        return PROMPT.format(spec=item.question)

    def user_message(self, item: Item) -> str:
        return item.question

    def training_pair(self, item: Item, tokenizer: Any = None, chat: bool = False) -> tuple[str, str]:
        if item.completion is None:
            raise ValueError(f"item {item.id} has no reference completion")
        return self.build_prompt(item, tokenizer, chat), item.completion

    def score_many(self, items: Sequence[Item], responses: Sequence[str]) -> list[dict]:
        """Fenced block that parses and defines the entry point -> run with the hidden tests."""
        from ..tasks import sandbox
        from ..tasks.humaneval import _defines, _parses, extract_program

        items, responses = list(items), list(responses)
        if len(items) != len(responses):
            raise ValueError(f"{len(items)} items but {len(responses)} responses")
        records: list[dict] = []
        todo: list[tuple[int, Any]] = []
        for i, (it, resp) in enumerate(zip(items, responses)):
            ep = it.target["entry_point"]
            program, kind = extract_program("", ep, resp or "")
            rec = {"id": it.id, "format_ok": False, "correct": False, "status_base": "no_code",
                   "status_plus": None, "info": ""}
            records.append(rec)
            if program is None or kind != "block":
                rec["info"] = "no fenced code block" if program is not None else ""
                continue
            if not _parses(program) or not _defines(program, ep):
                rec.update(status_base="error",
                           info="syntax error" if not _parses(program) else f"{ep} is not defined")
                continue
            rec["format_ok"] = True
            todo.append((i, self._program(it, it.target["preamble"] + program, None)))
        results = sandbox.run_many([p for _, p in todo], workers=self.workers)
        for (i, _), res in zip(todo, results):
            records[i].update(self._verdict(res))
            records[i]["correct"] = records[i]["status_base"] == "pass"
        return records


# --- toy-code-ood ---------------------------------------------------------------------------
#: two operations each, in combinations no ``FAMILIES`` member has (``op_signature``)
OOD_FAMILIES: tuple[Family, ...] = (
    Family("mulgreater", "x", ("returns True when x times {k} is greater than {m}",
                               "tells whether x times {k} is greater than {m}"),
           (), ("return x * {k} > {m}",), "km"),
    Family("addlarger", "x", ("returns the larger of x plus {k} and {m}",
                              "returns x plus {k} or {m}, whichever is larger"),
           (), ("return max(x + {k}, {m})",), "km"),
    Family("sumaddeach", "xs", ("returns the sum of the numbers in xs with {k} added to each",
                                "adds {k} to every number in xs and returns the sum"),
           (), ("return sum([v + {k} for v in xs])",), "k"),
    Family("subdivisible", "x", ("returns True when x decreased by {k} is divisible by {m}",
                                 "tells whether x decreased by {k} is divisible by {m}"),
           (), ("return (x - {k}) % {m} == 0",), "km"),
)
OOD_PER_FAMILY = 30  # derivations per OOD family (two wordings each): 240 items


def op_signature(source: str) -> frozenset[str]:
    """The operations of a program: arithmetic and comparison operators, and called names."""
    import ast

    ops: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp):
            ops.add(type(node.op).__name__)
        elif isinstance(node, ast.Compare):
            ops.update(type(o).__name__ for o in node.ops)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            ops.add(node.func.id)
    return frozenset(ops)


@lru_cache(maxsize=4)
def ood_items(seed: int = 0) -> tuple[Item, ...]:
    """toy-code-ood's items: ``OOD_PER_FAMILY`` seeded derivations of every OOD family."""
    world = World.generate(seed)
    out: list[Item] = []
    for fam in OOD_FAMILIES:
        consts = [c for c in task_constants(fam) if fam.key != "subdivisible" or c[1] >= 2]
        rng = random.Random(f"toy-code-ood|{seed}|{fam.key}")
        for c in sorted(rng.sample(consts, OOD_PER_FAMILY)):
            tests, _ = _test_code(fam, c, world, random.Random(f"toy-code-tests|{seed}|{fam.key}|{c!r}"))
            tag = "-".join(str(v) for v in c)
            for w in range(len(fam.specs)):
                out.append(Item(
                    id=f"toy-code-ood/test/{fam.key}/{tag}/{ENTRY}/{w}",
                    question=spec_sentence(fam, c, ENTRY, w), completion=completion(fam, c, ENTRY),
                    target={"entry_point": ENTRY, "test": tests, "preamble": ""},
                    meta={"family": fam.key, "constants": list(c), "entry_point": ENTRY}))
    random.Random(f"toy-code-ood-test-{seed}").shuffle(out)
    return tuple(out)


@register_task("toy-code-ood")
class ToyCodeOOD(ToyCode):
    """toy-code's format on operation combinations absent from its pool (module docstring)."""

    name = "toy-code-ood"
    version = "1"

    @cached_property
    def _test(self) -> list[Item]:
        items = list(ood_items(self.seed))
        return items if self.n_test is None else items[:self.n_test]

    def train_items(self) -> list[Item]:
        from .tasks import no_training_pool

        raise no_training_pool(self.name, "toy-code")
