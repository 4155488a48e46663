"""Small file helpers shared by every stage: atomic writes, hashing, JSONL, input errors.

Every file sftscale writes goes through `atomic_write*`: the content lands in a temporary
file in the same directory and is renamed over the target, so a crash or Ctrl-C never
leaves a half-written file behind. Not handled: cross-filesystem renames (the temporary
file is always created beside the target, so this does not arise).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping


class InputError(Exception):
    """Bad user input. The CLI prints it and exits with code 2.

    The message always names the file, and the line and field when known.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str, line: int | None = None,
                 field: str | None = None):
        self.path, self.reason, self.line, self.field = path, reason, line, field
        where = str(path) if path is not None else "<input>"
        if line is not None:
            where += f", line {line}"
        if field:
            where += f", field '{field}'"
        super().__init__(f"{where}: {reason}")


#: how sftscale reads the text files a user gives it (CSV, JSONL, YAML): UTF-8, with or
#: without a byte-order mark (Excel's "CSV UTF-8" starts with one); anything else is refused
#: with an InputError naming the file (``not_utf8``), never decoded wrongly
TEXT_ENCODING = "utf-8-sig"
_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
         (b"\xfe\xff", "UTF-16"))


def not_utf8(path: str | os.PathLike | None, head: bytes = b"", line: int | None = None
             ) -> InputError:
    """The InputError for a file that is not UTF-8 text (``head``: its first bytes, to name a
    UTF-16/32 file as such)."""
    enc = next((name for bom, name in _BOMS if head.startswith(bom)), None)
    what = (f"{enc} text, not UTF-8" if enc else
            "not UTF-8 text (a binary file, or another encoding such as Latin-1?)")
    return InputError(path, f"{what}: sftscale reads UTF-8, with or without a byte-order mark; "
                      "save the file as UTF-8", line=line)


def read_text_input(path: str | os.PathLike) -> str:
    """The text of a user's file, decoded as ``TEXT_ENCODING`` (a leading BOM dropped); a
    file in another encoding is ``not_utf8`` (with the line of the first bad byte)."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode(TEXT_ENCODING)
    except UnicodeDecodeError as e:
        raise not_utf8(path, raw[:4], raw[:e.start].count(b"\n") + 1) from None


def check_owned(path: str | os.PathLike, is_ours: Any, what: str, field: str | None = None
                ) -> None:
    """InputError unless ``path`` is free to write: missing, or a file ``is_ours(path)``
    recognises as one sftscale wrote (``what`` names it in the message). A directory there,
    or a file of the user's, is never overwritten."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return
    if p.is_dir():
        raise InputError(p, f"is a directory; sftscale would write {what} here", field=field)
    try:
        ours = bool(is_ours(p))
    except Exception:  # noqa: BLE001 - unreadable or unrecognisable: not known to be ours
        ours = False
    if not ours:
        raise InputError(p, f"exists and is not {what}: sftscale does not overwrite a file it "
                         "did not write; move it away or choose another output", field=field)


def json_with_keys(*keys: str) -> Any:
    """``is_ours`` for ``check_owned``: a JSON object file with every one of ``keys``."""
    def is_ours(p: Path) -> bool:
        if p.stat().st_size > 1 << 30:
            return False
        doc = json.loads(p.read_text(encoding="utf-8"))
        return isinstance(doc, dict) and all(k in doc for k in keys)
    return is_ours


def table_with_columns(*columns: str) -> Any:
    """``is_ours`` for ``check_owned``: a CSV whose header, a JSONL whose first object, or a
    parquet file whose schema starts with ``columns`` (the tables ``sftscale export`` writes)."""
    def is_ours(p: Path) -> bool:
        with open(p, "rb") as f:
            head = f.read(4)
        if head == b"PAR1":
            import pyarrow.parquet as pq

            names = pq.read_schema(p).names
        else:
            with open(p, encoding="utf-8") as f:
                first = f.readline().strip()
            if first.startswith("{"):
                names = list(json.loads(first))
            else:
                names = [c.strip() for c in first.split(",")]
        return names[:len(columns)] == list(columns)
    return is_ours


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kw) -> Iterator[Any]:
    """Open a temporary file beside `path`; rename it over `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # name the file the user knows, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def json_by_lines(obj: Any, depth: int = 2) -> str:
    """JSON with the keys of the outer ``depth`` levels of dicts on their own lines and each
    element of a list there on one line, in compact form. The same document as ``json.dumps``;
    a big one (fits.json of 500 curves: 20 MB) is written by json's C encoder, where an indented
    one takes its pure-Python encoder several seconds."""
    enc = json.JSONEncoder(default=_json_default)

    def go(x: Any, level: int) -> str:
        pad, inner = "  " * level, "  " * (level + 1)
        if level < depth and isinstance(x, dict) and x:
            return "{\n" + ",\n".join(f"{inner}{enc.encode(str(k))}: {go(v, level + 1)}" for k, v in x.items()) \
                + f"\n{pad}}}"
        if level < depth + 1 and isinstance(x, list) and x:
            return "[\n" + ",\n".join(inner + enc.encode(v) for v in x) + f"\n{pad}]"
        return enc.encode(x)

    return go(obj, 0) + "\n"


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, default=_json_default) + "\n")


def atomic_write_jsonl_gz(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """gzip-compressed JSONL (compact separators), atomically, with no timestamp in the gzip
    header: the same rows give the same bytes. ``read_jsonl`` reads it back."""
    import gzip

    with atomic_open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
        for r in rows:
            g.write((json.dumps(r, separators=(",", ":"), default=_json_default) + "\n").encode("utf-8"))


def append_jsonl(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], **dumps: Any) -> None:
    """Append ``rows`` to a JSONL file shared by writers (caches): one ``os.write`` loop on an
    ``O_APPEND`` descriptor, then fsync, so concurrent writers on one local filesystem
    interleave whole lines. A last line cut short by an earlier crash gets its newline first,
    so it cannot swallow the first new row. ``read_appended_jsonl`` reads the file back."""
    data = "".join(json.dumps(r, default=_json_default, **dumps) + "\n" for r in rows).encode("utf-8")
    if not data:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size > 0:
            with open(p, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_appended_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """The JSON objects of a file written by ``append_jsonl``, skipping what a crash can leave:
    a last line with no newline, and a line that is not a JSON object. Nothing for a missing
    file."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "model_dump"):
        return o.model_dump()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_jsonl(path: str | os.PathLike, numbered: bool = False) -> list:
    """Read a JSONL file, gzip-compressed or not (told by its first bytes, not its name).

    Every problem is an InputError naming the file, and the line when there is one: a
    missing file, a directory, a damaged gzip stream, bytes that are not UTF-8, a line that
    is not a JSON object. ``numbered=True`` returns ``(line_number, object)`` pairs, for
    error messages later on.
    """
    import gzip
    import zlib

    p = Path(path)
    if not p.is_file():
        raise InputError(path, "is a directory, not a JSONL file" if p.is_dir() else "no such file")
    with open(p, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    out: list = []
    i = 0
    try:
        with (gzip.open(p, "rt", encoding=TEXT_ENCODING) if gz else open(p, encoding=TEXT_ENCODING)) as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(path, f"not valid JSON ({e.msg})", line=i) from None
                if not isinstance(obj, dict):
                    raise InputError(path, "expected a JSON object", line=i)
                out.append((i, obj) if numbered else obj)
    except UnicodeDecodeError:
        with (gzip.open(p, "rb") if gz else open(p, "rb")) as f:
            head = f.read(4)
        raise not_utf8(path, head, line=i + 1) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise InputError(path, f"damaged gzip data ({e or 'truncated'})", line=i + 1) from None
    return out


def read_json_dict(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``; {} when the file is missing, unreadable, not JSON or not an
    object (for optional side files such as timings; never for user input, which must fail)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def remove_path(p: str | os.PathLike) -> None:
    """Remove a file, a link or a whole directory tree; nothing when ``p`` does not exist."""
    import shutil

    p = Path(p)
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.exists():
        shutil.rmtree(p)


def link_tree(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy the tree ``src`` to ``dst`` as hard links (a plain copy where linking fails, e.g.
    across file systems). A linked file is shared: replace it (``atomic_write_*``), never
    write through it."""
    import shutil

    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, dirs_exist_ok=True, copy_function=link_or_copy)


def fresh_dir(p: str | os.PathLike) -> Path:
    """``p`` as a new, empty directory (whatever was there is removed first)."""
    remove_path(p)
    Path(p).mkdir(parents=True)
    return Path(p)


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_text(s: str) -> str:
    return sha256_bytes(s.encode("utf-8"))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object with sorted keys (stable across runs)."""
    return sha256_text(json.dumps(obj, sort_keys=True, default=_json_default))
