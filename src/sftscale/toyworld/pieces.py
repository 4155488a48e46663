"""How toy text splits into tokens: the one piece pattern that the toy tokenizer uses and that
the corpus counts tokens with. A leaf module (imports nothing of sftscale), so the corpus can
count tokens without importing the tokenizer, which is built from the corpus.

Pieces: ``" ?[A-Za-z]+"`` (a word with its leading space), ``" ?\\d"`` (ONE digit),
``" ?[^\\w\\s]"`` (one punctuation mark), ``"\\n"`` and ``" "``. Not handled: non-ASCII letters.
"""

from __future__ import annotations

import re

PIECE_PATTERN = r" ?[A-Za-z]+| ?\d| ?[^\w\s]|\n| "
PIECE_RE = re.compile(PIECE_PATTERN)


def count_tokens(text: str) -> int:
    """Number of tokens of in-vocabulary ``text`` (no special tokens)."""
    return len(PIECE_RE.findall(text))


__all__ = ["PIECE_PATTERN", "PIECE_RE", "count_tokens"]
