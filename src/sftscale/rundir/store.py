"""The study store: one SQLite file (``DIR/study.sqlite``, WAL) that the driver alone writes.

Tables
- ``meta(key, value)``: study name, config fingerprint, sftscale version, created time.
- ``cells``: one row per cell (key, model, task, n, seed, spec + its hash, state
  pending/running/done/failed, attempts, its directory relative to the run dir, n_items,
  timings train_s/eval_s/wall_s/overhead_s and ``stage_s`` (JSON: seconds per stage), error,
  traceback path, worker, timestamps; ``search``: a recipe search's chosen values and
  candidates' validation scores as JSON, searchspec.store_summary).
- ``files(cell, stage, path, sha)``: every hashed output file of a done cell, per stage of
  the stage list (stagespec.py; ``path`` relative to the run dir, ``sha`` its sha256, a
  directory's as a tree), what integrity.py checks before reuse.
- ``metrics(cell, metric, value)``: the evaluation aggregates of done cells.
- ``items(cell, idx, item_id, correct, format_ok, fields)``: per-sample scores (``fields`` is
  a JSON object of the other scalar per-sample fields), for the paired bootstrap.

Crash safety: a cell's completion (state, files, hashes, metrics, items) is ONE transaction,
so after a SIGKILL at any moment a cell is either fully recorded or not at all; its file,
metric and item rows are deleted and re-inserted in that transaction, so re-recording never
duplicates. ``running`` rows found at start-up belong to a dead process and go back to
``pending``.

Values: ``rows_sha`` (a column of ``cells``) is a checksum over what the store holds for a
done cell (its metric rows, item rows and n_items, read back inside the recording transaction;
``Store.rows_sha_now``), so a value changed in the store after recording (by hand, another
tool, a bug) is found by comparing the two: the runner re-records such a cell from its files
(``outputs.check_values``, after ``integrity.verify_done``), ``status`` shows it. A store
written before the column existed (schema 1, or schema 2 before ``rows_sha``) gets the column
added, empty, on its first writable open; a done cell's value is filled in the first time
``run`` finds its values equal to the cell's files. Opened read-only, such a store reads as
it is (no checksum: nothing to compare).

Schema versions (``meta.schema_version``): 2 has the ``files`` table. A store of version 1
(one column per file: ``train_meta``, ``results``, ``samples`` and their ``*_sha``, and
``ckpt_sha``) is migrated on its first writable open, in one transaction: each done cell's
paths and hashes become ``files`` rows (stage ``train``: train_meta.json and, where
``ckpt_sha`` is a hash, ``train/ckpt``; stage ``eval``: results and samples), and the old
columns are dropped. Opened read-only, a version-1 store is read as it is (``files()``
derives the rows from its columns). A version-1 store without ``ckpt_sha`` (older still)
migrates without checkpoint rows; integrity.py records the checkpoint's hash at the next
verification. A store of a newer version than this code knows is refused.

Errors: an unreadable file is never a traceback. ``StoreDamaged`` (an ``InputError``) is
raised when SQLite says the file is not a database or is malformed, on open or on any query
inside ``with Store(...)``: the message names ``sftscale run DIR --repair`` (``repair.py``
rebuilds the store from the cell directories). Other SQLite failures (a read-only or
missing directory, a locked file) become an ``InputError`` naming the file and the reason.

Read-only use (``Store(path, readonly=True)``: status, export, fit, report) opens the file
with ``mode=ro`` and never writes; where SQLite cannot create the ``-shm`` file beside it (a
read-only directory) it opens it ``immutable=1``, which does not see transactions still in a
``-wal`` file left by a killed writer (a warning says so; a writable ``run`` folds them in).

Not handled: several concurrent writer processes (``lock.RunLock`` keeps one writer per run
directory; the store itself does not check), network filesystems with broken locking (keep
the run directory on a local disk or a filesystem with working POSIX locks).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..grid.cells import Cell
from ..io import InputError
from . import layout

log = logging.getLogger(__name__)

STATES = ("pending", "running", "done", "failed")
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS cells(
  key TEXT PRIMARY KEY, ord INTEGER, model TEXT NOT NULL, model_ref TEXT, task TEXT NOT NULL,
  task_name TEXT, n INTEGER NOT NULL, seed INTEGER, spec TEXT NOT NULL, spec_hash TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'running', 'done', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  cell_dir TEXT, n_items INTEGER, train_s REAL, eval_s REAL, wall_s REAL, overhead_s REAL,
  error TEXT, traceback TEXT, worker TEXT, started_at REAL, finished_at REAL, search TEXT,
  stage_s TEXT
);
CREATE TABLE IF NOT EXISTS files(
  cell TEXT NOT NULL, stage TEXT NOT NULL, path TEXT NOT NULL, sha TEXT,
  PRIMARY KEY (cell, stage, path));
CREATE TABLE IF NOT EXISTS metrics(
  cell TEXT NOT NULL, metric TEXT NOT NULL, value REAL, PRIMARY KEY (cell, metric));
CREATE TABLE IF NOT EXISTS items(
  cell TEXT NOT NULL, idx INTEGER NOT NULL, item_id TEXT NOT NULL, correct INTEGER,
  format_ok INTEGER, fields TEXT, PRIMARY KEY (cell, idx));
"""

_OUTCOME_COLS = ("cell_dir", "n_items", "train_s", "eval_s", "stage_s", "wall_s", "overhead_s",
                 "worker", "started_at", "search")
# newer than the first stores: added when missing
_ADDED_COLS = {"search": "TEXT", "stage_s": "TEXT", "rows_sha": "TEXT"}
_V1_FILE_COLS = ("train_meta", "results", "samples", "train_meta_sha", "results_sha", "samples_sha",
                 "ckpt_sha")  # schema 1: one column per file (migrated into ``files``)


class StoreDamaged(InputError):
    """The store file is not a readable SQLite database (garbage, truncated, malformed)."""

    def __init__(self, path: Path, detail: str):
        self.detail = detail
        super().__init__(path, f"the study store is damaged ({detail}); `sftscale run "
                         f"{path.parent} --repair` moves it aside and rebuilds it from the "
                         "cell directories")


def _store_error(path: Path, e: sqlite3.Error) -> InputError:
    """The InputError for a SQLite failure on ``path``."""
    msg = str(e)
    if not isinstance(e, sqlite3.OperationalError) or "malformed" in msg or "not a database" in msg:
        return StoreDamaged(path, msg)
    if "readonly" in msg or "read-only" in msg:
        return InputError(path, f"cannot write the study store ({msg}): the run directory is "
                          "read-only; status, export, fit and report can still read it")
    return InputError(path, f"cannot use the study store ({msg})")


class Store:
    """Open (creating if needed) ``path``; use as a context manager or call ``close()``."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._v1: list[str] = []  # schema-1 per-file columns (read-only opens of old stores)
        try:
            if readonly:
                self._db = _connect_readonly(self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # durable across process kills in WAL
                self.db.executescript(_SCHEMA)
                self._add_missing_columns()
                self._migrate()
            self._v1 = [c for c in _V1_FILE_COLS if c in self._columns()]
        except sqlite3.Error as e:
            self.close()
            raise _store_error(self.path, e) from None
        except InputError:
            self.close()
            raise
        self.db.row_factory = sqlite3.Row

    def _columns(self) -> set[str]:
        return {r[1] for r in self.db.execute("PRAGMA table_info(cells)")}

    def _add_missing_columns(self) -> None:
        have = self._columns()
        for col, typ in _ADDED_COLS.items():
            if col not in have:
                self.db.execute(f"ALTER TABLE cells ADD COLUMN {col} {typ}")

    def _migrate(self) -> None:
        """Schema 1 -> 2 in one transaction (see the module docstring); refuse a newer one."""
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise InputError(self.path, f"this study store has schema version {version}; this "
                             f"sftscale reads up to {SCHEMA_VERSION} (upgrade sftscale)")
        old = [c for c in _V1_FILE_COLS if c in self._columns()]
        if not old and version == SCHEMA_VERSION:
            return
        with _Tx(self.db):
            if old:
                q = f"SELECT key, cell_dir, {', '.join(old)} FROM cells"
                for r in self.db.execute(q).fetchall():
                    row_ = dict(zip(["key", "cell_dir", *old], r))
                    self.db.executemany(
                        "INSERT OR REPLACE INTO files(cell, stage, path, sha) VALUES (?,?,?,?)",
                        [(row_["key"], *f) for f in _v1_files(row_)])
                for c in old:
                    self.db.execute(f"ALTER TABLE cells DROP COLUMN {c}")
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),))

    def quick_check(self) -> str | None:
        """None when SQLite's quick_check finds the file sound, else what it found."""
        try:
            rows = [r[0] for r in self.db.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as e:
            return str(e)
        return None if rows == ["ok"] else "; ".join(rows[:3])

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection (a closed store has none: a bug to use it then)."""
        if self._db is None:
            raise RuntimeError(f"the store {self.path} is closed")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        self.close()
        if isinstance(ev, sqlite3.Error):  # a query inside the block: say what it means
            raise _store_error(self.path, ev) from None

    # --- transactions ------------------------------------------------------------------
    def _tx(self) -> "_Tx":
        return _Tx(self.db)

    # --- meta --------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, **kv: Any) -> None:
        with self._tx():
            self.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in kv.items()])

    # --- cells -------------------------------------------------------------------------
    def sync(self, cells: Sequence[Cell]) -> tuple[int, list[str]]:
        """Insert new cells as pending; return (number added, keys whose spec changed)."""
        added, changed = 0, []
        with self._tx():
            have = {r["key"]: r["spec_hash"] for r in self.db.execute("SELECT key, spec_hash FROM cells")}
            for i, c in enumerate(cells):
                if c.key in have:
                    if have[c.key] != c.spec_hash:
                        changed.append(c.key)
                        self.db.execute("UPDATE cells SET ord=? WHERE key=?", (i, c.key))
                    else:  # the same spec; fields outside it (eval_tasks) as configured now
                        self.db.execute("UPDATE cells SET ord=?, spec=? WHERE key=?",
                                        (i, json.dumps(c.to_dict(), sort_keys=True), c.key))
                    continue
                self.db.execute(
                    "INSERT INTO cells(key, ord, model, model_ref, task, task_name, n, seed, spec,"
                    " spec_hash, cell_dir) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (c.key, i, c.model, c.model_ref, c.task, c.task_name, c.n, c.seed,
                     json.dumps(c.to_dict(), sort_keys=True), c.spec_hash, layout.cell_rel(c.key)))
                added += 1
        return added, changed

    def replace_spec(self, cell: Cell) -> None:
        """Forget a cell's results and give it a new spec (used with --rerun-changed)."""
        with self._tx():
            self._clear_results(cell.key)
            self.db.execute("UPDATE cells SET spec=?, spec_hash=?, model_ref=?, task_name=?,"
                            " state='pending', error=NULL, traceback=NULL WHERE key=?",
                            (json.dumps(cell.to_dict(), sort_keys=True), cell.spec_hash,
                             cell.model_ref, cell.task_name, cell.key))

    def reset_interrupted(self) -> int:
        """``running`` cells belong to a process that died: back to pending."""
        with self._tx():
            cur = self.db.execute("UPDATE cells SET state='pending' WHERE state='running'")
            return cur.rowcount

    def retry_failed(self) -> int:
        with self._tx():
            cur = self.db.execute(
                "UPDATE cells SET state='pending', error=NULL, traceback=NULL WHERE state='failed'")
            return cur.rowcount

    def reset(self, key: str) -> None:
        """Back to pending, forgetting recorded results (their files failed verification)."""
        with self._tx():
            self._clear_results(key)
            self.db.execute("UPDATE cells SET state='pending' WHERE key=?", (key,))

    def _clear_results(self, key: str) -> None:
        self.db.execute("DELETE FROM metrics WHERE cell=?", (key,))
        self.db.execute("DELETE FROM items WHERE cell=?", (key,))
        self.db.execute("DELETE FROM files WHERE cell=?", (key,))
        self.db.execute("UPDATE cells SET n_items=NULL, rows_sha=NULL WHERE key=?", (key,))

    def mark_running(self, key: str, worker: str = "") -> None:
        with self._tx():
            self.db.execute("UPDATE cells SET state='running', attempts=attempts+1, worker=?,"
                            " started_at=? WHERE key=?", (worker, time.time(), key))

    def record_done(self, key: str, outcome: dict[str, Any], metrics: dict[str, float],
                    items: Iterable[dict[str, Any]]) -> None:
        """Everything about a finished cell, in one transaction (``outcome["files"]``:
        [stage, path, sha] rows)."""
        with self._tx():
            self._clear_results(key)
            self.db.executemany("INSERT INTO files(cell, stage, path, sha) VALUES (?,?,?,?)",
                                [(key, s, p, h) for s, p, h in outcome.get("files") or ()])
            self.db.executemany("INSERT INTO metrics(cell, metric, value) VALUES (?,?,?)",
                                [(key, m, _num(v)) for m, v in metrics.items()])
            self.db.executemany(
                "INSERT INTO items(cell, idx, item_id, correct, format_ok, fields) VALUES (?,?,?,?,?,?)",
                [(key, it["idx"], str(it["item_id"]), _bool(it.get("correct")),
                  _bool(it.get("format_ok")), json.dumps(it.get("fields") or {}, sort_keys=True))
                 for it in items])
            cols = [c for c in _OUTCOME_COLS if c in outcome]
            sets = ", ".join(f"{c}=?" for c in cols)
            self.db.execute(f"UPDATE cells SET {sets}{', ' if sets else ''}state='done', error=NULL,"
                            " traceback=NULL, finished_at=? WHERE key=?",
                            [_col(outcome[c]) for c in cols]
                            + [outcome.get("finished_at") or time.time(), key])
            self.db.execute("UPDATE cells SET rows_sha=? WHERE key=?", (self.rows_sha_now(key), key))

    def stored_rows(self, key: str) -> tuple[dict, list]:
        """(metrics, item rows) the store holds for ``key``, in ``stored_form``."""
        ms = {m: v for m, v in self.db.execute("SELECT metric, value FROM metrics WHERE cell=?",
                                                (key,))}
        its = [tuple(r) for r in self.db.execute("SELECT idx, item_id, correct, format_ok, fields"
                                                 " FROM items WHERE cell=? ORDER BY idx", (key,))]
        return ms, its

    def rows_sha_now(self, key: str) -> str:
        """Checksum of what the store holds now for cell ``key``: its metric rows, its item
        rows and n_items (compare with the cell's ``rows_sha``, taken when it was recorded)."""
        import hashlib

        h = hashlib.sha256()
        h.update(repr(self.db.execute("SELECT n_items FROM cells WHERE key=?", (key,)).fetchone()[0])
                 .encode())
        for m, v in self.db.execute("SELECT metric, value FROM metrics WHERE cell=? ORDER BY metric",
                                    (key,)):
            h.update(f"\nm\t{m}\t{v!r}".encode())
        for row in self.db.execute("SELECT idx, item_id, correct, format_ok, fields FROM items"
                                   " WHERE cell=? ORDER BY idx", (key,)):
            h.update(("\ni\t" + "\t".join(map(repr, tuple(row)))).encode())
        return h.hexdigest()

    def set_rows_sha(self, key: str, value: str) -> None:
        """Fill in ``rows_sha`` of a done cell recorded before the column existed."""
        with self._tx():
            self.db.execute("UPDATE cells SET rows_sha=? WHERE key=?", (value, key))

    def add_file(self, key: str, stage: str, path: str, sha: str) -> None:
        """Record one more hashed file of a done cell (one the store did not know yet)."""
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO files(cell, stage, path, sha) VALUES (?,?,?,?)",
                            (key, stage, path, sha))

    def record_failed(self, key: str, error: str, traceback_path: str | None = None,
                      outcome: dict[str, Any] | None = None) -> None:
        outcome = outcome or {}
        with self._tx():
            cols = [c for c in ("train_s", "eval_s", "stage_s", "wall_s", "overhead_s", "worker",
                                "started_at") if c in outcome]
            sets = "".join(f", {c}=?" for c in cols)
            self.db.execute(f"UPDATE cells SET state='failed', error=?, traceback=?{sets},"
                            " finished_at=? WHERE key=?",
                            [error, traceback_path] + [_col(outcome[c]) for c in cols]
                            + [time.time(), key])

    def add_overhead(self, key: str, seconds: float) -> None:
        with self._tx():
            self.db.execute("UPDATE cells SET overhead_s=COALESCE(overhead_s, 0)+? WHERE key=?",
                            (seconds, key))

    # --- reading -----------------------------------------------------------------------
    def cells(self, state: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM cells"
        args: tuple = ()
        if state is not None:
            q += " WHERE state=?"
            args = (state,)
        return [dict(r) for r in self.db.execute(q + " ORDER BY ord, key", args)]

    def cell(self, key: str) -> dict[str, Any] | None:
        r = self.db.execute("SELECT * FROM cells WHERE key=?", (key,)).fetchone()
        return None if r is None else dict(r)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for s, k in self.db.execute("SELECT state, COUNT(*) FROM cells GROUP BY state"):
            out[s] = k
        return out

    def files(self, key: str | None = None) -> dict[str, dict[str, dict[str, str | None]]]:
        """{cell: {stage: {path: sha}}} of the recorded files (stages in recorded order);
        of a schema-1 store opened read-only, derived from its per-file columns."""
        out: dict[str, dict[str, dict[str, str | None]]] = {}
        if self._v1:
            rows: Iterable[tuple] = ((c["key"], *f) for c in self.cells() if key in (None, c["key"])
                                     for f in _v1_files(c))
        else:
            q, args = "SELECT cell, stage, path, sha FROM files", ()  # type: tuple[str, tuple]
            if key is not None:
                q, args = q + " WHERE cell=?", (key,)
            rows = self.db.execute(q + " ORDER BY rowid", args)
        for cell, stage, path, sha in rows:
            out.setdefault(cell, {}).setdefault(stage, {})[path] = sha
        return out

    def metrics(self, key: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT cell, metric, value FROM metrics"
        args: tuple = ()
        if key is not None:
            q += " WHERE cell=?"
            args = (key,)
        return [dict(r) for r in self.db.execute(q + " ORDER BY cell, metric", args)]

    def iter_items(self, key: str | None = None) -> Iterator[dict[str, Any]]:
        q = "SELECT cell, idx, item_id, correct, format_ok, fields FROM items"
        args: tuple = ()
        if key is not None:
            q += " WHERE cell=?"
            args = (key,)
        for r in self.db.execute(q + " ORDER BY cell, idx", args):
            d = dict(r)
            d["fields"] = json.loads(d["fields"]) if d["fields"] else {}
            yield d


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """``mode=ro``; ``immutable=1`` where the -shm file cannot be made (read-only directory)."""
    if not path.is_file():
        raise InputError(path, f"no study store here (expected {layout.STORE})")
    uri = "file:" + _uri_path(path) + "?mode=ro"
    db = None
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.Error as e:
        if db is not None:
            db.close()
        if not isinstance(e, sqlite3.OperationalError) or \
                ("unable to open" not in str(e) and "readonly" not in str(e)):
            raise
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        log.warning("%s: read-only directory with a -wal file: reading without the "
                    "transactions still in it (a `sftscale run` with write access folds them in)",
                    path)
    db = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, timeout=30)
    db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    return db


def _uri_path(path: Path) -> str:
    from urllib.parse import quote

    return quote(str(path.resolve()), safe="/")


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


def _v1_files(row: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(stage, path, sha) rows of a schema-1 cell row (empty for a cell without results)."""
    out = []
    if row.get("train_meta"):
        out.append((layout.TRAIN, row["train_meta"], row.get("train_meta_sha")))
    ckpt = row.get("ckpt_sha")
    if row.get("train_meta") and ckpt and ckpt not in ("none", "missing"):
        cdir = row.get("cell_dir") or layout.cell_rel(row["key"])
        out.append((layout.TRAIN, f"{cdir}/{layout.TRAIN}/{layout.CKPT}", ckpt))
    for col in ("results", "samples"):
        if row.get(col):
            out.append((layout.EVAL, row[col], row.get(f"{col}_sha")))
    return out


def _col(v: Any) -> Any:
    """A value for a cells column: dicts (``stage_s``) as JSON."""
    return json.dumps(v) if isinstance(v, dict) else v  # insertion order: the stage order


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _bool(v: Any) -> int | None:
    return None if v is None else int(bool(v))


def stored_form(metrics: dict[str, Any], items: Iterable[dict[str, Any]]) -> tuple[dict, list]:
    """(metrics, item rows) as ``record_done`` would store them (for comparisons with the
    store's rows: ``Store.stored_rows``)."""
    return ({m: _num(v) for m, v in metrics.items()},
            [(it["idx"], str(it["item_id"]), _bool(it.get("correct")), _bool(it.get("format_ok")),
              json.dumps(it.get("fields") or {}, sort_keys=True)) for it in items])


__all__ = ["SCHEMA_VERSION", "STATES", "Store", "StoreDamaged", "stored_form"]
