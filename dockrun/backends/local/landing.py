"""What lands on the host from a run: its outputs moved into place (files.py) and a remote run's
files copied back (transfer.py), within ``DOCKRUN_COPY_BACK_LIMIT``. Links that lead out of their
folder are not created (counted, and said once); a file is written through a temporary file
beside it, so a half-written file is never seen.

Apart from transfer.py, which a run on a local engine never needs (tar streams, a spool): every
local run's end uses this.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Callable

from ...errors import ConfigError

CHUNK = 1 << 20
LIMIT_ENV = "DOCKRUN_COPY_BACK_LIMIT"
DEFAULT_COPY_BACK_LIMIT = 2 << 30  # as an archive's unpacked size
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def copy_back_limit(environ: Mapping[str, str]) -> int:
    """How many bytes a remote run's copy-back may write: ``DOCKRUN_COPY_BACK_LIMIT`` (bytes, or
    with a K, M, G or T suffix, binary), else 2 GiB."""
    text = environ.get(LIMIT_ENV, "").strip().upper().removesuffix("B").removesuffix("I")
    if not text:
        return DEFAULT_COPY_BACK_LIMIT
    number, unit = (text[:-1], text[-1]) if text[-1] in _UNITS else (text, "")
    if not number.isdigit() or int(number) <= 0:
        raise ConfigError(f"{LIMIT_ENV}={environ[LIMIT_ENV]!r}: expected a size in bytes, such as 2G or 500M")
    return int(number) * _UNITS[unit]


class Dropped:
    """Links not created because they lead out of their folder: counted, and said once."""

    def __init__(self) -> None:
        self.count, self.first = 0, ""

    def add(self, name: str, target: str) -> None:
        self.count += 1
        self.first = self.first or f"{name} -> {target}"

    def report(self, log: Callable[[str], None]) -> None:
        if self.count:
            log(f"{self.count} link(s) in the run's outputs led outside their folder and were not created "
                f"(the first: {self.first})")


def leads_out(rel: str, target: str) -> bool:
    """Does a link at ``rel`` (a path inside its folder) pointing at ``target`` lead out of it?"""
    if os.path.isabs(target):
        return True
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    return resolved == ".." or resolved.startswith("../")


def write_file(data: IO[bytes] | None, path: str, mode: int) -> None:
    """Write through a temporary file in the same folder; keep the old file when it is the same."""
    if data is None:
        return
    import filecmp
    import tempfile  # here: imported with shutil and random, and most runs write no file this way

    fd, tmp = tempfile.mkstemp(prefix=".dockrun-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := data.read(CHUNK):
                out.write(chunk)
        if os.path.isfile(path) and not os.path.islink(path) and filecmp.cmp(tmp, path, shallow=False):
            os.unlink(tmp)
            return
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
