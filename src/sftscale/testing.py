"""Tiny random models for tests and benchmarks (like ``transformers.testing_utils``).

Not used by the pipeline itself; nothing here is downloaded. One builder, three tokenizers:

- ``tiny_model(out, kind, ...)`` saves a randomly initialised ``LlamaForCausalLM`` and a
  tokenizer to ``out`` and returns ``out``. ``kind``:

  - ``"words"``: word-level tokenizer whose vocabulary holds the special tokens, digits,
    ASCII punctuation and every word piece of ``texts`` (the toy world's pieces: a word with
    its leading space, one digit, one punctuation mark, newline, space; other words map to
    ``<unk>``), padded with dummy tokens up to ``vocab_size``; eos = bos = ``<|endoftext|>``,
    no BOS added; the toy chat template.
  - ``"chars"``: one token per ASCII character, ``<s>`` added in front of every encoding
    (a BOS post-processor), ``</s>`` as eos, a ``<s>role: ...`` chat template.
  - ``"toy"``: the toy world's tokenizer; the directory is marked as a toy model.

- ``tiny_llama(...)``: the in-memory model alone (no tokenizer, nothing saved).
- ``make_lora(base_dir, out, seed)``: a LoRA adapter with random non-zero weights.

Architecture keywords (``hidden``, ``layers``, ``heads``, ``kv_heads``, ``intermediate``,
``max_positions``, ``tie``) default per kind (``KIND_DEFAULTS``); the torch seed is set just
before the model is built, so a given (kind, texts, vocab_size, seed, architecture) always
gives the same weights (tests pin losses and outputs on them).

Not handled: other architectures than Llama, chat templates other than the two above,
tokenizers with byte fallback.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

#: per-kind architecture defaults; ``ffn`` is the intermediate size as a multiple of hidden
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "words": dict(hidden=64, layers=2, heads=4, kv_heads=None, ffn=4, max_positions=512, tie=True),
    "chars": dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=2, max_positions=2048, tie=False),
    "toy": dict(hidden=48, layers=2, heads=4, kv_heads=None, ffn=2, max_positions=256, tie=True),
}
_ARCH = ("hidden", "layers", "heads", "kv_heads", "intermediate", "max_positions", "tie")

CHARS_CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                       "{% if add_generation_prompt %}assistant:{% endif %}")


def tiny_llama(vocab_size: int = 97, hidden: int = 32, layers: int = 2, heads: int = 4,
               kv_heads: int | None = None, intermediate: int | None = None,
               max_positions: int = 256, tie: bool = True, seed: int = 0,
               token_ids: dict[str, int] | None = None) -> Any:
    """A random ``LlamaForCausalLM`` (``torch.manual_seed(seed)`` right before it is built).

    ``kv_heads`` defaults to ``heads``, ``intermediate`` to ``2 * hidden``; ``token_ids``
    sets ``pad_token_id`` / ``bos_token_id`` / ``eos_token_id`` (LlamaConfig's defaults
    otherwise)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    ids: dict[str, Any] = dict(token_ids or {})
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads or heads,
                      intermediate_size=intermediate or 2 * hidden,
                      max_position_embeddings=max_positions, tie_word_embeddings=tie, **ids)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def _words_tokenizer(texts: Any, vocab_size: int | None) -> Any:
    import re

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from .toyworld.pieces import PIECE_PATTERN
    from .toyworld.tokenizer import CHAT_TEMPLATE

    specials = ["<|pad|>", "<|endoftext|>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]
    pieces: list[str] = ["\n", " "]
    for ch in string.digits + string.punctuation:
        pieces += [ch, " " + ch]
    rx = re.compile(PIECE_PATTERN)
    for t in texts:
        for piece in rx.findall(str(t)):
            w = piece.strip()
            pieces += [w, " " + w] if w else [piece]
    vocab: dict[str, int] = {}
    for p in specials + pieces:
        vocab.setdefault(p, len(vocab))
    if vocab_size is not None:
        while len(vocab) < vocab_size:
            vocab[f"<extra_{len(vocab)}>"] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>",
                                  pad_token="<|pad|>", unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _chars_tokenizer() -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    chars = list(string.ascii_letters + string.digits + string.punctuation + " \n")
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = CHARS_CHAT_TEMPLATE
    return tok


def tiny_model(out: str | os.PathLike, kind: str = "words", texts: Any = (),
               vocab_size: int | None = None, seed: int = 0, **arch: Any) -> Path:
    """Save a random tiny Llama and a ``kind`` tokenizer to ``out`` (see the module docstring).

    ``texts`` and ``vocab_size`` apply to ``kind="words"`` only; ``arch`` takes the keywords
    of ``tiny_llama`` (``hidden``, ``layers``, ...) over the kind's defaults."""
    import json

    if kind not in KIND_DEFAULTS:
        raise ValueError(f"unknown tiny model kind {kind!r}; use one of {', '.join(KIND_DEFAULTS)}")
    bad = sorted(set(arch) - set(_ARCH))
    if bad:
        raise TypeError(f"tiny_model: unknown architecture keyword(s) {bad}; known: {_ARCH}")
    if kind != "words" and (texts or vocab_size is not None):
        raise TypeError("tiny_model: texts and vocab_size apply to kind='words' only")
    out = Path(out)
    a = {**KIND_DEFAULTS[kind], **arch}
    a["intermediate"] = a.get("intermediate") or a["ffn"] * a["hidden"]
    del a["ffn"]
    if kind == "words":
        tok = _words_tokenizer(texts, vocab_size)
        ids = dict(pad_token_id=0, eos_token_id=1, bos_token_id=1)
    elif kind == "chars":
        tok = _chars_tokenizer()
        ids = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    else:
        from .toyworld.tokenizer import build_tokenizer

        tok = build_tokenizer()
        ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id,
                   eos_token_id=tok.eos_token_id)
    model = tiny_llama(vocab_size=len(tok), seed=seed, token_ids=ids, **a)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    if kind == "toy":
        from .toyworld.tokenizer import save_tokenizer

        save_tokenizer(out, tok)
        (out / "toy_meta.json").write_text(json.dumps({"name": "tiny-test"}))
    else:
        tok.save_pretrained(out)
    return out


def make_lora(base_dir: str | os.PathLike, out: str | os.PathLike, seed: int) -> Path:
    """Save a LoRA adapter (r=4 on q/v/o projections) with random, non-zero weights to ``out``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    torch.manual_seed(seed)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"],
                     init_lora_weights=False)
    pm = get_peft_model(base, cfg)
    pm.save_pretrained(str(out))
    return Path(out)


__all__ = ["CHARS_CHAT_TEMPLATE", "KIND_DEFAULTS", "make_lora", "tiny_llama", "tiny_model"]
