"""The run store without Docker: transitions, concurrency, upgrades of older databases."""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from dockrun.store.records import _SCHEMA, RunRecord, RunStore


def rec(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, status="SCHEDULED", created=time.time(), uri="/p", source_key="k",
                     project="p", entry_point="main", parameters={"a": "1"}, command="c", image="i",
                     env_key="e", outputs="/o")


def test_transitions_are_guarded(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.insert(rec("r1"))
    assert store.transition("r1", "RUNNING", ("SCHEDULED",))
    assert store.transition("r1", "KILLED", ("SCHEDULED", "RUNNING"), reason="cancelled")
    store.finish("r1", "FINISHED", 0, None)  # the natural end loses to the cancel...
    r = store.get("r1")
    assert r.status == "KILLED" and r.reason == "cancelled" and r.exit_code == 0 and r.over  # ...but is recorded


def test_only_one_of_many_racers_wins(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.insert(rec("r1"))
    wins = []

    def race(to: str) -> None:
        if RunStore(tmp_path).transition("r1", to, ("SCHEDULED",)):
            wins.append(to)

    threads = [threading.Thread(target=race, args=(s,)) for s in ["RUNNING", "KILLED", "FAILED"] * 5]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and store.get("r1").status == wins[0]


def test_prefix_lookup(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.insert(rec("abcdef0123"))
    store.insert(rec("abcdff0123"))
    assert store.get("abcde").run_id == "abcdef0123"
    assert store.get("abcd") is None  # ambiguous
    assert store.get("ab") is None  # too short to guess


def test_database_from_an_older_version_is_upgraded(tmp_path: Path) -> None:
    old_schema = _SCHEMA  # the first release had no 'dirty' column
    with sqlite3.connect(tmp_path / "runs.db") as db:
        db.executescript(old_schema)
        db.execute("INSERT INTO runs (run_id, status, created, uri, source_key, project, entry_point, parameters,"
                   " command, image, env_key, outputs) VALUES ('old', 'FINISHED', 1, '/p', 'k', 'p', 'main', '{}',"
                   " 'c', 'i', 'e', '/o')")
    store = RunStore(tmp_path)
    assert store.get("old").dirty is False
    store.insert(rec("new"))
    assert [r.run_id for r in store.list()] == ["new", "old"]


def _first_opens(home: Path, n: int) -> list[BaseException]:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def first_open(i: int) -> None:
        try:
            barrier.wait()
            RunStore(home).insert(rec(f"r{i}"))
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=first_open, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_first_opens_of_a_new_store_in_parallel(tmp_path: Path) -> None:
    """Parallel runs on a fresh DOCKRUN_HOME (a sweep's first trials): switching the new database
    to WAL must not fail with 'database is locked'."""
    for round_ in range(30):
        home = tmp_path / f"h{round_}"
        assert _first_opens(home, 16) == []
        assert len(RunStore(home).list()) == 16


def test_prefixes_are_text_not_patterns(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.insert(rec("abcd0123456789ef"))
    assert store.get("abcd").run_id == "abcd0123456789ef"
    for pattern in ("%", "%%%%", "abc%", "____", "ab_d"):
        assert store.get(pattern) is None, pattern


def test_an_older_dockrun_reads_a_store_a_newer_one_migrated(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.insert(rec("r-newer"))
    with sqlite3.connect(tmp_path / "runs.db") as db:  # a column some later version added
        db.execute("ALTER TABLE runs ADD COLUMN added_later TEXT DEFAULT 'x'")
    assert RunStore(tmp_path).get("r-newer").run_id == "r-newer"
    assert [r.run_id for r in RunStore(tmp_path).list()] == ["r-newer"]


def test_home_is_private(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        home = tmp_path / "fresh" / "dockrun"
        RunStore(home).insert(rec("r-private"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
