"""A seeded synthetic world: people, cities, countries, companies and the relations between them.

``World.generate(seed)`` draws a world from FIXED name pools (the pools never depend on the seed,
so one tokenizer covers every world): 12 countries with 4 cities each (the first city is the
capital), 40 companies each founded in a country, and people with two-token names (first + last)
who are ``born_in`` a city, ``lives_in`` a city and ``works_for`` a company. A fraction of the
people (default 20%) is held out: they never appear in the pretraining corpus and serve the
knowledge-injection experiment. The corpus people are further split into "pool" people (whose
multihop questions may be used for finetuning) and "test" people (multihop test questions only).

Text renderers give several paraphrases per fact (``render_fact``) and canonical cloze prefixes
(``cloze``) used to measure recall.

Not handled: worlds with other pool sizes than the fixed pools allow (at most 60 x 60 people),
family relations, dates; relations are functional (one object per subject and relation).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FIRST_NAMES: tuple[str, ...] = (
    "Ada", "Ben", "Cora", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ivy", "Jack", "Kira", "Leo",
    "Mia", "Nico", "Olga", "Paul", "Rosa", "Sam", "Tara", "Umar", "Vera", "Will", "Yara", "Zane",
    "Alma", "Boris", "Clara", "Dov", "Elin", "Felix", "Greta", "Hans", "Inga", "Jonas", "Kemal",
    "Lena", "Marco", "Nadia", "Omar", "Pia", "Quinn", "Rafael", "Sofia", "Theo", "Ulla", "Viktor",
    "Wanda", "Xavier", "Yusuf", "Zoe", "Anton", "Bianca", "Carl", "Dora", "Emil", "Flora", "Gustav",
    "Hilda", "Igor", "Julia",
)
LAST_NAMES: tuple[str, ...] = (
    "Abbott", "Baker", "Carter", "Dalton", "Ellis", "Fisher", "Garcia", "Hale", "Irwin", "Jensen",
    "Keller", "Lopez", "Meyer", "Novak", "Olsen", "Patel", "Quade", "Reyes", "Sato", "Turner",
    "Ueda", "Vance", "Walsh", "Young", "Zimmer", "Andersen", "Brandt", "Costa", "Dubois", "Engel",
    "Ferrari", "Gomez", "Hoffman", "Ito", "Jovanovic", "Kowalski", "Larsen", "Moreau", "Nakamura",
    "Ortiz", "Petrov", "Rossi", "Schmidt", "Tanaka", "Ulrich", "Varga", "Weber", "Yilmaz", "Zhang",
    "Acosta", "Berg", "Chen", "Diaz", "Eriksen", "Fuchs", "Greco", "Horvat", "Ivanov", "Kim", "Lund",
)
COUNTRIES: tuple[str, ...] = (
    "Veloria", "Marnia", "Ostrava", "Quellia", "Doravia", "Zenthia", "Korvia", "Lumeria",
    "Brastia", "Tessaly", "Ardenia", "Pelonia",
)
# 4 cities per country, in country order; the first of each group is the capital.
CITIES: tuple[str, ...] = (
    "Velor", "Amsk", "Tirn", "Brell",
    "Marburg", "Cosel", "Pindar", "Ulmet",
    "Ostgrad", "Relva", "Sutin", "Kamor",
    "Quenby", "Harlow", "Dunmere", "Ebbin",
    "Dorvik", "Falun", "Gessin", "Lorca",
    "Zenith", "Arbol", "Mirren", "Taskel",
    "Korvo", "Belsk", "Nimra", "Ostin",
    "Lumen", "Carvo", "Delmar", "Fennick",
    "Brasta", "Hollin", "Jarrow", "Pelk",
    "Tessa", "Ravel", "Sorn", "Vantor",
    "Ardis", "Bexley", "Corran", "Morvel",
    "Pelon", "Gristol", "Haven", "Wexmoor",
)
COMPANIES: tuple[str, ...] = (
    "Acmex", "Brightco", "Cobaltix", "Dynacorp", "Evergrain", "Fluxon", "Globera", "Helixa",
    "Ironwell", "Jetstra", "Kinetix", "Lumisoft", "Magnetra", "Nordwind", "Omnitex", "Polaris",
    "Quantis", "Redstone", "Silvana", "Tectra", "Unimax", "Vortexa", "Wavecrest", "Xylon",
    "Yellowfin", "Zephyra", "Arcadia", "Bluepeak", "Corvex", "Deltron", "Emberline", "Foxglove",
    "Granite", "Horizon", "Innova", "Junipera", "Keystone", "Lattice", "Meridian", "Nimbus",
)
CITIES_PER_COUNTRY = 4

PERSON_RELATIONS: tuple[str, ...] = ("born_in", "lives_in", "works_for")

# Paraphrases per relation; ``{s}`` subject, ``{o}`` object. The object always ends the sentence.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "born_in": ("{s} was born in {o}.", "{s} is a native of {o}.", "The birthplace of {s} is {o}.",
                "{s} came into the world in {o}."),
    "lives_in": ("{s} lives in {o}.", "{s} resides in {o}.", "The home of {s} is in {o}.",
                 "{s} has a house in {o}."),
    "works_for": ("{s} works for {o}.", "{s} is employed by {o}.", "The employer of {s} is {o}.",
                  "{s} has a job at {o}."),
    "located_in": ("{s} is a city in {o}.", "{s} lies in {o}.", "The city of {s} is located in {o}.",
                   "{s} is in {o}."),
    "capital_of": ("{s} is the capital of {o}.", "The capital city of {o} is {s}.",
                   "The seat of government of {o} is {s}.", "{s} is the capital city of {o}."),
    "founded_in": ("{s} was founded in {o}.", "{s} is a company from {o}.",
                   "The company {s} was started in {o}.", "{s} began in {o}."),
}
# Canonical cloze prefix per relation (the first template, cut before the object).
CLOZE: dict[str, str] = {r: t[0].split("{o}")[0].rstrip() for r, t in TEMPLATES.items()}


@dataclass(frozen=True)
class Person:
    name: str
    born_in: str
    lives_in: str
    works_for: str
    group: str  # "pool" | "test" | "heldout"

    def obj(self, relation: str) -> str:
        return getattr(self, relation)


@dataclass
class World:
    seed: int
    people: list[Person]
    city_country: dict[str, str]
    capitals: dict[str, str]  # country -> capital city
    company_country: dict[str, str]
    extra: dict = field(default_factory=dict)

    @classmethod
    def generate(cls, seed: int = 0, n_people: int = 240, heldout_frac: float = 0.2,
                 test_frac: float = 0.35) -> "World":
        """Draw a world. ``test_frac`` is the share of CORPUS people reserved for multihop tests."""
        if not 1 <= n_people <= len(FIRST_NAMES) * len(LAST_NAMES):
            raise ValueError(f"n_people must be in 1..{len(FIRST_NAMES) * len(LAST_NAMES)}")
        rng = random.Random(f"toyworld-{seed}")
        city_country = {c: COUNTRIES[i // CITIES_PER_COUNTRY] for i, c in enumerate(CITIES)}
        capitals = {k: CITIES[i * CITIES_PER_COUNTRY] for i, k in enumerate(COUNTRIES)}
        company_country = {k: rng.choice(COUNTRIES) for k in COMPANIES}
        names = [f"{f} {last}" for f in FIRST_NAMES for last in LAST_NAMES]
        rng.shuffle(names)
        names = names[:n_people]
        n_held = round(n_people * heldout_frac)
        n_test = round((n_people - n_held) * test_frac)
        # test people: whole first-name groups of the corpus people, so that no test person
        # shares a first name with a pool (training) person; the corpus is unchanged
        firsts: dict[str, list[int]] = {}
        for i in range(n_held, len(names)):
            firsts.setdefault(names[i].split()[0], []).append(i)
        test_ids: set[int] = set()
        for idx in firsts.values():
            if len(test_ids) + len(idx) <= n_test:
                test_ids.update(idx)
        people = []
        for i, name in enumerate(names):
            group = "heldout" if i < n_held else ("test" if i in test_ids else "pool")
            people.append(Person(name=name, born_in=rng.choice(CITIES), lives_in=rng.choice(CITIES),
                                 works_for=rng.choice(COMPANIES), group=group))
        return cls(seed=seed, people=people, city_country=city_country, capitals=capitals,
                   company_country=company_country)

    # --- views -------------------------------------------------------------------------
    def group(self, *groups: str) -> list[Person]:
        return [p for p in self.people if p.group in groups]

    @property
    def corpus_people(self) -> list[Person]:
        return self.group("pool", "test")

    @property
    def heldout_people(self) -> list[Person]:
        return self.group("heldout")

    def country_of_city(self, city: str) -> str:
        return self.city_country[city]

    def entity_facts(self) -> list[tuple[str, str, str]]:
        """(subject, relation, object) for cities, capitals and companies."""
        out = [(c, "located_in", k) for c, k in self.city_country.items()]
        out += [(c, "capital_of", k) for k, c in self.capitals.items()]
        out += [(k, "founded_in", c) for k, c in self.company_country.items()]
        return out

    def person_facts(self, people: list[Person] | None = None) -> list[tuple[str, str, str]]:
        people = self.corpus_people if people is None else people
        return [(p.name, r, p.obj(r)) for p in people for r in PERSON_RELATIONS]


def render_fact(subject: str, relation: str, obj: str, template: int | None = None,
                rng: random.Random | None = None) -> str:
    """One sentence stating the fact, with the given or a random paraphrase."""
    ts = TEMPLATES[relation]
    if template is None:
        template = (rng or random).randrange(len(ts))
    return ts[template].format(s=subject, o=obj)


def cloze(subject: str, relation: str) -> str:
    """Canonical prefix whose continuation is the object, e.g. ``"Ada Baker was born in"``."""
    return CLOZE[relation].format(s=subject)


def all_names() -> list[str]:
    """Every name token of every pool (for the tokenizer's vocabulary)."""
    return [*FIRST_NAMES, *LAST_NAMES, *COUNTRIES, *CITIES, *COMPANIES]


# --- question renderers shared by the corpus vocabulary and the toy tasks -----------------
# Two-hop chains: (first relation, second relation applied to the first object).
CHAINS: dict[str, tuple[str, str]] = {
    "birth_country": ("born_in", "located_in"),
    "home_country": ("lives_in", "located_in"),
    "employer_country": ("works_for", "founded_in"),
}
MULTIHOP_QUESTIONS: dict[str, tuple[str, ...]] = {
    "birth_country": ("In which country was {p} born?", "Which country was {p} born in?",
                      "{p} was born in which country?", "What is the country of birth of {p}?",
                      "Name the country where {p} was born.",
                      "In what country is the birthplace of {p}?"),
    "home_country": ("In which country does {p} live?", "Which country does {p} live in?",
                     "{p} lives in which country?", "What is the home country of {p}?",
                     "Name the country where {p} lives.", "In what country is the home of {p}?"),
    "employer_country": ("In which country was the employer of {p} founded?",
                         "Which country was the employer of {p} founded in?",
                         "The employer of {p} was founded in which country?",
                         "What is the country of origin of the company {p} works for?",
                         "Name the country where the employer of {p} was founded.",
                         "In what country was the company that employs {p} started?"),
}
QUESTION_WRAPPERS: tuple[str, ...] = ("", "Please answer. ", "Think step by step. ", "Quick question. ",
                                     "Tell me. ", "Here is a question. ")
DIRECT_QUESTIONS: dict[str, tuple[str, ...]] = {
    "born_in": ("Where was {p} born?", "In which city was {p} born?"),
    "lives_in": ("Where does {p} live?", "In which city does {p} live?"),
    "works_for": ("Which company does {p} work for?", "Who is the employer of {p}?"),
}
