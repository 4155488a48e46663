"""How toy text splits into tokens: the one piece pattern that the toy tokenizer uses and that
the corpus counts tokens with. A leaf module (imports nothing of sftscale), so the corpus can
count tokens without importing the tokenizer, which is built from the corpus.

Pieces: ``" ?[A-Za-z]+"`` (a word with its leading space), ``" ?\\d"`` (ONE digit),
``" ?[^\\w\\s]"`` (one punctuation mark), ``"\\n"`` and ``" "``. Not handled: non-ASCII letters.
"""

from __future__ import annotations

import re
import string

PIECE_PATTERN = r" ?[A-Za-z]+| ?\d| ?[^\w\s]|\n| "
PIECE_RE = re.compile(PIECE_PATTERN)


def count_tokens(text: str) -> int:
    """Number of tokens of in-vocabulary ``text`` (no special tokens)."""
    return len(PIECE_RE.findall(text))


def vocabulary_pieces(texts) -> set[str]:
    """The pieces of ``texts`` and of what every toy vocabulary holds (digits and ASCII
    punctuation, with and without a leading space; newline; space)."""
    base = [*string.digits, *string.punctuation, *(" " + c for c in string.digits + string.punctuation),
            "\n", " "]
    return {p for t in [*texts, *base] for p in PIECE_RE.findall(t)}


__all__ = ["PIECE_PATTERN", "PIECE_RE", "count_tokens", "vocabulary_pieces"]
