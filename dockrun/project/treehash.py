"""Walk a project tree the way the build context sees it, and hash it.

The same walk feeds the content hash (the image's source key) and the build context, so a file
that is not in the image can never change the key, and every file that is in the image does.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import ProjectError, SourceError
from ..locks import write_atomic
from .source import project_file

if TYPE_CHECKING:
    import tarfile

ALWAYS_IGNORED = (".git", ".dockrun")
# Errors of the disk being written to, not of the tree being read: full, over quota, too big, read-only.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


@dataclass(frozen=True)
class Entry:
    relpath: str  # POSIX path relative to the root
    mode: int  # st_mode (file type and permission bits)
    path: Path  # absolute path on the host
    st: os.stat_result | None = field(default=None, repr=False, compare=False)  # the walk's lstat


@dataclass(frozen=True)
class _Rule:
    glob: _Glob | _Regex
    negate: bool


def read_dockerignore(root: Path) -> tuple[_Rule, ...]:
    path = root / ".dockerignore"
    if not path.is_file():
        return ()
    path = project_file(root, ".dockerignore")
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
        try:
            rules.append(_Rule(_compile(pattern), negate))
        except re.error as e:
            raise ProjectError(f".dockerignore: pattern {line!r} is not valid ({e.msg})") from None
    return tuple(rules)


@dataclass(frozen=True)
class _Glob:
    """A .dockerignore pattern as a sequence of steps, matched by following every way through it at
    once (Thompson's construction): time linear in the path whatever the pattern. A regex's
    backtracking is exponential in its stars, and the pattern is the project's text.

    Steps: ``("lit", c)``, ``("one",)`` any character but ``/``, ``("class", c)`` a compiled
    ``[...]``, ``("star",)`` any run without ``/``, ``("any",)`` any run (``**``), ``("dirs",)``
    nothing or any run ending in ``/`` (``**/``). A state is a step's index, or ``~index`` inside
    a ``dirs`` run, which it leaves only after a ``/``."""

    steps: tuple[tuple, ...]

    def match(self, path: str) -> bool:
        """As ``^PATTERN(?:/.*)?$``: a match on a folder also matches everything below it."""
        end = len(self.steps)
        states = self._closure({0})
        for c in path:
            if c == "/" and end in states:
                return True
            states = self._closure({n for s in states if s < end for n in self._step(s, c)})
            if not states:
                return False
        return end in states

    def _step(self, s: int, c: str) -> tuple[int, ...]:
        if s < 0 or self.steps[s][0] == "dirs":
            inside = ~s if s >= 0 else s
            return (inside, ~inside + 1) if c == "/" else (inside,)
        kind = self.steps[s][0]
        if kind == "lit":
            return (s + 1,) if c == self.steps[s][1] else ()
        if kind == "one":
            return (s + 1,) if c != "/" else ()
        if kind == "class":
            return (s + 1,) if self.steps[s][1].fullmatch(c) else ()
        if kind == "star":
            return (s,) if c != "/" else ()
        return (s,)  # any

    def _closure(self, states: set[int]) -> frozenset[int]:
        """``states`` and every state reachable from them without a character (past runs that may
        be empty)."""
        todo, seen = list(states), set(states)
        while todo:
            s = todo.pop()
            if 0 <= s < len(self.steps) and self.steps[s][0] in ("star", "any", "dirs") and s + 1 not in seen:
                seen.add(s + 1)
                todo.append(s + 1)
        return frozenset(seen)


@lru_cache(maxsize=256)
def _compile(pattern: str) -> _Glob | _Regex:
    """Docker's .dockerignore syntax (Go filepath.Match plus ``**``); a match on a directory
    also excludes everything below it. An invalid character class raises re.error."""
    steps = glob_steps(pattern)
    runs = sum(step[0] in ("star", "any", "dirs") for step in steps)
    return _Glob(steps) if runs > _REGEX_RUNS else _Regex.of(steps)


def glob_steps(pattern: str) -> tuple[tuple, ...]:
    """A .dockerignore pattern as _Glob's steps."""
    steps: list[tuple] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
                steps.append(("dirs",))
            else:
                steps.append(("any",))
            continue
        if c == "*":
            steps.append(("star",))
        elif c == "?":
            steps.append(("one",))
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                steps.append(("lit", c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                # One character against one class: no backtracking to speak of.
                steps.append(("class", re.compile("[" + body.replace("\\", "\\\\") + "]")))
                i = end
        else:
            steps.append(("lit", c))
        i += 1
    return tuple(steps)


# A pattern with at most this many runs (``*``, ``**``) is matched by a regex: its backtracking is
# at most quadratic in the path, and the regex engine is about 40x faster than _Glob on the usual
# patterns (``*.pyc``, ``**/*.tmp``), which every run's tree walk applies to every file.
_REGEX_RUNS = 2
_REGEX_STEP = {"one": "[^/]", "star": "[^/]*", "any": ".*", "dirs": "(?:.*/)?"}


@dataclass(frozen=True)
class _Regex:
    regex: re.Pattern[str]

    @classmethod
    def of(cls, steps: tuple[tuple, ...]) -> _Regex:
        parts = [re.escape(step[1]) if step[0] == "lit" else step[1].pattern if step[0] == "class"
                 else _REGEX_STEP[step[0]] for step in steps]
        return cls(re.compile("^" + "".join(parts) + "(?:/.*)?$"))

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def _ignored(relpath: str, rules: tuple[_Rule, ...]) -> bool:
    ignored = False
    for rule in rules:
        if rule.glob.match(relpath):
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
                entries.append(Entry(rel, st.st_mode, full, st))
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

    def pack_file(self, tar: tarfile.TarFile, info: tarfile.TarInfo, entry: Entry, root: Path) -> None:
        """Add a regular file to ``tar`` and to the digest from the same bytes."""
        self.file(entry.relpath, entry.mode, info.size)
        try:
            with open_entry(entry.path) as f:
                tar.addfile(info, self.reader(f))
        except OSError as e:  # it shrank (tarfile reads exactly the size it was told) or vanished
            if e.errno in DISK_ERRNOS:  # or the disk the tar is written to is full: the caller says so
                raise
            raise tree_changed(root) from None

    def verify(self, root: Path, expected_key: str) -> None:
        """What was packed must be the tree the key names: an image or archive stored under a key
        that names other code would be reused forever."""
        if self.hexdigest() != expected_key:
            raise tree_changed(root)


def open_entry(path: Path) -> BinaryIO:
    """A regular file the walk found, opened for reading without following a link: one put in its
    place since the walk (whose lstat said it was a file) fails instead of reading elsewhere."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def tree_changed(root: Path) -> SourceError:
    return SourceError(f"{root}: the project's files changed while dockrun was reading them; run again")


class _Tee:
    def __init__(self, f: BinaryIO, digest: TreeDigest):
        self._f, self._digest = f, digest

    def read(self, n: int = -1) -> bytes:
        chunk = self._f.read(n)
        self._digest.data(chunk)
        return chunk


def tree_hash(root: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 over sorted (path, mode, content) entries: renames, mode changes and edits all
    change it; file order on disk and timestamps do not.

    With ``cache_dir``, an unchanged tree costs a walk of stats instead of a read of every byte:
    the last result is kept with a fingerprint of every entry's stat (size, mtime, ctime, inode,
    device, mode) and reused while they all match. The key itself is the same either way: it is
    one SHA-256 over every file's bytes, so any changed stat means reading the whole tree again
    (per-file digests would need a new key, and every image rebuilt once)."""
    started_ns = time.time_ns()
    entries = walk(root)
    stats = _stat_fingerprint(entries)
    cache = cache_dir / (hashlib.sha256(str(root).encode()).hexdigest()[:32] + ".json") if cache_dir else None
    if cache is not None:
        cached = _load_cache(cache, root)
        if cached is not None and cached[0] == stats:
            return cached[1]
    digest = TreeDigest()
    for entry in entries:
        if stat.S_ISLNK(entry.mode):
            digest.link(entry.relpath, os.readlink(entry.path))
            continue
        try:
            digest.file(entry.relpath, entry.mode, entry.path.stat().st_size)
            _read_into(digest, entry.path)
        except OSError:  # it vanished, or a link took its place, since the walk
            raise tree_changed(root) from None
    result = digest.hexdigest()
    if cache is not None and _settled(entries, started_ns):
        _save_cache(cache, root, stats, result)
    return result


def _read_into(digest: TreeDigest, path: Path) -> None:
    """Feed one file's bytes to ``digest`` (the only place ``tree_hash`` reads file contents)."""
    with open_entry(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.data(chunk)


# A stat this close to the start of the hash is not trusted: a write in the same timestamp tick as
# our read would leave size and times unchanged (git's "racy clean" problem). Two seconds covers
# the coarsest common timestamps (FAT) as well as ext4's clock-tick ones.
_RACY_NS = 2_000_000_000
_CACHE_VERSION = 1


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    # ctime and the inode catch an edit whose size and mtime were put back (utime, cp -p, rename).
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _stat_fingerprint(entries: list[Entry]) -> str:
    h = hashlib.sha256(b"dockrun-treehash-stats-%d\0" % _CACHE_VERSION)
    for entry in entries:
        st = entry.st if entry.st is not None else entry.path.lstat()
        h.update(entry.relpath.encode() + b"\0" + b" ".join(b"%d" % v for v in _stat_key(st)) + b"\0")
        if stat.S_ISLNK(entry.mode):
            h.update(os.readlink(entry.path).encode() + b"\0")
    return h.hexdigest()


def _settled(entries: list[Entry], started_ns: int) -> bool:
    """True if no entry changed while it was read, nor shortly before: only then may its stats
    vouch for its content next time."""
    for entry in entries:
        try:
            now = entry.path.lstat()
        except OSError:
            return False
        if entry.st is None or _stat_key(now) != _stat_key(entry.st):
            return False
        if max(now.st_mtime_ns, now.st_ctime_ns) > started_ns - _RACY_NS:
            return False
    return True


def _load_cache(path: Path, root: Path) -> tuple[str, str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") == _CACHE_VERSION and data.get("root") == str(root):
            return str(data["stats"]), str(data["hash"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # absent or damaged: a miss
        pass
    return None


def _save_cache(path: Path, root: Path, stats: str, result: str) -> None:
    """Best effort, and atomic: a reader sees the old file or the new one, never half of one."""
    text = json.dumps({"version": _CACHE_VERSION, "root": str(root), "stats": stats, "hash": result})
    try:
        write_atomic(path, text)
    except OSError:  # a read-only or full home costs speed, never a run
        pass
