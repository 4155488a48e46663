"""The toy word-level tokenizer, built with the ``tokenizers`` library.

Pre-tokenization splits text into pieces ``" ?[A-Za-z]+"`` (a word with its leading space),
``" ?\\d"`` (ONE digit), ``" ?[^\\w\\s]"`` (one punctuation mark), ``"\\n"`` and ``" "``; each
piece is one token of a ``WordLevel`` model, and the ``Fuse`` decoder concatenates the pieces,
so decoding gives back the exact text: ``"#### 12"`` stays ``"#### 12"`` and ``"Answer: Paris"``
stays ``"Answer: Paris"`` (no ``"# # # #"``; prototype pitfall 5).

The vocabulary holds every name of every pool (with and without a leading space, so held-out
people are tokenisable), every word the corpus and the toy tasks can produce, digits,
ASCII punctuation, a list of common English words, and the ``vocabulary_texts()`` of
``toyworld.code`` and ``toyworld.instruct`` when those modules are there. Special tokens: ``<|endoftext|>``
(eos and bos), ``<|pad|>``, ``<unk>``, and the chat markers ``<|system|>``, ``<|user|>``,
``<|assistant|>``. Chat template::

    <|user|>\\n{content}\\n<|assistant|>\\n{content}<|endoftext|>\\n

Not handled: non-ASCII letters (they map to ``<unk>``), words outside the vocabulary
(``<unk>``; their text is lost on decoding), byte fallback.
"""

from __future__ import annotations

from pathlib import Path

from .pieces import PIECE_PATTERN, vocabulary_pieces

EOS = "<|endoftext|>"
PAD = "<|pad|>"
UNK = "<unk>"
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIALS = (PAD, EOS, UNK, *CHAT_TOKENS)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}<|endoftext|>{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{{ '\\n' }}{% endif %}"
)

COMMON_WORDS = """the a an and or but not no yes if then else so because of to in on at by for with
from into onto about over under after before during between among through up down out off again
is are was were be been being am do does did done have has had having will would can could shall
should may might must it its this that these those there here what which who whom whose when where
why how all any both each every few more most other some such only own same than too very just
also now new old good bad big small long short high low first last next many much one two three
four five six seven eight nine ten hundred thousand zero number numbers total sum answer answers
question questions step steps think please quick short note notes part section entry key sheet
set list item items name names city cities country countries company companies person people
born lives live living works work working job employer capital home house birthplace native
founded started began located lies seat government origin residence write writes wrote say says
said tell tells told give gives gave get gets got make makes made take takes took see sees saw know
knows knew true false correct wrong right left hello thanks thank you your yours we our us they
them their he him his she her i me my mine word words sentence line lines text story stories
code function return value values list add adds sub minus plus times equals equal each per day days
year years time times today world example examples output input result results""".split()


def vocabulary_texts() -> list[str]:
    """Texts whose pieces make up the vocabulary (independent of any world seed)."""
    import random

    from .arith import drill
    from .corpus import DOMAIN_MODULES, HEADERS, available_shares, build_corpus, domain_module, random_problem
    from .world import DIRECT_QUESTIONS, MULTIHOP_QUESTIONS, QUESTION_WRAPPERS, TEMPLATES, World, all_names

    texts: list[str] = []
    for w in ("Q", "A", "Answer", *all_names(), *COMMON_WORDS):
        texts += [w, " " + w, " " + w.capitalize(), w.capitalize()]
    tpl = [*(t for ts in TEMPLATES.values() for t in ts), *(t for ts in MULTIHOP_QUESTIONS.values() for t in ts),
           *(t for ts in DIRECT_QUESTIONS.values() for t in ts), *QUESTION_WRAPPERS, *HEADERS]
    texts += [t.replace("{s}", "X").replace("{o}", "Y").replace("{p}", "X").replace("{n}", "1") for t in tpl]
    rng = random.Random(0)
    for _ in range(3000):
        p = random_problem(rng)
        texts += [p.question(), p.solution(), p.story(rng), drill(rng)]
    for kind in DOMAIN_MODULES:
        mod = domain_module(kind)
        if mod is not None:
            texts += list(mod.vocabulary_texts())
    docs, _ = build_corpus(World.generate(0), 50_000, seed=0, shares=available_shares())
    texts += docs
    return texts


def build_tokenizer():
    """A ``PreTrainedTokenizerFast`` with the toy vocabulary, specials and chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = vocabulary_pieces(vocabulary_texts())
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for p in sorted(pieces):
        vocab.setdefault(p, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(SPECIALS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, additional_special_tokens=list(CHAT_TOKENS))
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    fast.model_max_length = 512
    return fast


def save_tokenizer(out: str | Path, tok=None):
    """Save with ``tokenizer_class`` PreTrainedTokenizerFast (loadable by AutoTokenizer)."""
    import json

    from ..io import atomic_write_json

    tok = tok or build_tokenizer()
    tok.save_pretrained(str(out))
    cfg_path = Path(out) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["padding_side"] = "left"
    atomic_write_json(cfg_path, cfg)
    return tok
