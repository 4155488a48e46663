"""Vendored benchmark data and one loader for records from anywhere.

Every shipped dataset lives in ``sftscale/data/<name>/`` next to a ``MANIFEST.json``::

    {
      "name": "gsm8k",
      "source": "https://github.com/openai/grade-school-math",   # url or repo
      "version": "<commit, tag or release it was copied from>",
      "license": "MIT",                                         # SPDX-like id
      "license_file": "LICENSE",                                # file in the same dir
      "files": {"test.jsonl": {"sha256": "...", "records": 1319}, ...},
      "splits": {"test": "test.jsonl", "train": "train.jsonl"}  # optional
    }

``files`` lists every data file (not the licence) with its sha256 and number of records
(JSON objects that ``load_records`` returns for it). ``splits`` is optional: without it a
file's split is its name up to the first dot (``test.jsonl`` -> ``test``). Use
``write_manifest`` to create one; ``verify`` re-checks the hashes and counts.

``load_records(name_or_path, split)`` accepts a registered name (read offline from the
package), a local ``.jsonl``/``.jsonl.gz``/``.json``/``.json.gz``/``.parquet`` file, or a
Hugging Face dataset id (``owner/name`` or ``owner/name:config``) loaded with
``datasets.load_dataset`` when the hub is reachable.

Not handled: streaming (everything is loaded in memory; the shipped sets are small),
CSV/TSV files, remote URLs other than Hugging Face ids, nested JSON layouts other than a
top-level list, ``{"data": [...]}`` or ``{split: [...]}``. The Hugging Face path cannot be
tested offline.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from ..io import TEXT_ENCODING, InputError, atomic_write_json, not_utf8, read_jsonl, sha256_file

DATA_ROOT = Path(__file__).resolve().parent
MANIFEST = "MANIFEST.json"
_REQUIRED = ("name", "source", "version", "license", "license_file", "files")
_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")


class DataIntegrityError(Exception):
    """A shipped file does not match its manifest (sha256, record count, or missing)."""


def dataset_names() -> list[str]:
    """Names of the datasets shipped in the package (dirs holding a MANIFEST.json)."""
    return sorted(p.parent.name for p in DATA_ROOT.glob(f"*/{MANIFEST}"))


def dataset_dir(name: str | os.PathLike) -> Path:
    """Directory of a shipped dataset (or any directory holding a MANIFEST.json, given as a
    path); KeyError if there is none."""
    d = Path(name) if isinstance(name, os.PathLike) or os.sep in str(name) else DATA_ROOT / name
    if not (d / MANIFEST).is_file():
        raise KeyError(f"no shipped dataset {name!r}; shipped: {', '.join(dataset_names()) or 'none'}")
    return d


def manifest(name: str | os.PathLike) -> dict:
    """The parsed MANIFEST.json of a shipped dataset (source, licence, version, sha256s)."""
    path = dataset_dir(name) / MANIFEST
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON ({e.msg})", line=e.lineno) from None
    for k in _REQUIRED:
        if k not in m:
            raise InputError(path, "missing required manifest field", field=k)
    if not isinstance(m["files"], dict) or not m["files"]:
        raise InputError(path, "must map file names to {sha256, records}", field="files")
    return m


def verify(name: str | os.PathLike, count: bool = True) -> dict:
    """Check every file of a shipped dataset against its manifest; return the manifest.

    Raises DataIntegrityError on a missing file, a sha256 mismatch, or (``count=True``) a
    record count that differs from the manifest. The licence file must exist too.
    """
    m = manifest(name)
    d = dataset_dir(name)
    if not (d / m["license_file"]).is_file():
        raise DataIntegrityError(f"{name}: licence file {m['license_file']!r} is missing")
    for fname, info in m["files"].items():
        p = d / fname
        if not p.is_file():
            raise DataIntegrityError(f"{name}: file {fname!r} listed in the manifest is missing")
        got = sha256_file(p)
        if got != info.get("sha256"):
            raise DataIntegrityError(f"{name}/{fname}: sha256 {got} != manifest {info.get('sha256')}")
        if count and "records" in info:
            n = len(_read_file(p))
            if n != info["records"]:
                raise DataIntegrityError(f"{name}/{fname}: {n} records != manifest {info['records']}")
    return m


def write_manifest(directory: str | os.PathLike, *, name: str, source: str, version: str,
                   license: str, license_file: str, files: list[str],
                   splits: dict[str, str] | None = None, **extra: Any) -> dict:
    """Compute sha256s and record counts of ``files`` (names inside ``directory``) and
    write ``directory/MANIFEST.json`` atomically. Extra keyword fields are kept as they are."""
    d = Path(directory)
    if not (d / license_file).is_file():
        raise FileNotFoundError(d / license_file)
    entries = {f: {"sha256": sha256_file(d / f), "records": len(_read_file(d / f))} for f in files}
    m: dict[str, Any] = {"name": name, "source": source, "version": version, "license": license,
                         "license_file": license_file, "files": entries}
    if splits:
        m["splits"] = splits
    m.update(extra)
    atomic_write_json(d / MANIFEST, m)
    return m


def split_file(name: str, split: str | None = None) -> Path:
    """Path of the data file for ``split`` of a shipped dataset."""
    m = manifest(name)
    splits = m.get("splits") or {f.split(".")[0]: f for f in m["files"]}
    if split is None:
        if len(splits) != 1:
            raise KeyError(f"dataset {name!r} has splits {sorted(splits)}: pass split=")
        split = next(iter(splits))
    if split not in splits:
        raise KeyError(f"dataset {name!r} has no split {split!r}; splits: {sorted(splits)}")
    return dataset_dir(name) / splits[split]


def load_records(name_or_path: str | os.PathLike, split: str | None = None) -> list[dict]:
    """Records (dicts) of a shipped dataset, a local file, or a Hugging Face dataset id.

    Lookup order: shipped name, existing local path, Hugging Face id. A local JSON file
    shaped ``{split: [...]}`` is indexed by ``split``; other local files ignore ``split``.
    """
    s = str(name_or_path)
    if isinstance(name_or_path, str) and (DATA_ROOT / s / MANIFEST).is_file():
        return _read_file(split_file(s, split))
    p = Path(s)
    if p.exists():
        return _read_file(p, split)
    if _looks_like_local(s):
        raise InputError(s, "no such file")
    return _load_hub(s, split)


def _looks_like_local(s: str) -> bool:
    return s.startswith((".", "/", "~")) or s.lower().endswith(_SUFFIXES) or s.count("/") > 1


def _hub_reachable() -> str | None:
    """None if the hub's host resolves, else the reason. Without this check `datasets` spends
    ~25 s in retries before failing on a machine with no network."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        return f"cannot resolve {host} ({e}); set HF_HUB_OFFLINE=1 to use the local Hugging Face cache"
    return None


def _load_hub(dataset_id: str, split: str | None) -> list[dict]:
    repo, _, config = dataset_id.partition(":")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    proxied = any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))
    if not offline and not proxied:
        why = _hub_reachable()
        if why:
            raise InputError(dataset_id, f"not a shipped dataset or local file, and the Hugging Face "
                             f"hub is unreachable: {why}; shipped: {', '.join(dataset_names())}")
    try:
        import datasets  # heavy: only for this path
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        raise InputError(dataset_id, f"loading a Hugging Face dataset needs `datasets` ({e})") from None
    try:
        ds = datasets.load_dataset(repo, config or None, split=split or "train")
    except Exception as e:  # offline, unknown id, bad split: all one clear message
        raise InputError(dataset_id, "not a shipped dataset or local file, and loading it from the "
                         f"Hugging Face hub failed ({type(e).__name__}: {str(e)[:300]}); "
                         f"shipped: {', '.join(dataset_names())}") from None
    return [dict(r) for r in ds]


def _read_file(path: Path, split: str | None = None) -> list[dict]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return read_jsonl(path)
    if name.endswith((".json", ".json.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding=TEXT_ENCODING) as f:
            try:
                obj = json.load(f)
            except json.JSONDecodeError as e:
                raise InputError(path, f"not valid JSON ({e.msg})", line=e.lineno) from None
            except UnicodeDecodeError:
                raise not_utf8(path) from None
        return _json_records(path, obj, split)
    if name.endswith(".parquet"):
        import pandas as pd
        try:
            df = pd.read_parquet(path)
        except Exception as e:
            raise InputError(path, f"cannot read parquet ({e})") from None
        return df.to_dict(orient="records")
    raise InputError(path, f"unsupported file type; expected one of {', '.join(_SUFFIXES)}")


def read_numbered(path: str | os.PathLike, split: str | None = None) -> list[tuple[int, dict]]:
    """Records of a local file with where each came from: the line number in a JSONL file,
    the 1-based record index in a JSON or parquet file (for error messages)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such file")
    if p.name.lower().endswith((".jsonl", ".jsonl.gz")):
        return read_jsonl(p, numbered=True)
    return list(enumerate(_read_file(p, split), 1))


def _json_records(path: Path, obj: Any, split: str | None) -> list[dict]:
    if isinstance(obj, dict):
        if split is not None and isinstance(obj.get(split), list):
            obj = obj[split]
        elif isinstance(obj.get("data"), list):
            obj = obj["data"]
        else:
            raise InputError(path, "expected a list of records, {\"data\": [...]} or {split: [...]}"
                             + (f" with split {split!r}" if split else ""))
    if not isinstance(obj, list):
        raise InputError(path, "expected a list of records")
    for i, r in enumerate(obj):
        if not isinstance(r, dict):
            raise InputError(path, f"record {i} is not a JSON object")
    return obj


__all__ = ["DATA_ROOT", "DataIntegrityError", "dataset_dir", "dataset_names", "load_records",
           "manifest", "read_numbered", "split_file", "verify", "write_manifest"]
