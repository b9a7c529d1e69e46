"""Exclusive file locks under DOCKRUN_HOME/locks, across processes and threads (flock locks an open
file description, so two threads opening the file separately exclude each other too)."""
from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(home: Path, name: str) -> Iterator[None]:
    locks = home / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".lock")
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
