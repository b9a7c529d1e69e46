"""Exclusive file locks under DOCKRUN_HOME/locks, across processes and threads (flock locks an open
file description, so two threads opening the file separately exclude each other too), the private
DOCKRUN_HOME they live in, and whole-file writes that other processes read concurrently."""
from __future__ import annotations

import fcntl
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(home: Path, name: str) -> Iterator[None]:
    make_private_dir(home)
    locks = home / "locks"
    locks.mkdir(exist_ok=True)
    path = locks / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".lock")
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def make_private_dir(path: Path) -> None:
    """DOCKRUN_HOME holds commands, parameters, logs, private code and the caches builds and runs
    trust: readable by its owner only (0700), like ~/.ssh, and created so by whichever command comes
    first. An existing folder keeps the read access its owner gave it, but one that another user
    owns or may write to is refused: what is cached there would be run as the caller."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode passes through the umask
        return
    from .errors import ConfigError

    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"DOCKRUN_HOME={path}: not a folder; set DOCKRUN_HOME to a folder of your own")
    if st.st_uid != os.getuid():
        raise ConfigError(f"DOCKRUN_HOME={path}: owned by uid {st.st_uid}, not by you (uid {os.getuid()}); "
                          "set DOCKRUN_HOME to a folder of your own")
    if st.st_mode & 0o022:
        raise ConfigError(f"DOCKRUN_HOME={path}: other users may write to it (mode {stat.S_IMODE(st.st_mode):o}); "
                          f"chmod 700 {path}")


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never half of
    one (a temporary file beside it, then a rename). ``mode``: else mkstemp's 0600."""
    import tempfile  # here: the locks themselves are on every command's path, writes are not

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
