"""A run's files on an engine that cannot see this machine's (``DOCKER_HOST=tcp://…``, ``ssh://…``).

Instead of bind mounts, the container's ``copies`` (path parameters, the staging folders of its
outputs, ``DOCKRUN_OUTPUT_DIR``, a ``--dev`` folder) go into the created container as one tar stream
before it starts, at the paths the mounts would have had, and the writable ones come back after it
ends, as the run's plan (files.py, in the run's own folder) says: never as anything the engine says.
Streams, never whole files in memory; a line of progress now and then for large copies.

What a bind mount would show, the copy shows: the same paths, owners and modes, a path parameter
that is a symlink resolved as a mount resolves it. Read-only inputs lose their write bits (the
host's files are never written back either). Coming back, everything is first received into a
spool in the run's folder, within a size limit (``DOCKRUN_COPY_BACK_LIMIT``, 2 GiB by default:
over it, nothing is written); then only files the run wrote are put in place (one that comes back
as it was sent keeps the host's version, even if that changed meanwhile), each renamed into place,
so a half-copied file is never seen; nothing outside the folder it came from is touched (links are
not followed, and links that lead out of it are not created), and files the run deleted stay: a
copy cannot tell a deletion from a file the run never saw.
"""
from __future__ import annotations

import errno
import filecmp
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ...engine.client import Docker
from ...errors import ExecutionError
from .landing import CHUNK, DEFAULT_COPY_BACK_LIMIT, LIMIT_ENV, Dropped, leads_out, write_file

PROGRESS_STEP = 8 << 20  # no progress lines for copies smaller than this
MB = 1 << 20
SENT_FILE = "copied-in.json"  # in the run's folder: what copy_in sent into writable folders
Sent = dict[str, list[int]]  # tar member name (the container path without "/") -> [size, mtime]


@dataclass(frozen=True)
class Entry:
    """One tar member: ``source`` on this machine, ``info`` as the container will see it."""

    source: str
    info: tarfile.TarInfo
    writable: bool


def copy_in(docker: Docker, container: Any, copies: Sequence[tuple[str, str, str]],
            log: Callable[[str], None]) -> Sent:
    """Put every copy into the created container, read-only ones first so that a writable folder
    inside one lands on top, as its mount would. Returns what was sent into writable folders (for
    ``copy_back``: a file the run did not touch is not copied back, so a host file that changed
    meanwhile, such as dockrun's own run store in an output's folder, is never put back to how
    it was)."""
    entries = plan_entries(copies)
    total = sum(e.info.size for e in entries)
    progress = Progress("copying the run's files to the engine", log, total)
    docker.put_archive(container, _tar_chunks(entries, progress))
    progress.done()
    # Read-only ones too: an input inside a writable folder comes back with it, and is not written.
    return {e.info.name: [e.info.size, e.info.mtime] for e in entries if e.info.isreg()}


def save_sent(run_dir: Path, sent: Sent) -> None:
    (run_dir / SENT_FILE).write_text(json.dumps(sent))


def load_sent(run_dir: Path) -> Sent:
    try:
        return json.loads((run_dir / SENT_FILE).read_text())
    except FileNotFoundError:
        return {}


def plan_entries(copies: Sequence[tuple[str, str, str]]) -> list[Entry]:
    """The tar members for ``copies``, parents before children; a writable copy nested in a
    read-only one is left out of the read-only walk and comes with its own mode."""
    writable = [inside for _, inside, mode in copies if mode == "rw"]
    entries: list[Entry] = []
    for host, inside, mode in sorted(copies, key=lambda c: (c[2] == "rw", c[1])):
        skip = [w for w in writable if mode == "ro" and _under(w, inside) and w != inside]
        entries.extend(_walk(host, inside, read_only=(mode == "ro"), skip=skip))
    return entries


def _walk(host: str, inside: str, read_only: bool, skip: Sequence[str]) -> Iterator[Entry]:
    # The top is followed if it is a link (a bind mount resolves it); nothing below it is.
    top = os.path.realpath(host)
    yield from _entry(top, inside, os.stat(top), read_only)
    if not os.path.isdir(top):
        return
    for folder, dirs, files in os.walk(top):
        rel = os.path.relpath(folder, top)
        base = inside if rel == "." else os.path.join(inside, rel)
        for name in sorted(dirs + files):
            target = os.path.join(base, name)
            if any(_under(target, s) for s in skip):
                continue
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:  # gone since the walk listed it
                continue
            yield from _entry(path, target, st, read_only)
        dirs[:] = sorted(d for d in dirs if not any(_under(os.path.join(base, d), s) for s in skip))


def _entry(path: str, inside: str, st: os.stat_result, read_only: bool) -> Iterator[Entry]:
    info = tarfile.TarInfo(inside.lstrip("/") or ".")
    info.uid, info.gid, info.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
    info.mode = stat.S_IMODE(st.st_mode) & ~(0o222 if read_only else 0)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISREG(st.st_mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
    else:
        return  # sockets, fifos, devices: nothing a run reads as data
    yield Entry(path, info, writable=not read_only)


def _tar_chunks(entries: Sequence[Entry], progress: Progress) -> Iterator[bytes]:
    """The tar stream, written by hand rather than by tarfile so that it is produced as it is sent:
    headers, then each file's bytes in chunks, padded to 512-byte blocks. A file removed since it
    was listed (a SQLite journal in an output's folder, say) is left out: it is opened before its
    header is sent, so the stream stays whole."""
    for entry in entries:
        info = entry.info
        if not info.isreg() or not info.size:
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            continue
        try:
            f = open(entry.source, "rb")  # noqa: SIM115 - opened before its header goes; closed by the with below
        except FileNotFoundError:
            continue
        with f:
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            left = info.size
            while left:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    raise ExecutionError(f"{entry.source} shrank while it was being copied to the engine")
                left -= len(chunk)
                progress.add(len(chunk))
                yield chunk
        yield b"\0" * (-info.size % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def copy_back(docker: Docker, container: Any, plan: Sequence[tuple[str, str]], log: Callable[[str], None],
              sent: Sent, spool_dir: Path, limit: int = DEFAULT_COPY_BACK_LIMIT) -> None:
    """Bring the container's writable folders ``plan`` ((host, inside) pairs, from the run's own
    plan) back to where they came from. Everything is received first (into a spool under
    ``spool_dir``), so a copy over ``limit`` bytes writes nothing at all."""
    spool = tempfile.mkdtemp(prefix=".incoming-", dir=spool_dir)
    try:
        incoming = Incoming(spool, limit)
        for host, inside in plan:
            progress = Progress(f"copying {inside} back from the engine", log)
            stream = docker.get_archive(container, inside)
            # A writable folder inside this one comes back on its own, to its own place.
            inner = [other for _, other in plan if other != inside and _under(other, inside)]
            with tarfile.open(fileobj=_Reader(stream, progress), mode="r|") as tar:
                receive(tar, Path(host), inside, sent, incoming, inner)
            progress.done()
        commit(incoming.actions)
        drop_chained_links(incoming.actions, incoming.dropped)
        incoming.dropped.report(log)
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def drop_chained_links(actions: Sequence[Action], dropped: Dropped) -> None:
    """Links each inside their folder alone may lead out through one another (``a -> .``,
    ``b -> a/..``): with all of them made, those that resolve outside their root are removed,
    each judged before any is."""
    out = [a for a in actions if a.kind == "link" and os.path.islink(a.path)
           and not _under(os.path.realpath(a.path), os.path.realpath(a.root))]
    for a in out:
        os.unlink(a.path)
        dropped.add(os.path.relpath(a.path, a.root), a.source)


def unpack(tar: tarfile.TarFile, root: Path, inside: str = "", sent: Sent | None = None,
           limit: int = DEFAULT_COPY_BACK_LIMIT) -> Dropped:
    """Receive and commit one archive of the container's folder ``inside`` into ``root``."""
    spool = tempfile.mkdtemp(prefix="dockrun-incoming-")
    try:
        incoming = Incoming(spool, limit)
        receive(tar, root, inside, sent or {}, incoming)
        commit(incoming.actions)
        drop_chained_links(incoming.actions, incoming.dropped)
        return incoming.dropped
    finally:
        shutil.rmtree(spool, ignore_errors=True)


@dataclass(frozen=True)
class Action:
    """One thing to write on the host once everything has come back."""

    kind: str  # dir | file | link | hard
    root: str
    path: str
    mode: int = 0o755
    source: str = ""  # file: the spooled copy; link: its target; hard: the file it names


@dataclass
class Incoming:
    """What has come back so far: spooled files and what to do with them, within ``limit`` bytes."""

    spool: str
    limit: int
    actions: list[Action] = field(default_factory=list)
    size: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    dropped: Dropped = field(default_factory=Dropped)

    def take(self, n: int) -> None:
        self.size += n
        if self.size > self.limit:
            raise ExecutionError(f"the run's outputs are over the copy-back limit of {_size(self.limit)} "
                                 f"({LIMIT_ENV}); nothing was copied back")


def receive(tar: tarfile.TarFile, root: Path, inside: str, sent: Sent, incoming: Incoming,
            skip: Sequence[str] = ()) -> None:
    """Read the archive of the container's folder ``inside`` (its top member is the folder itself,
    which is ``root`` here): files the run wrote (not as ``sent``) into the spool, the rest as
    actions, leaving out what is under ``skip``; names that climb out are refused, links that lead
    out are left out."""
    for member in tar:
        parts = _parts(member.name)
        if not parts:
            continue  # the folder itself: it is ``root``, which exists
        path = os.path.join(root, *parts)
        name = os.path.join(inside, *parts).lstrip("/")
        if any(_under("/" + name, s) for s in skip):
            continue
        if member.isdir():
            incoming.actions.append(Action("dir", str(root), path, _mode(member)))
        elif member.isreg() and sent.get(name) == [member.size, int(member.mtime)]:
            continue  # as it was sent: the run did not write it
        elif member.isreg():
            incoming.take(member.size)
            spooled = os.path.join(incoming.spool, str(len(incoming.actions)))
            data = tar.extractfile(member)
            with open(spooled, "wb") as out:
                while data is not None and (chunk := data.read(CHUNK)):
                    out.write(chunk)
            incoming.sizes[path] = member.size
            incoming.actions.append(Action("file", str(root), path, _mode(member), spooled))
        elif member.issym():
            if leads_out("/".join(parts), member.linkname):
                incoming.dropped.add(name, member.linkname)
                continue
            incoming.actions.append(Action("link", str(root), path, source=member.linkname))
        elif member.islnk():  # the engine sends a second name of a file as a hard link
            source_parts = _parts(member.linkname)
            if not source_parts:
                raise ExecutionError(f"the engine sent a hard link {member.name!r} to {member.linkname!r}")
            source = os.path.join(root, *source_parts)
            size = incoming.sizes.get(source)
            if size is None:
                size = os.lstat(source).st_size if os.path.isfile(source) else 0
            incoming.take(size)
            incoming.actions.append(Action("hard", str(root), path, source=source))


def commit(actions: Sequence[Action]) -> None:
    """Write what came back, in the order it came: nothing outside its root, nothing through a
    link, each file renamed into place."""
    for a in actions:
        real_root = os.path.realpath(a.root)
        if not _under(os.path.realpath(os.path.dirname(a.path)), real_root):
            raise ExecutionError(f"the engine sent {os.path.relpath(a.path, a.root)!r}, which would land "
                                 f"outside {a.root}")
        os.makedirs(os.path.dirname(a.path), exist_ok=True)
        if a.kind == "dir":
            if os.path.islink(a.path) or not os.path.isdir(a.path):
                _replace_with_dir(a.path)
            os.chmod(a.path, a.mode)
        elif a.kind == "file":
            _put_file(a.source, a.path, a.mode)
        elif a.kind == "link":
            if not (os.path.islink(a.path) and os.readlink(a.path) == a.source):
                tmp = f"{a.path}.dockrun-{os.getpid()}"
                os.symlink(a.source, tmp)
                os.replace(tmp, a.path)
        else:  # hard: a copy of a file that is now in place
            # The name may lead out through links the engine sent before (a -> ., b -> a/..): only a
            # file that really is under the root is copied.
            if (os.path.islink(a.source) or not os.path.isfile(a.source)
                    or not _under(os.path.realpath(a.source), real_root)):
                raise ExecutionError(f"the engine sent a hard link {a.path!r} to {a.source!r}")
            with open(a.source, "rb") as f:
                write_file(f, a.path, stat.S_IMODE(os.lstat(a.source).st_mode))


def _parts(name: str) -> list[str]:
    """The path of member ``name`` below the folder (the top member); an error for a name that
    climbs out."""
    parts = name.split("/")[1:]
    if any(p in ("", ".", "..") for p in parts):
        raise ExecutionError(f"the engine sent an unsafe path {name!r}")
    return parts


def _put_file(spooled: str, path: str, mode: int) -> None:
    """Rename a spooled file into place; keep the old file when it is the same."""
    if os.path.isfile(path) and not os.path.islink(path) and filecmp.cmp(spooled, path, shallow=False):
        return
    os.chmod(spooled, mode)
    try:
        os.replace(spooled, path)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        with open(spooled, "rb") as f:
            write_file(f, path, mode)


def _size(n: int) -> str:
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def _mode(member: tarfile.TarInfo) -> int:
    return member.mode & 0o777  # never setuid/setgid/sticky from the engine


def _replace_with_dir(path: str) -> None:
    if os.path.lexists(path):
        os.unlink(path)  # a file or link where the run made a folder
    os.mkdir(path, 0o755)


class _Reader:
    """A file object over the engine's chunk stream, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes], progress: Progress):
        self.chunks, self.buffer, self.pos, self.progress = iter(chunks), bytearray(), 0, progress

    def read(self, size: int = -1) -> bytes:
        # tarfile reads small pieces: consume the buffer by position, compact it only to refill
        while size < 0 or len(self.buffer) - self.pos < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.progress.add(len(chunk))
            del self.buffer[:self.pos]
            self.pos = 0
            self.buffer += chunk
        end = len(self.buffer) if size < 0 else min(len(self.buffer), self.pos + size)
        out = bytes(self.buffer[self.pos:end])
        self.pos = end
        return out


class Progress:
    """``dockrun: WHAT: 24 of 120 MB`` every so often, for copies of more than PROGRESS_STEP bytes;
    at most about ten lines however large the copy."""

    def __init__(self, what: str, log: Callable[[str], None], total: int | None = None):
        self.what, self.log, self.total = what, log, total
        self.done_bytes = self.shown = 0

    def add(self, n: int) -> None:
        self.done_bytes += n
        step = max(PROGRESS_STEP, (self.total or self.done_bytes) // 10)
        if self.done_bytes - self.shown >= step:
            self.shown = self.done_bytes
            of = f" of {self.total / MB:.0f}" if self.total else ""
            self.log(f"{self.what}: {self.done_bytes / MB:.0f}{of} MB")

    def done(self) -> None:
        if self.shown:  # only a copy that showed progress says it is over
            self.log(f"{self.what}: {self.done_bytes / MB:.0f} MB, done")


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
