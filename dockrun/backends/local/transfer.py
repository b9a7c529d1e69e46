"""A run's files on an engine that cannot see this machine's (``DOCKER_HOST=tcp://…``, ``ssh://…``).

Instead of bind mounts, the container's ``copies`` (path parameters, ``DOCKRUN_OUTPUT_DIR``, a
``--dev`` folder) go into the created container as one tar stream before it starts, at the paths
the mounts would have had, and the writable ones come back after it ends. Streams, never whole
files in memory; a line of progress now and then for large copies.

What a bind mount would show, the copy shows: the same paths, owners and modes, a path parameter
that is a symlink resolved as a mount resolves it. Read-only inputs lose their write bits (the
host's files are never written back either). Coming back, only files the run wrote are written
(one that comes back as it was sent keeps the host's version, even if that changed meanwhile),
each through a temporary file renamed into place, so a half-copied file is never seen; nothing
outside the folder it came from is touched (links are not followed), and files the run deleted
stay: a copy cannot tell a deletion from a file the run never saw.
"""
from __future__ import annotations

import filecmp
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from ...engine.client import Docker
from ...errors import ExecutionError

LABEL_COPY_BACK = "dockrun.copy-back"  # on the container: JSON [[host, container], ...] to copy back
CHUNK = 1 << 20
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


def copy_back_label(copies: Sequence[tuple[str, str, str]]) -> dict[str, str]:
    """The label that tells whoever ends the run (the supervisor, or ``reconcile`` after it
    vanished) what to bring back: the container says so itself, so no other record is needed."""
    back = [[host, inside] for host, inside, mode in copies if mode == "rw"]
    return {LABEL_COPY_BACK: json.dumps(back)} if back else {}


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
    return {e.info.name: [e.info.size, e.info.mtime] for e in entries if e.writable and e.info.isreg()}


def save_sent(run_dir: Path, sent: Sent) -> None:
    (run_dir / SENT_FILE).write_text(json.dumps(sent))


def _load_sent(run_dir: Path) -> Sent:
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


def wants_copy_back(container: Any) -> bool:
    return LABEL_COPY_BACK in _labels(container)


def _labels(container: Any) -> dict[str, str]:
    return (container.attrs.get("Config") or {}).get("Labels") or {}


def copy_back(docker: Docker, container: Any, log: Callable[[str], None], sent: Sent) -> None:
    """Bring the writable copies named by the container's label back to where they came from."""
    for host, inside in json.loads(_labels(container).get(LABEL_COPY_BACK) or "[]"):
        progress = Progress(f"copying {inside} back from the engine", log)
        stream = docker.get_archive(container, inside)
        with tarfile.open(fileobj=_Reader(stream, progress), mode="r|") as tar:
            unpack(tar, Path(host), inside, sent)
        progress.done()


def bring_back(docker: Docker, container: Any, run_dir: Path) -> str | None:
    """Copy a remote run's writable files back, with progress lines in its stderr.log (which its
    driver shows); None, or why they did not all come back, which is also written there."""
    if not wants_copy_back(container):  # a local engine's run: nothing to do, no file touched
        return None
    with open(run_dir / "stderr.log", "a") as err:
        def log(line: str) -> None:
            err.write(f"dockrun: {line}\n")
            err.flush()

        try:
            copy_back(docker, container, log, _load_sent(run_dir))
        except Exception as e:  # noqa: BLE001 - any failure here means lost outputs: say so, never hide it
            why = f"its outputs could not be copied back from the engine: {e}".splitlines()[0]
            log(why)
            return why
    return None


def unpack(tar: tarfile.TarFile, root: Path, inside: str = "", sent: Sent | None = None) -> None:
    """Write the archive of the container's folder ``inside`` (its top member is the folder itself)
    into ``root``: folders, links, and files the run wrote (not as ``sent``), where they differ;
    nothing outside ``root``, and nothing through a link."""
    real_root = os.path.realpath(root)
    sent = sent or {}
    for member in tar:
        path = _inside(root, real_root, member.name)
        if path is None:
            continue  # the folder itself: it is ``root``, which exists
        os.makedirs(os.path.dirname(path), exist_ok=True)
        name = os.path.join(inside, *member.name.split("/")[1:]).lstrip("/")
        if member.isdir():
            if os.path.islink(path) or not os.path.isdir(path):
                _replace_with_dir(path)
            os.chmod(path, _mode(member))
        elif member.isreg() and sent.get(name) == [member.size, int(member.mtime)]:
            continue  # as it was sent: the run did not write it
        elif member.isreg():
            _write_file(tar.extractfile(member), path, _mode(member))
        elif member.issym():
            if not (os.path.islink(path) and os.readlink(path) == member.linkname):
                tmp = f"{path}.dockrun-{os.getpid()}"
                os.symlink(member.linkname, tmp)
                os.replace(tmp, path)
        elif member.islnk():  # the engine sends a second name of a file as a hard link
            source = _inside(root, real_root, member.linkname)
            if source is None or os.path.islink(source) or not os.path.isfile(source):
                raise ExecutionError(f"the engine sent a hard link {member.name!r} to {member.linkname!r}")
            with open(source, "rb") as f:
                _write_file(f, path, stat.S_IMODE(os.lstat(source).st_mode))


def _inside(root: Path, real_root: str, name: str) -> str | None:
    """Where member ``name`` goes under ``root`` (None for the top itself); an error for a name that
    climbs out, or whose folder is reached through a link that leads out."""
    parts = name.split("/")[1:]  # the top member is the folder itself
    if not parts:
        return None
    if any(p in ("", ".", "..") for p in parts):
        raise ExecutionError(f"the engine sent an unsafe path {name!r}")
    path = os.path.join(root, *parts)
    if not _under(os.path.realpath(os.path.dirname(path)), real_root):
        raise ExecutionError(f"the engine sent {name!r}, which would land outside {root}")
    return path


def _mode(member: tarfile.TarInfo) -> int:
    return member.mode & 0o777  # never setuid/setgid/sticky from the engine


def _replace_with_dir(path: str) -> None:
    if os.path.lexists(path):
        os.unlink(path)  # a file or link where the run made a folder
    os.mkdir(path, 0o755)


def _write_file(data: IO[bytes] | None, path: str, mode: int) -> None:
    """Write through a temporary file in the same folder; keep the old file when it is the same."""
    if data is None:
        return
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
