"""Project archives (``.zip``, ``.tar.gz``, ``.tgz``; a path, ``file://`` or ``http(s)://``) as sources.

Layout under ``$DOCKRUN_HOME/archives``::

    <sha256 of the archive's bytes>/<name>/   the unpacked archive, <name> from the first file name seen
    .tmp-<sha prefix>-*/                      an unpacking in progress, renamed to <sha> when complete
    .dl-*                                     a download in progress (its hash is known only at the end)

The bytes decide the key, so a second run of the same archive (under any name or URL) unpacks and
builds nothing. Unpacking walks the members itself instead of calling ``extractall``: an archive
from a URL is untrusted, and every member that could write outside the target (absolute paths,
``..``, links leading out, writes through a link) and every device file is refused with one line
naming the member; the temp folder then goes, so nothing is left.

An archive is also unpacked within limits (config.ArchiveLimits: bytes, members, the expansion
ratio; and fixed ones below: name lengths, header sizes), checked before a parser reads what a
header announces: tarfile reads a GNU long name or a pax header whole into memory, and zipfile
reads a link's target and the central directory whole, whatever size they declare.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import re
import secrets
import shutil
import stat
import struct
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..config import ARCHIVE_LIMIT_VARS, CA_VARS, ArchiveLimits, archive_limits, default_home
from ..errors import SourceError
from ..httpauth import basic, open_url, redact, split_userinfo
from ..locks import file_lock
from .source import Source, clean_subdirectory
from .uri import ARCHIVE_SUFFIXES, HTTP, is_archive_uri  # noqa: F401 - is_archive_uri: this module's API too

if TYPE_CHECKING:
    import ssl

# Fixed limits, not settings: no project comes near them, and each bounds what a parser holds in memory.
MAX_NAME = 4096  # bytes in a member's path or a link's target (PATH_MAX)
MAX_HEADER = 64 * 1024  # one pax extended header
MAX_GLOBAL_HEADERS = 4096  # all pax global headers together: tarfile copies them into every member
MAX_HEADER_CHAIN = 8  # extended headers (pax, GNU long name and link) before one member
MAX_ZIP_DIRECTORY = 16 * 1024**2  # a zip's list of members (central directory), which zipfile reads whole
_CHUNK = 1 << 20
_TIMEOUT = 60  # seconds without a byte from the server before a download counts as failed
_STALE_DOWNLOAD = 24 * 3600  # a .dl- file older than this belongs to a process that died


def resolve_archive(uri: str, version: str | None = None, home: Path | None = None) -> Source:
    """Fetch, hash and (once per content) unpack the archive; its project root is the Source."""
    base, _, sub = uri.partition("#")
    shown = _display(base)
    if version:
        raise SourceError(f"{shown}: --version applies to Git URIs only, not to an archive")
    sub = clean_subdirectory(sub, shown)
    limits = archive_limits(os.environ)
    home = Path(home or default_home(os.environ)).expanduser().absolute()
    store = _store(home)
    with _local_file(base, shown, store, limits.max_bytes) as (path, sha):
        tree = store / sha
        if not tree.is_dir():
            with file_lock(home, f"archive:{sha}"):
                if not tree.is_dir():  # another process may have unpacked it while we waited
                    _sweep(store, sha)
                    _unpack_published(path, tree, _name(base), _kind(base), shown, limits)
    root = _project_root(tree, sub, shown)
    key = hashlib.sha256(f"archive:{sha}:{sub}".encode()).hexdigest()
    return Source(uri=shown + (f"#{sub}" if sub else ""), root=root, key=key, subdirectory=sub)


# --- names, URIs ----------------------------------------------------------------------------------

def _display(base: str) -> str:
    """The archive as it may be shown and recorded: a local path made absolute; a URL without its
    userinfo or query, either of which may carry a token."""
    lower = base.lower()
    if lower.startswith(HTTP):
        return redact(base)
    if lower.startswith("file://"):
        return base
    return str(Path(base).expanduser().absolute())


def _name(base: str) -> str:
    """The folder the archive unpacks into; a project without MLproject takes its name from it."""
    last = urlsplit(base).path if base.lower().startswith(HTTP) else base
    last = posixpath.basename(unquote(last) if "://" in base else last)
    for suffix in ARCHIVE_SUFFIXES:
        if last.lower().endswith(suffix):
            last = last[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip(".-") or "project"


def _kind(base: str) -> str:
    path = urlsplit(base).path if base.lower().startswith(HTTP) else base
    return "zip" if path.lower().endswith(".zip") else "tar"


# --- the store ------------------------------------------------------------------------------------

def _store(home: Path) -> Path:
    # Archives may hold private code: the state directory stays the user's alone.
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = home / "archives"
    store.mkdir(exist_ok=True, mode=0o700)
    return store


def _sweep(store: Path, sha: str) -> None:
    """Remove what processes that died mid-way left: called under the lock for ``sha``, so no
    living process owns these temp folders; downloads only when old, as they have no lock."""
    for stale in store.glob(f".tmp-{sha[:24]}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    cutoff = time.time() - _STALE_DOWNLOAD
    for stale in store.glob(".dl-*"):
        try:
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
        except OSError:
            pass


def _unpack_published(archive: Path, final: Path, name: str, kind: str, shown: str,
                      limits: ArchiveLimits) -> None:
    tmp = final.parent / f".tmp-{final.name[:24]}-{secrets.token_hex(6)}"
    tmp.mkdir(mode=0o700)
    try:
        unpack(archive, tmp / name, kind, shown, limits)
        os.rename(tmp, final)
    except BaseException:  # Ctrl-C included: a half-unpacked tree must never be found
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _project_root(tree: Path, sub: str, shown: str) -> Path:
    (top,) = list(tree.iterdir())  # the one <name> folder made by _unpack_published
    entries = list(top.iterdir())
    # GitHub-style archives wrap the project in one folder (repo-branch/): that folder is the project.
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        top = entries[0]
    root = top / sub if sub else top
    # A symlink in the archive could point the subdirectory elsewhere in the tree, never out of it.
    if not root.is_dir() or not root.resolve().is_relative_to(tree.resolve()):
        raise SourceError(f"{shown}: subdirectory {sub!r} does not exist in the archive")
    return root


# --- getting the bytes ----------------------------------------------------------------------------

@contextmanager
def _local_file(base: str, shown: str, store: Path, limit: int) -> Iterator[tuple[Path, str]]:
    """(a readable file holding the archive, the SHA-256 of its bytes); a download lives only as
    long as the context."""
    if base.lower().startswith(HTTP):
        tmp = store / f".dl-{secrets.token_hex(8)}"
        try:
            sha = _download(base, shown, tmp, limit)
            yield tmp, sha
        finally:
            tmp.unlink(missing_ok=True)
        return
    path = _file_path(base, shown)
    if not path.is_file():
        raise SourceError(f"{shown}: no such archive file")
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError as e:
        raise SourceError(f"{shown}: cannot read the archive: {e.strerror}") from None
    yield path, digest.hexdigest()


def _file_path(base: str, shown: str) -> Path:
    if not base.lower().startswith("file://"):
        return Path(base).expanduser()
    parts = urlsplit(base)
    if parts.netloc not in ("", "localhost"):
        raise SourceError(f"{shown}: a file:// URI must name a local file (file:///abs/path)")
    return Path(unquote(parts.path))


def _download(url: str, shown: str, dest: Path, limit: int) -> str:
    # Imported here: HTTP and TLS cost more to import than a local run of a local archive takes.
    import http.client
    import urllib.error
    import urllib.request

    clean, user, password = split_userinfo(url)
    request = urllib.request.Request(clean, headers={"User-Agent": "dockrun"})
    credentials = basic(user, password) if user or password else {}
    digest = hashlib.sha256()
    try:
        with open_url(request, credentials, _TIMEOUT, _tls_context()) as resp, _Saving(dest, shown) as out:
            size = 0
            while chunk := resp.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise SourceError(f"{shown}: the archive is larger than {limit} bytes "
                                      f"{_raise_with('max_bytes')}; refused")
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as e:
        raise SourceError(f"{shown}: download failed: HTTP {e.code} {_scrub(str(e.reason), password)}") from None
    except urllib.error.URLError as e:
        raise SourceError(f"{shown}: download failed: {_reason(e.reason, password)}") from None
    except (OSError, http.client.HTTPException) as e:
        raise SourceError(f"{shown}: download failed: {_reason(e, password)}") from None
    return digest.hexdigest()


class _Saving:
    """The download's file, written unbuffered: an error writing it (a full disk) is one line
    naming where, never taken for a network error."""

    def __init__(self, dest: Path, shown: str):
        self.dest, self.shown = dest, shown

    def __enter__(self) -> _Saving:
        self.fd = self._do(os.open, self.dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return self

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._do(os.write, self.fd, view):]

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def _do(self, call: Callable[..., int], *args: object) -> int:
        try:
            return call(*args)
        except OSError as e:
            raise SourceError(f"{self.shown}: cannot save the download in {self.dest.parent}: "
                              f"{e.strerror or e}") from None


def _tls_context() -> ssl.SSLContext:
    import ssl

    # The same CA bundle settings builds honour (SSL_CERT_FILE and friends): a company's TLS proxy.
    cafile = next((os.environ[k] for k in CA_VARS if os.environ.get(k) and os.path.isfile(os.environ[k])), None)
    return ssl.create_default_context(cafile=cafile)


def _reason(reason: object, secret: str) -> str:
    import ssl

    if isinstance(reason, ssl.SSLCertVerificationError):
        return "TLS certificate verification failed (see SSL_CERT_FILE)"
    if isinstance(reason, (ConnectionError, TimeoutError, OSError)) and not isinstance(reason, ssl.SSLError):
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return f"cannot reach the host ({_scrub(text, secret)})"
    return _scrub(str(reason) or type(reason).__name__, secret)


def _scrub(text: str, secret: str) -> str:
    return " ".join((text.replace(secret, "***") if secret else text).split())


# --- unpacking ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Member:
    name: str  # as stored in the archive: what an error names
    kind: str  # "file" | "dir" | "symlink" | "hardlink" | "special"
    size: int = 0
    executable: bool = False
    link: str = ""  # a symlink's target; a hardlink's source (relative to the archive's root)
    open: Callable[[], IO[bytes]] | None = None


@dataclass(frozen=True)
class _Target:
    dest: Path
    shown: str
    limits: ArchiveLimits
    cap: int  # bytes the archive may unpack to: max_bytes, or less by the ratio to its own size
    cap_setting: str  # the ArchiveLimits field that set ``cap``

    def refuse(self, member: _Member, why: str) -> SourceError:
        return SourceError(f"{self.shown}: member {_short(member.name)!r} {why}; refused")

    def over(self, why: str) -> SourceError:
        """The archive as a whole (or a header before any member has a name) is refused."""
        return SourceError(f"{self.shown}: {why}; refused")

    def too_big(self, member: _Member) -> SourceError:
        ratio = f", more than {self.limits.max_ratio} times its own size" if self.cap_setting == "max_ratio" else ""
        return self.refuse(member, f"takes the archive over {self.cap} bytes unpacked{ratio} "
                                   f"{_raise_with(self.cap_setting)}")


def _raise_with(setting: str) -> str:
    return f"(the limit; {ARCHIVE_LIMIT_VARS[setting]} raises it)"


def _short(name: str) -> str:
    return name if len(name) <= 200 else name[:200] + "..."


def _target(dest: Path, shown: str, limits: ArchiveLimits, archive_size: int) -> _Target:
    by_ratio = max(limits.ratio_floor, limits.max_ratio * archive_size)
    if by_ratio < limits.max_bytes:
        return _Target(dest, shown, limits, by_ratio, "max_ratio")
    return _Target(dest, shown, limits, limits.max_bytes, "max_bytes")


def unpack(archive: Path, dest: Path, kind: str, shown: str, limits: ArchiveLimits | None = None) -> None:
    """Unpack ``archive`` (``kind`` "zip" or "tar", any compression) into the new folder ``dest``,
    refusing anything that could reach outside it or exceed ``limits``. After an error ``dest`` may
    hold part of the archive: callers unpack into a temp folder that they remove."""
    limits = limits or ArchiveLimits()
    target = _target(dest, shown, limits, archive.stat().st_size)
    dest.mkdir(mode=0o755)
    links: list[tuple[_Member, Path]] = []
    total = count = 0
    member = None
    try:
        for member in (_zip_members if kind == "zip" else _tar_members)(archive, target):
            count += 1
            if count > limits.max_members:
                raise target.over(f"it has more than {limits.max_members} members {_raise_with('max_members')}")
            _check_lengths(target, member)
            total += _place(target, member, target.cap - total, links)
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError,
            NotImplementedError, RuntimeError) as e:  # RuntimeError: an encrypted zip
        detail = " ".join(str(e).split()) or type(e).__name__
        raise SourceError(f"{shown}: not a valid {kind} archive ({_short(detail)})") from None
    except OSError as e:  # the disk, not the archive: full, or the home not writable
        what = f" member {_short(member.name)!r}" if member else ""
        raise SourceError(f"{shown}: cannot unpack{what} into {dest.parent.parent}: {e.strerror or e}") from None
    # Each link was checked alone; a chain of them (x -> ., y -> x/../..) is checked here, on the
    # finished tree, where the filesystem resolves it as every later reader will.
    inside = dest.resolve()
    for member, path in links:
        if not Path(os.path.realpath(path)).is_relative_to(inside):
            raise target.refuse(member, f"is a link to {_short(member.link)!r}, outside the archive")


def _tar_members(archive: Path, t: _Target) -> Iterator[_Member]:
    with tarfile.open(archive, mode="r:*", tarinfo=_bounded_tarinfo(t)) as tf:
        while (m := tf.next()) is not None:
            # tarfile keeps every member it has read, each with a copy of the global pax headers;
            # nothing here looks back (links are resolved on disk), so memory stays flat.
            tf.members.clear()
            if m.size < 0:  # tarfile would seek back to an earlier header, and loop
                raise t.refuse(_Member(m.name, "file"), "has a negative size")
            if m.isreg():
                yield _Member(m.name, "file", m.size, bool(m.mode & 0o111), open=_tar_opener(tf, m))
            elif m.isdir():
                yield _Member(m.name, "dir")
            elif m.issym():
                yield _Member(m.name, "symlink", link=m.linkname)
            elif m.islnk():
                yield _Member(m.name, "hardlink", link=m.linkname)
            else:
                yield _Member(m.name, "special")


# What tarfile reads whole before the member it describes: (what it is, the most it may announce).
_EXTENDED = {
    tarfile.GNUTYPE_LONGNAME: ("a GNU long name header", MAX_NAME + 1),  # + its NUL
    tarfile.GNUTYPE_LONGLINK: ("a GNU long link header", MAX_NAME + 1),
    tarfile.XHDTYPE: ("a pax header", MAX_HEADER),
    tarfile.SOLARIS_XHDTYPE: ("a pax header", MAX_HEADER),
    tarfile.XGLTYPE: ("pax global headers", MAX_GLOBAL_HEADERS),
    tarfile.GNUTYPE_SPARSE: ("a GNU sparse header", None),  # its size is the member's data
}
# All tarfile may read while taking in one member's headers (a GNU sparse map follows them).
_HEADER_BUDGET = MAX_HEADER_CHAIN * (MAX_HEADER + tarfile.BLOCKSIZE)


def _bounded_tarinfo(t: _Target) -> type[tarfile.TarInfo]:
    """tarfile's TarInfo, checking each extended header's declared size before tarfile reads it;
    the stream it reads one member's headers from refuses to give more than _HEADER_BUDGET."""
    seen = {"depth": 0, "global": 0}

    class Bounded(tarfile.TarInfo):
        def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:  # tarfile's hook for subclasses
            if self.size < 0:
                raise t.over("a tar header declares a negative size")
            if self.type not in _EXTENDED:
                return super()._proc_member(tf)
            what, most = _EXTENDED[self.type]
            size = self.size
            if self.type == tarfile.XGLTYPE:  # kept for, and copied into, every later member
                seen["global"] += size
                size = seen["global"]
            if most is not None and size > most:
                raise t.over(f"{what} of {size} bytes, over the limit of {most}")
            if seen["depth"] >= MAX_HEADER_CHAIN:
                raise t.over(f"more than {MAX_HEADER_CHAIN} extended tar headers for one member")
            outer = seen["depth"] == 0
            seen["depth"] += 1
            if outer:
                tf.fileobj = _Capped(tf.fileobj, _HEADER_BUDGET, t)
            try:
                return super()._proc_member(tf)
            finally:
                seen["depth"] -= 1
                if outer:
                    tf.fileobj = tf.fileobj.inner

    return Bounded


class _Capped:
    """The archive's stream while tarfile takes in one member's extended headers."""

    def __init__(self, inner: IO[bytes], budget: int, t: _Target):
        self.inner, self.left, self.t = inner, budget, t

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self.left:
            raise self.t.over(f"a member's tar headers take more than {_HEADER_BUDGET} bytes")
        data = self.inner.read(size)
        self.left -= len(data)
        return data

    def __getattr__(self, name: str) -> object:  # tell, seek: the real stream's
        return getattr(self.inner, name)


def _tar_opener(tf: tarfile.TarFile, m: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        f = tf.extractfile(m)
        if f is None:
            raise tarfile.TarError(f"member {m.name!r} has no data")
        return f

    return open_member


def _zip_members(archive: Path, t: _Target) -> Iterator[_Member]:
    _check_zip_directory(archive, t)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            # Zips made on Windows may separate folders with backslashes.
            name = info.filename.replace("\\", "/")
            mode = info.external_attr >> 16 if info.create_system == 3 else 0  # 3: made on Unix
            ftype = stat.S_IFMT(mode)
            if info.is_dir() or ftype == stat.S_IFDIR:
                yield _Member(name, "dir")
            elif ftype == stat.S_IFLNK:  # a link's data is its target
                yield _Member(name, "symlink", link=_zip_link(zf, info, t, name))
            elif ftype in (0, stat.S_IFREG):
                yield _Member(name, "file", info.file_size, bool(mode & 0o111), open=_zip_opener(zf, info))
            else:
                yield _Member(name, "special")


def _zip_link(zf: zipfile.ZipFile, info: zipfile.ZipInfo, t: _Target, name: str) -> str:
    # The declared size first, then no more read than a target may hold: a header may lie.
    if info.file_size > MAX_NAME:
        raise t.refuse(_Member(name, "symlink"), f"is a link whose target is {info.file_size} bytes, "
                                                 f"over the limit of {MAX_NAME}")
    with zf.open(info) as f:
        target = f.read(MAX_NAME + 1)
    if len(target) > MAX_NAME:
        raise t.refuse(_Member(name, "symlink"), f"is a link whose target is over {MAX_NAME} bytes")
    return target.decode("utf-8", "replace")


def _check_zip_directory(archive: Path, t: _Target) -> None:
    """The member count and central directory size the zip's end record declares, checked before
    zipfile reads the whole directory into memory (an archive without one: zipfile says so)."""
    with open(archive, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - (22 + 0xFFFF + 20 + 56)))  # the end record, its comment, zip64's records
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return
    members, size = struct.unpack("<HI", tail[at + 10:at + 16])
    zip64 = tail[at - 76:at - 20] if at >= 76 and tail[at - 20:at - 16] == b"PK\x06\x07" else b""
    if zip64[:4] == b"PK\x06\x06":
        members, size = struct.unpack("<QQ", zip64[32:48])
    if members > t.limits.max_members:
        raise t.over(f"it has {members} members, more than {t.limits.max_members} {_raise_with('max_members')}")
    if size > MAX_ZIP_DIRECTORY:
        raise t.over(f"its list of members (central directory) is {size} bytes, over the limit of "
                     f"{MAX_ZIP_DIRECTORY}")


def _zip_opener(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    return lambda: zf.open(info)


def _place(t: _Target, m: _Member, room: int, links: list[tuple[_Member, Path]]) -> int:
    """Write one member under ``t.dest``; returns how many of the ``room`` bytes it used."""
    if m.kind == "special":
        raise t.refuse(m, "is a device or other special file")
    rel = _relative(m.name)
    if rel is None:
        raise t.refuse(m, "has an absolute path" if m.name.startswith("/") else "has '..' or a NUL in its path")
    if not rel:
        if m.kind == "dir":
            return 0  # "./": the root itself
        raise t.refuse(m, "has no name")
    path = _make_room(t, rel, m)
    if m.kind == "dir":
        path.mkdir(mode=0o755, exist_ok=True)
        return 0
    if m.kind == "symlink":
        _check_link(t, rel, m)
        os.symlink(m.link, path)
        links.append((m, path))
        return 0
    if m.kind == "hardlink":
        # A copy rather than a link: the tree then shares no inode with anything.
        source = _earlier_file(t, m)
        with open(source, "rb") as src:
            return _write(t, path, src, m, room, executable=bool(source.stat().st_mode & 0o111))
    if m.size > room:
        raise t.too_big(m)
    assert m.open is not None  # a file member always carries its opener
    with m.open() as src:
        return _write(t, path, src, m, room, executable=m.executable)


def _check_lengths(t: _Target, m: _Member) -> None:
    for what, text in (("path", m.name), ("link target", m.link)):
        size = len(text.encode("utf-8", "replace"))
        if size > MAX_NAME:
            raise t.refuse(m, f"has a {what} of {size} bytes, over the limit of {MAX_NAME}")


def _relative(name: str) -> str | None:
    """The member's path relative to the target ("" for the root); None if it could leave it."""
    if "\x00" in name or name.startswith("/"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return None if ".." in parts else "/".join(parts)


def _make_room(t: _Target, rel: str, m: _Member) -> Path:
    """The member's path, its folders made; never through a link, which could lead anywhere."""
    parent = t.dest
    for part in rel.split("/")[:-1]:
        parent = parent / part
        try:
            st = os.lstat(parent)
        except FileNotFoundError:
            parent.mkdir(mode=0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise t.refuse(m, "lies under a link or a file, not a folder")
    path = parent / rel.rsplit("/", 1)[-1]
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    if stat.S_ISDIR(st.st_mode):
        if m.kind == "dir":
            return path
        raise t.refuse(m, "would replace a folder")
    path.unlink()  # as tar does, a later member of the same name wins (a link is removed, not followed)
    return path


def _check_link(t: _Target, rel: str, m: _Member) -> None:
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), m.link))
    if (not m.link or "\x00" in m.link or m.link.startswith("/") or resolved == ".."
            or resolved.startswith("../")):
        raise t.refuse(m, f"is a link to {_short(m.link)!r}, outside the archive")


def _earlier_file(t: _Target, m: _Member) -> Path:
    rel = _relative(m.link)
    path, st = t.dest, None
    for part in rel.split("/") if rel else ():
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
            break
        if stat.S_ISLNK(st.st_mode):
            st = None
            break
    if st is None or not stat.S_ISREG(st.st_mode):
        raise t.refuse(m, f"is a hard link to {_short(m.link)!r}, which is not an earlier file of the archive")
    return path


def _write(t: _Target, path: Path, src: IO[bytes], m: _Member, room: int, executable: bool) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    written = 0
    with os.fdopen(fd, "wb") as out:
        # Set, not masked by the umask: the mode enters the tree's hash, and so the image's key.
        os.fchmod(out.fileno(), 0o755 if executable else 0o644)
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            # Counted as written, not as declared: a header may lie about a member's size.
            if written > room:
                raise t.too_big(m)
            out.write(chunk)
    return written
