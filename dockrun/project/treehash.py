"""Walk a project tree the way the build context sees it, and hash it.

The same walk feeds the content hash (the image's source key) and the build context, so a file
that is not in the image can never change the key, and every file that is in the image does.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

ALWAYS_IGNORED = (".git", ".dockrun")


@dataclass(frozen=True)
class Entry:
    relpath: str  # POSIX path relative to the root
    mode: int  # st_mode (file type and permission bits)
    path: Path  # absolute path on the host


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool


def read_dockerignore(root: Path) -> tuple[_Rule, ...]:
    path = root / ".dockerignore"
    if not path.is_file():
        return ()
    rules = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = os.path.normpath(pattern).lstrip("/").replace(os.sep, "/")
        if pattern in ("", "."):
            continue
        rules.append(_Rule(_compile(pattern), negate))
    return tuple(rules)


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore syntax (Go filepath.Match plus ``**``); a match on a directory
    also excludes everything below it."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "(?:/.*)?$")


def _ignored(relpath: str, rules: tuple[_Rule, ...]) -> bool:
    ignored = False
    for rule in rules:
        if rule.regex.match(relpath):
            ignored = not rule.negate
    return ignored


def walk(root: Path) -> list[Entry]:
    """Regular files and symlinks under ``root`` that belong in the build context, sorted by path."""
    rules = read_dockerignore(root)
    has_negations = any(r.negate for r in rules)
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in dirnames:
            rel = rel_dir + d
            if d in ALWAYS_IGNORED and not rel_dir:
                continue
            # A later "!pattern" may re-include something below an ignored directory.
            if _ignored(rel, rules) and not has_negations:
                continue
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                filenames.append(d)  # keep the link itself, never follow it
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            rel = rel_dir + name
            if _ignored(rel, rules):
                continue
            full = Path(dirpath) / name
            st = full.lstat()
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                entries.append(Entry(rel, st.st_mode, full))
    entries.sort(key=lambda e: e.relpath)
    return entries


class TreeDigest:
    """The source key of a tree, fed entry by entry: by ``tree_hash`` from the files, and by the
    build context and the Databricks archive from the very bytes they pack, so what is packed can
    be checked against the key it will be stored under."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def link(self, relpath: str, target: str) -> None:
        data = target.encode()
        self._h.update(relpath.encode() + b"\0l\0" + b"%d\0" % len(data) + data)

    def file(self, relpath: str, mode: int, size: int) -> None:
        # Only the executable bit matters to a build; other bits vary by umask. The length prefix
        # keeps one file's bytes from passing for the next entry's header.
        kind = b"x" if mode & 0o111 else b"f"
        self._h.update(relpath.encode() + b"\0" + kind + b"\0" + b"%d\0" % size)

    def data(self, chunk: bytes) -> None:
        self._h.update(chunk)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def reader(self, f: BinaryIO) -> BinaryIO:
        """``f``, with everything read from it also fed to the digest."""
        return _Tee(f, self)


class _Tee:
    def __init__(self, f: BinaryIO, digest: TreeDigest):
        self._f, self._digest = f, digest

    def read(self, n: int = -1) -> bytes:
        chunk = self._f.read(n)
        self._digest.data(chunk)
        return chunk


def tree_hash(root: Path) -> str:
    """SHA-256 over sorted (path, mode, content) entries: renames, mode changes and edits all
    change it; file order on disk and timestamps do not."""
    digest = TreeDigest()
    for entry in walk(root):
        if stat.S_ISLNK(entry.mode):
            digest.link(entry.relpath, os.readlink(entry.path))
            continue
        digest.file(entry.relpath, entry.mode, entry.path.stat().st_size)
        with open(entry.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.data(chunk)
    return digest.hexdigest()
