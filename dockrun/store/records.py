"""Run records: one SQLite database under DOCKRUN_HOME, safe for many processes at once.

Status moves SCHEDULED -> RUNNING -> FINISHED | FAILED | KILLED. Every change is one UPDATE with a
guard on the current status, so two processes can never both decide how a run ended. ``ended``
is set last, by whoever removed the container: a run with ``ended`` set is over and left nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..locks import file_lock, make_private_dir

ACTIVE = ("SCHEDULED", "RUNNING")
TERMINAL = ("FINISHED", "FAILED", "KILLED")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    uri TEXT NOT NULL,
    commit_sha TEXT,
    source_key TEXT NOT NULL,
    subdirectory TEXT NOT NULL DEFAULT '',
    project TEXT NOT NULL,
    entry_point TEXT NOT NULL,
    parameters TEXT NOT NULL,
    command TEXT NOT NULL,
    image TEXT NOT NULL,
    env_key TEXT NOT NULL,
    container_id TEXT,
    outputs TEXT NOT NULL,
    exit_code INTEGER,
    reason TEXT,
    supervisor_pid INTEGER,
    supervisor_start TEXT,
    driver_pid INTEGER,
    driver_start TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created);
CREATE TABLE IF NOT EXISTS images (
    image_id TEXT NOT NULL,
    ref TEXT NOT NULL,
    recorded REAL NOT NULL,
    PRIMARY KEY (image_id, ref)
);
"""
# Columns added after the first release: (name, declaration). A database made by an older dockrun
# gets them on first open, so upgrading never loses or breaks records.
_ADDED_COLUMNS = (
    ("dirty", "INTEGER NOT NULL DEFAULT 0"),
    ("tracking_uri", "TEXT"),
    ("mlflow_run_id", "TEXT"),
    ("experiment_id", "TEXT"),
    ("backend", "TEXT NOT NULL DEFAULT 'local'"),
    ("remote_run_id", "TEXT"),
    ("remote_url", "TEXT"),
    ("dev", "INTEGER NOT NULL DEFAULT 0"),  # the code was mounted from the folder, not in the image
    ("image_id", "TEXT"),  # the image's content ID: what a rerun runs again, whatever the tag names now
    ("options", "TEXT NOT NULL DEFAULT '{}'"),  # the request's other options a rerun repeats (JSON)
    ("rerun_of", "TEXT"),
)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    status: str
    created: float
    uri: str
    source_key: str
    project: str
    entry_point: str
    parameters: dict[str, str]
    command: str
    image: str
    env_key: str
    outputs: str
    started: float | None = None
    ended: float | None = None
    commit_sha: str | None = None
    dirty: bool = False
    subdirectory: str = ""
    container_id: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    supervisor_pid: int | None = None
    supervisor_start: str | None = None
    driver_pid: int | None = None
    driver_start: str | None = None
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None
    experiment_id: str | None = None
    backend: str = "local"
    remote_run_id: str | None = None
    remote_url: str | None = None
    dev: bool = False
    image_id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    rerun_of: str | None = None

    @property
    def over(self) -> bool:
        return self.ended is not None


def _close_before_fork() -> None:
    alone = threading.active_count() == 1
    for store in list(_KEPT):
        store.close(every_thread=alone)


# SQLite's own state must not cross fork(): a connection open in the parent leaves the child's
# SQLite with locks and descriptors that are not its own ("locking protocol", "disk I/O error" on
# its first query). So before any fork every store closes its connections: all of them when this
# is the only thread (as when dockrun forks a supervisor: those of finished threads, such as a
# sweep's pool, may not have been collected yet), else the forking thread's own (another thread
# may be using its connection right now). The next operation opens a new one. The registry holds
# the stores weakly.
_KEPT: weakref.WeakSet = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_before_fork)


def _close_connections(conns: dict[int, tuple[int, sqlite3.Connection]], lock: threading.Lock,
                       thread: int | None = None) -> None:
    """Close this process's connections in ``conns`` (only ``thread``'s, if given); inherited ones
    are never closed here."""
    pid = os.getpid()
    with lock:
        chosen = [t for t, (owner, _) in conns.items() if owner == pid and thread in (None, t)]
        closing = [conns.pop(t)[1] for t in chosen]
    for db in closing:
        db.close()


class RunStore:
    """Access to the run database. Cheap to create; each thread of each process that uses it opens
    one connection on first use and keeps it (closed before a fork, see _close_before_fork).

    A connection per operation cost a run about 2 ms per operation (a run makes about eight):
    opening three files, and the last connection's close checkpointing the WAL and deleting it with
    five fsyncs, only for the next operation to create it again. A kept connection with
    ``synchronous = NORMAL`` (WAL mode's recommended setting: a commit is atomic and consistent
    after a crash; only a power loss may take back the last commits) makes an operation a few
    hundred microseconds. A connection is used by the thread that opened it only; a forked
    supervisor opens its own."""

    def __init__(self, home: Path):
        self.home = home
        self.path = home / "runs.db"
        self._ready = False
        self._lock = threading.Lock()
        self._conns: dict[int, tuple[int, sqlite3.Connection]] = {}  # thread ident -> (pid, connection)
        # Connections inherited through a fork that did not close them: never used and never closed
        # here (closing one could act on its owner's files); kept referenced so that garbage
        # collection cannot close them either.
        self._inherited: list[sqlite3.Connection] = []
        # A sqlite3.Connection is in a reference cycle (its statement cache), so it outlives a
        # dropped store until the garbage collector runs: a sweep leaves dozens open, and one open
        # at a fork breaks the child's SQLite. So a store closes its connections when it goes.
        weakref.finalize(self, _close_connections, self._conns, self._lock)

    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        thread, pid = threading.get_ident(), os.getpid()
        kept = self._conns.get(thread)
        if kept is not None and kept[0] == pid:
            db = kept[1]
        else:
            if kept is not None:
                self._inherited.append(kept[1])
            db = self._connect()
            with self._lock:
                self._conns[thread] = (pid, db)
            _KEPT.add(self)
        try:
            yield db
        except BaseException:
            if db.in_transaction:  # a kept connection must not keep a half-done transaction (and its lock)
                db.execute("ROLLBACK")
            raise

    def close(self, every_thread: bool = False) -> None:
        """Close this thread's connection (``every_thread``: every thread's, when no other thread
        runs); the next operation opens another."""
        _close_connections(self._conns, self._lock, None if every_thread else threading.get_ident())

    def _connect(self) -> sqlite3.Connection:
        make_private_dir(self.home)
        # The file holds commands, parameters and logs: its owner's only, whatever the umask (SQLite
        # gives its -wal and -shm files the database file's mode). Made only when it is not there:
        # closing a descriptor of the file would drop every SQLite lock this process holds on it
        # (POSIX locks are the process's), and another process closing its connection would then
        # take itself for the last, delete the WAL, and leave this one reading the deleted file.
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        except FileExistsError:
            pass
        # Not checked for the thread: close() may close a finished thread's connection.
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA synchronous = NORMAL")
            if not self._ready:  # once per store object: WAL mode and the schema persist in the file
                # A store stamped with this schema's version is ready as it is: one PRAGMA, no lock.
                if db.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
                    # Switching to WAL needs the database to itself, and SQLite refuses at once ("database
                    # is locked") rather than wait: first opens by parallel runs take turns.
                    with file_lock(self.home, "runs.db"):
                        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                            db.execute("PRAGMA journal_mode = WAL")
                        db.executescript(_SCHEMA)
                        _migrate(db)
                        db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")  # last: only once complete
                self._ready = True
        except BaseException:
            db.close()
            raise
        return db

    def insert(self, record: RunRecord) -> None:
        row = _to_row(record)
        with self._db() as db:
            db.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                       list(row.values()))

    def get(self, run_id: str) -> RunRecord | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None and _PREFIX.fullmatch(run_id):  # a unique prefix is enough, as with git
                # substr, not LIKE: a prefix is matched as text, never as a pattern
                rows = db.execute("SELECT * FROM runs WHERE substr(run_id, 1, ?) = ? LIMIT 2",
                                  (len(run_id), run_id)).fetchall()
                row = rows[0] if len(rows) == 1 else None
        return _from_row(row) if row else None

    def list(self, limit: int = 50) -> list[RunRecord]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM runs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [_from_row(r) for r in rows]

    def count(self) -> int:
        with self._db() as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def unfinished(self) -> list[RunRecord]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM runs WHERE ended IS NULL").fetchall()
        return [_from_row(r) for r in rows]

    def last_use_by_image(self) -> dict[str, float]:
        with self._db() as db:
            return {row[0]: row[1] for row in db.execute("SELECT image, MAX(created) FROM runs GROUP BY image")}

    # The images dockrun built (or pulled under its own names): what `dockrun images` lists and
    # prunes. Labels cannot say it: every image built FROM one of dockrun's inherits its labels.
    def record_image(self, image_id: str, ref: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO images (image_id, ref, recorded) VALUES (?, ?, ?)",
                       (image_id, ref, time.time()))

    def owned_images(self) -> dict[str, frozenset[str]]:
        """Image ID -> the references dockrun gave it."""
        owned: dict[str, set[str]] = {}
        with self._db() as db:
            for image_id, ref in db.execute("SELECT image_id, ref FROM images"):
                owned.setdefault(image_id, set()).add(ref)
        return {k: frozenset(v) for k, v in owned.items()}

    def forget_image(self, image_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM images WHERE image_id = ?", (image_id,))

    def update(self, run_id: str, **fields: Any) -> None:
        with self._db() as db:
            sets = ", ".join(f"{k} = ?" for k in fields)
            db.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", [*fields.values(), run_id])

    def transition(self, run_id: str, to: str, frm: tuple[str, ...], **fields: Any) -> bool:
        """Set status ``to`` only if the run is in one of ``frm``; True if this call changed it."""
        with self._db() as db:
            sets = ", ".join(["status = ?", *(f"{k} = ?" for k in fields)])
            cur = db.execute(
                f"UPDATE runs SET {sets} WHERE run_id = ? AND status IN ({', '.join('?' for _ in frm)})",
                [to, *fields.values(), run_id, *frm],
            )
            return cur.rowcount == 1

    def finish(self, run_id: str, status: str, exit_code: int | None, reason: str | None) -> None:
        """Record the end: the status unless another process already decided it (a cancel), then
        ``ended``, in one transaction."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE runs SET status = ?, reason = COALESCE(reason, ?) WHERE run_id = ? AND status IN (?, ?)",
                (status, reason, run_id, *ACTIVE),
            )
            db.execute("UPDATE runs SET exit_code = COALESCE(exit_code, ?), ended = ? WHERE run_id = ?",
                       (exit_code, time.time(), run_id))
            db.execute("COMMIT")


def _schema_version() -> int:
    """The stamp of a store whose schema and added columns are this dockrun's. Derived from their
    text, so a new column can never be forgotten by a hand-kept number; a store stamped by another
    dockrun (older or newer) differs and runs the idempotent script and migration once more."""
    text = _SCHEMA + repr(_ADDED_COLUMNS)
    return int(hashlib.sha256(text.encode()).hexdigest()[:7], 16) or 1  # 0 is a new database


_SCHEMA_VERSION = _schema_version()


def _migrate(db: sqlite3.Connection) -> None:
    have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    for name, decl in _ADDED_COLUMNS:
        if name not in have:
            try:
                db.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")
            except sqlite3.OperationalError as e:  # another process added it first
                if "duplicate column" not in str(e):
                    raise


def _to_row(r: RunRecord) -> dict[str, Any]:
    row = {k: getattr(r, k) for k in RunRecord.__dataclass_fields__}
    row["parameters"] = json.dumps(r.parameters, sort_keys=True)
    row["options"] = json.dumps(r.options, sort_keys=True)
    return row


def _from_row(row: sqlite3.Row) -> RunRecord:
    # Columns a newer dockrun added are not this one's to read: an older version keeps working.
    data = {k: v for k, v in dict(row).items() if k in RunRecord.__dataclass_fields__}
    data["parameters"] = json.loads(data["parameters"])
    data["options"] = json.loads(data.get("options") or "{}")
    data["dirty"] = bool(data["dirty"])
    data["dev"] = bool(data.get("dev"))
    return RunRecord(**data)


_PREFIX = re.compile(r"[0-9a-f]{4,32}")


def new_run_id() -> str:
    return os.urandom(8).hex()  # 16 random hex digits (the uuid module costs 2 ms to import)
