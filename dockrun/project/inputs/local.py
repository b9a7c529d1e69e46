"""The storage side of downloads, shared by every source: a download's folder, what was fetched
into it last time (a small JSON file beside it), writing aside then renaming, and the check that
a remote name cannot place a file outside the folder."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ...errors import ParameterError
from ...locks import write_atomic

Fingerprint = Mapping[str, Any]  # what the remote says about a file: ETag and size, or size and mtime


@dataclass(frozen=True)
class Download:
    uri: str  # as given: may carry a token, so it is never shown
    shown: str  # the URI with userinfo and query redacted: the only form in messages and metadata
    where: str  # "parameter 'p': <shown>", the start of every error
    root: Path  # this URI's own folder in the storage dir
    known: Mapping[str, Fingerprint]  # local path under root -> fingerprint, from the last download
    log: Callable[[str], None]
    tracking_uri: str | None = None


@dataclass(frozen=True)
class Entry:
    """One remote file: its name at the source (for messages), where it goes under the download's
    folder, and its fingerprint (compared with the last download's to skip the transfer)."""

    key: str
    rel: str
    fingerprint: Fingerprint


@dataclass(frozen=True)
class Fetched:
    path: str  # the local file or folder the parameter becomes
    files: Mapping[str, Fingerprint] = field(default_factory=dict)


def load_known(meta: Path) -> dict[str, Fingerprint]:
    try:
        files = json.loads(meta.read_text()).get("files", {})
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}  # unreadable metadata only costs a fresh download


def save_known(meta: Path, shown: str, files: Mapping[str, Fingerprint]) -> None:
    write_atomic(meta, json.dumps({"uri": shown, "files": dict(files)}, sort_keys=True, indent=1))


def safe_rel(rel: str, d: Download, key: str) -> str:
    """``rel`` if it stays inside the download's folder, else a one-line error naming the key.

    Object stores accept any key: `dir/../../x` or `dir//etc/cron.d/x` would otherwise be joined
    onto the folder and written wherever they point."""
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts) or "\0" in rel:
        raise ParameterError(f"{d.where}: refusing the remote name {key!r}: it would be written outside "
                             "the download folder ('..', '.', '//' and a leading '/' are not allowed)")
    return rel


def sync(d: Download, top: str, entries: Iterable[Entry], fetch: Callable[[Entry, str], None],
         save: Callable[[Mapping[str, Fingerprint]], None]) -> Fetched:
    """Make ``d.root/top`` hold exactly ``entries``: fetch the changed ones, keep the unchanged,
    remove what the remote no longer has. Every name is checked before the first transfer."""
    entries = [Entry(e.key, safe_rel(e.rel, d, e.key), e.fingerprint) for e in entries]
    _no_file_as_folder(entries, d)
    stale = [e for e in entries if not _unchanged(d, e)]
    current = {e.rel: dict(e.fingerprint) for e in entries}
    # Until they are fetched, the changed files are forgotten: metadata never vouches for a file
    # a failed download may have left in its old state.
    save({rel: fp for rel, fp in current.items() if rel not in {e.rel for e in stale}})
    _prune(d.root, set(current))
    if stale:
        d.log(f"downloading {d.shown}" + (f" ({len(stale)} of {len(entries)} files)" if len(entries) > 1 else ""))
    else:
        d.log(f"using the downloaded copy of {d.shown} (unchanged)")
    for e in stale:
        write_aside(d.root / e.rel, lambda tmp, e=e: fetch(e, tmp))
    return Fetched(str(d.root / top), current)


def write_aside(final: Path, write: Callable[[str], None]) -> None:
    """Write to a temp file next to ``final``, then rename: an interrupted download never looks
    like a complete file."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".part-")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from a run as another uid
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _unchanged(d: Download, e: Entry) -> bool:
    local = d.root / e.rel
    size = e.fingerprint.get("size")
    return (d.known.get(e.rel) == dict(e.fingerprint) and local.is_file()
            and (size is None or local.stat().st_size == size))


def _no_file_as_folder(entries: list[Entry], d: Download) -> None:
    rels = {e.rel for e in entries}
    for e in entries:
        parts = e.rel.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in rels:
                raise ParameterError(f"{d.where}: {e.key!r} needs {'/'.join(parts[:i])!r} as a folder, "
                                     "but the remote has a file of that name")


def _prune(root: Path, keep: set[str]) -> None:
    """Remove files the remote no longer has (and folders they leave empty)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = Path(dirpath) / name
            if path.relative_to(root).as_posix() not in keep:
                path.unlink()
        for name in dirnames:
            path = Path(dirpath) / name
            if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
                path.rmdir()
            elif path.is_symlink():
                path.unlink()
