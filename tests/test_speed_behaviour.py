"""What the warm path's shortcuts must keep true: the tree hash's stat cache is used and never
trusted past a change; an up-to-date run store skips its schema; a run's driver is woken, not
left polling. Behaviour only; how fast is measured in bench/."""
from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import write_project
from dockrun.project import treehash
from dockrun.project.treehash import tree_hash


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files whose bytes tree_hash read, in order."""
    seen: list[str] = []
    real = treehash._read_into

    def counting(digest: treehash.TreeDigest, path: Path) -> None:
        seen.append(path.name)
        real(digest, path)

    monkeypatch.setattr(treehash, "_read_into", counting)
    return seen


def _age(root: Path, seconds: float = 60) -> None:
    """Make every file look settled: written long before the hash (the cache never trusts a
    file written within the last two seconds)."""
    old = time.time() - seconds
    for p in root.rglob("*"):
        os.utime(p, (old, old), follow_symlinks=False)


def _key_as_defined(root: Path, files: list[str], links: list[str]) -> str:
    """The source key spelled out independently: SHA-256 over sorted entries, each its path, kind,
    length and bytes (a link: its target). The cache must never change it."""
    import hashlib

    h = hashlib.sha256()
    for rel in sorted(files + links):
        path = root / rel
        if rel in links:
            target = os.readlink(path).encode()
            h.update(rel.encode() + b"\0l\0" + b"%d\0" % len(target) + target)
        else:
            data = path.read_bytes()
            kind = b"x" if path.stat().st_mode & 0o111 else b"f"
            h.update(rel.encode() + b"\0" + kind + b"\0" + b"%d\0" % len(data) + data)
    return h.hexdigest()


def _wait_out_racy_window() -> None:
    # ctime cannot be set back; the cache compares it with the clock, so wait out its window.
    time.sleep(2.1)


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust files written before the hash started (the real window is two seconds, waited out
    once in the first test)."""
    monkeypatch.setattr(treehash, "_RACY_NS", 0)


def test_cached_hash_is_the_uncached_hash_and_skips_reading(tmp_path: Path, reads: list[str]) -> None:
    root = write_project(tmp_path / "p", {"a.py": "1", "d/b.py": "2" * 5000, ".dockerignore": "*.tmp\n"})
    os.symlink("a.py", root / "link")
    (root / "x.tmp").write_text("ignored")
    _age(root)
    _wait_out_racy_window()
    cache = tmp_path / "cache"
    uncached = tree_hash(root)
    assert uncached == _key_as_defined(root, [".dockerignore", "a.py", "d/b.py"], ["link"])
    assert tree_hash(root, cache) == uncached  # the first cached call reads and stores
    assert len(list(cache.iterdir())) == 1
    reads.clear()
    assert tree_hash(root, cache) == uncached
    assert reads == []  # a walk of stats, no file read


def test_a_folder_project_is_hashed_through_the_homes_cache(tmp_path: Path, reads: list[str], settled: None) -> None:
    from dockrun.project.resolve import resolve_source

    root = write_project(tmp_path / "p", {"MLproject": "name: p\n", "a.py": "1"})
    home = tmp_path / "home"
    first = resolve_source(str(root), home=home)
    reads.clear()
    assert resolve_source(str(root), home=home).key == first.key == tree_hash(root)
    assert reads == ["MLproject", "a.py"]  # only the uncached tree_hash(root) read them
    assert list((home / "cache" / "treehash").iterdir())


def test_content_change_with_size_and_mtime_restored_is_seen(tmp_path: Path, reads: list[str], settled: None) -> None:
    root = write_project(tmp_path / "p", {"a.py": "one", "b.py": "two"})
    _age(root)
    cache = tmp_path / "cache"
    before = tree_hash(root, cache)
    st = (root / "a.py").stat()
    with open(root / "a.py", "r+b") as f:  # in place: same inode, same size
        f.write(b"ONE")
    os.utime(root / "a.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (root / "a.py").stat().st_mtime_ns == st.st_mtime_ns and (root / "a.py").stat().st_size == st.st_size
    reads.clear()
    after = tree_hash(root, cache)
    assert after != before and after == tree_hash(root)
    assert "a.py" in reads


def test_replaced_file_with_same_stats_is_seen(tmp_path: Path, settled: None) -> None:
    root = write_project(tmp_path / "p", {"a.py": "one"})
    _age(root)
    cache = tmp_path / "cache"
    before = tree_hash(root, cache)
    st = (root / "a.py").stat()
    (root / "new").write_text("two")  # same size, another inode, renamed over the old file
    os.utime(root / "new", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(root / "new", root / "a.py")
    assert tree_hash(root, cache) != before


def test_recently_written_files_are_not_cached(tmp_path: Path, reads: list[str]) -> None:
    """A file written within the timestamp granularity of the hash could change again unseen."""
    root = write_project(tmp_path / "p", {"a.py": "1"})  # written just now
    cache = tmp_path / "cache"
    h = tree_hash(root, cache)
    assert not cache.exists() or not list(cache.iterdir())
    reads.clear()
    assert tree_hash(root, cache) == h
    assert reads == ["a.py"]


def test_renames_adds_and_removals_miss_the_cache(tmp_path: Path, settled: None) -> None:
    root = write_project(tmp_path / "p", {"a.py": "1", "b.py": "2"})
    _age(root)
    cache = tmp_path / "cache"
    seen = {tree_hash(root, cache)}
    (root / "a.py").rename(root / "c.py")
    seen.add(tree_hash(root, cache))
    (root / "b.py").unlink()
    seen.add(tree_hash(root, cache))
    assert len(seen) == 3
    assert tree_hash(root, cache) == tree_hash(root)


def test_damaged_cache_file_is_a_miss(tmp_path: Path, settled: None) -> None:
    root = write_project(tmp_path / "p", {"a.py": "1"})
    _age(root)
    cache = tmp_path / "cache"
    h = tree_hash(root, cache)
    for f in cache.iterdir():
        f.write_text("{not json")
    assert tree_hash(root, cache) == h


def test_a_run_store_made_by_an_older_dockrun_is_migrated(tmp_path: Path) -> None:
    from dockrun.store.records import RunStore

    home = tmp_path / "h"
    home.mkdir()
    with sqlite3.connect(home / "runs.db") as db:  # the first release's table, no user_version
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, created REAL NOT NULL,"
                   " started REAL, ended REAL, uri TEXT NOT NULL, commit_sha TEXT, source_key TEXT NOT NULL,"
                   " subdirectory TEXT NOT NULL DEFAULT '', project TEXT NOT NULL, entry_point TEXT NOT NULL,"
                   " parameters TEXT NOT NULL, command TEXT NOT NULL, image TEXT NOT NULL, env_key TEXT NOT NULL,"
                   " container_id TEXT, outputs TEXT NOT NULL, exit_code INTEGER, reason TEXT,"
                   " supervisor_pid INTEGER, supervisor_start TEXT, driver_pid INTEGER, driver_start TEXT)")
    assert RunStore(home).list() == []
    with sqlite3.connect(home / "runs.db") as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert {"backend", "tracking_uri", "dirty"} <= columns


def test_an_up_to_date_run_store_skips_its_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockrun.store import records

    home = tmp_path / "h"
    records.RunStore(home).list()  # creates it
    calls: list[int] = []
    real = records._migrate
    monkeypatch.setattr(records, "_migrate", lambda db: (calls.append(1), real(db)))
    records.RunStore(home).list()
    assert calls == []
    with sqlite3.connect(home / "runs.db") as db:  # as a dockrun with another schema would leave it
        db.execute("PRAGMA user_version = 1")
    records.RunStore(home).list()
    assert calls == [1]
    records.RunStore(home).list()
    assert calls == [1]


def test_the_wake_line(tmp_path: Path) -> None:
    from dockrun.backends.local.wake import listen, notifier

    notifier(tmp_path).poke()  # nobody made the FIFO: a wake to nobody, no error
    listener = listen(tmp_path)
    assert listener.wait(0) is False
    supervisor = notifier(tmp_path)
    supervisor.poke()
    supervisor.poke()
    assert listener.wait(10) is True
    assert listener.wait(0) is False  # both wakes were taken at once
    supervisor.close()  # the supervisor's end is a wake too
    assert listener.wait(10) is True
    assert not (tmp_path / "wake").exists()  # and the listener cleans up after itself
    assert listener.wait(0) is False  # from then on it only sleeps


def test_a_wake_with_no_one_listening_is_dropped(tmp_path: Path) -> None:
    from dockrun.backends.local.wake import listen, notifier

    os.mkfifo(tmp_path / "wake")
    notifier(tmp_path).poke()  # a FIFO nobody holds open: ENXIO, no error
    (tmp_path / "wake").unlink()
    listener = listen(tmp_path)
    supervisor = notifier(tmp_path)
    listener.close()  # the driver went away
    supervisor.poke()  # EPIPE, no error, no SIGPIPE
    supervisor.poke()
    supervisor.close()


def test_the_driver_is_woken_when_the_run_starts_and_ends(
        tmp_path: Path, home: Path, base_image: str, monkeypatch: pytest.MonkeyPatch,
        capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    import dockrun
    from dockrun.backends.local import runs, wake

    woken: list[bool] = []
    real = wake.Listener.wait

    def counting(self: wake.Listener, timeout: float) -> bool:
        woken.append(real(self, timeout))
        return woken[-1]

    monkeypatch.setattr(wake.Listener, "wait", counting)
    # The follower's poll, there for output, is made longer than the run: a wait that ends in a
    # timeout would have been a poll. With the usual 25 ms poll a timeout can fall between the
    # supervisor recording the end and its wake, and the test said nothing about wakes.
    monkeypatch.setattr(runs, "POLL_S", 60.0)
    # The sleep keeps the run going until the driver is surely following it, however busy the machine.
    root = write_project(tmp_path / "p", {"MLproject": f"name: wakes\ndocker_env:\n  image: {base_image}\n"
                                          "entry_points:\n  main:\n    command: sleep 2; echo hello from the run\n"})
    run = dockrun.execute(str(root), synchronous=True)
    assert run.get_status() == "FINISHED"
    assert b"hello from the run" in capfdbinary.readouterr().out
    # Every wait of the follower ended on one of the supervisor's wakes, the last one included.
    assert woken and all(woken), woken
    assert not (home / "runs" / run.run_id / "wake").exists()


def test_a_detached_run_leaves_its_driver_no_wake_line(tmp_path: Path, home: Path, base_image: str) -> None:
    """A driver may hold many detached runs: none of them keeps a descriptor open in it."""
    import dockrun

    root = write_project(tmp_path / "p", {"MLproject": f"name: detached\ndocker_env:\n  image: {base_image}\n"
                                          "entry_points:\n  main:\n    command: sleep 1\n"})
    run = dockrun.execute(str(root), synchronous=False)
    assert not (home / "runs" / run.run_id / "wake").exists()
    assert run.wait(timeout=120) and run.get_status() == "FINISHED"


def test_the_driver_waits_for_running_on_its_wake_line(
        tmp_path: Path, home: Path, base_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the supervisor starts the container, the submitting driver waits on the wake line
    with a long fallback timeout (it does not poll the record), and the supervisor's wake at
    RUNNING is what ends that wait."""
    import dockrun
    from dockrun.backends.local import runs, wake

    waits: list[tuple[float, bool]] = []
    real = wake.Listener.wait

    def recording(self: wake.Listener, timeout: float) -> bool:
        waits.append((timeout, real(self, timeout)))
        return waits[-1][1]

    monkeypatch.setattr(wake.Listener, "wait", recording)
    root = write_project(tmp_path / "p", {"MLproject": f"name: startwake\ndocker_env:\n  image: {base_image}\n"
                                          "entry_points:\n  main:\n    command: sleep 1\n"})
    run = dockrun.execute(str(root), synchronous=False)
    assert run.get_status() in ("RUNNING", "FINISHED")
    long_waits = [woken for timeout, woken in waits if timeout == runs.WOKEN_POLL_S]
    assert long_waits and long_waits[-1] is True, waits
    assert all(timeout in (runs.WOKEN_POLL_S, runs.POLL_S) for timeout, _ in waits)
    assert run.wait(timeout=120) and run.get_status() == "FINISHED"
