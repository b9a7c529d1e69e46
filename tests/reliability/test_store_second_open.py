"""A driver that opens the run store again (a sweep's pool: a store per submitted run, a connection
per thread) while it already holds a connection must keep seeing what other processes record.
Opening the database file outside SQLite and closing it dropped the process's SQLite locks (POSIX
locks belong to the process, and any close of the file releases them): the next process to close
its connection took itself for the last one and deleted the WAL, and the driver went on reading
the deleted one, never seeing its runs end (a Kubernetes sweep waited forever)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO
from dockrun.store.records import RunRecord, RunStore

OTHER_PROCESS = """
import sys
from pathlib import Path
from dockrun.store.records import RunStore
RunStore(Path(sys.argv[1])).update(sys.argv[2], reason=sys.argv[3])
print("recorded", flush=True)
sys.stdin.read()  # open until told: another process using the store meanwhile
"""


def _record(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, status="SCHEDULED", created=time.time(), uri="/p", source_key="k", project="p",
                     entry_point="main", parameters={}, command="true", image="i", env_key="e", outputs="/o")


def _other(home: Path, run_id: str, reason: str) -> subprocess.Popen:  # a run's owner: opens, records
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-c", OTHER_PROCESS, str(home), run_id, reason], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"recorded\n"
    return p


def _exit(p: subprocess.Popen) -> None:
    p.stdin.close()
    assert p.wait(timeout=60) == 0


def test_a_second_store_in_the_driver_keeps_its_first_connection_current(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = RunStore(home)
    first.insert(_record("r1"))
    assert first.get("r1").reason is None  # this thread's connection, open and in WAL mode
    RunStore(home).get("r1")  # another store in the same process, as each submit makes
    _exit(_other(home, "r1", "one"))  # closes last (it thought): deleted the WAL under us
    assert first.get("r1").reason == "one"
    second = _other(home, "r1", "two")  # writes to a new WAL, which we must read
    try:
        assert first.get("r1").reason == "two", "the driver reads a deleted WAL: it never sees a run end"
    finally:
        _exit(second)
