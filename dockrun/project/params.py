"""Validate parameters and render an entry point's command (pure: no Docker, no network)."""
from __future__ import annotations

import logging
import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParameterError, ProjectError
from .spec import EntryPoint, Parameter

_REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:/")
_BOOLS = ("true", "false", "1", "0", "yes", "no")  # any case; passed on as typed, as mlflow run does
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mount:
    """A host path the run sees at the same path: an input (read-only), or an output that does not
    exist yet (``output``: the run may write that path and nothing beside it; the backend decides
    how, see backends/local/files.py)."""

    path: str
    read_only: bool = False
    output: bool = False


@dataclass(frozen=True)
class RenderedCommand:
    command: str  # run with sh -c in the container
    values: Mapping[str, str]  # every parameter as it was substituted (before quoting)
    mounts: tuple[Mount, ...]
    # path parameters given as remote URIs (s3://...): name -> URI, to download before the run and
    # render again with ``downloaded``
    downloads: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Placement:
    """Where a backend runs the command, as far as parameters care.

    ``project_dir``: where relative path defaults (the project's own files) are found.
    ``host_paths``: local path values are host files, mounted into the run; where they are not
    (a cluster), a local path is an error. ``fuse``: URI prefixes the run sees as a mounted folder
    (Databricks reads ``dbfs:/x`` at ``/dbfs/x``), passed as that path instead of downloaded.
    """

    project_dir: str = "/project"
    host_paths: bool = True
    name: str = "the container"  # for messages: "... does not exist on Databricks"
    fuse: Mapping[str, str] = field(default_factory=dict)


IN_CONTAINER = Placement()


def is_remote(value: str) -> bool:
    """True for URIs with a scheme (s3://, dbfs:/, https://...), false for local paths."""
    return bool(_REMOTE.match(value)) and not value.lower().startswith("file:")


def render_command(
    entry_point: EntryPoint,
    given: Mapping[str, str],
    cwd: Path | None = None,
    placement: Placement = IN_CONTAINER,
    downloaded: Mapping[str, str] | None = None,
) -> RenderedCommand:
    """Check ``given`` against the entry point's declared parameters and substitute them.

    Declared parameters are typed and validated; undeclared ones are appended as ``--key value``.
    Every substituted value goes through shlex.quote. A relative path the user gives is taken
    from ``cwd`` (and mounted); a relative path default is the project author's, so it is taken
    from the project root where the command runs (``placement.project_dir``), where the code is.
    """
    cwd = cwd or Path.cwd()
    declared = {p.name: p for p in entry_point.parameters}
    values: dict[str, str] = {}
    mounts: list[Mount] = []
    named: dict[str, str] = {}  # mounted path -> its parameter, for messages
    downloads: dict[str, str] = {}
    for p in entry_point.parameters:
        raw = given.get(p.name, p.default)
        if p.type in ("path", "uri") and raw is not None and not placement.host_paths:
            # Defaults are the project's own relative files, found in the unpacked project.
            values[p.name] = _off_host(str(raw), placement, f"parameter {p.name!r}", p.name in given)
            continue
        if p.type == "path" and raw is not None and is_remote(str(raw)):
            _check_downloadable(str(raw), f"parameter {p.name!r} of entry point {entry_point.name!r}")
            if downloaded and p.name in downloaded:
                raw, given = downloaded[p.name], {**given, p.name: downloaded[p.name]}
            else:
                downloads[p.name] = str(raw)
        if raw is None:
            raise ParameterError(
                f"parameter {p.name!r} of entry point {entry_point.name!r} has no default and was "
                f"not given (-P {p.name}=VALUE)"
            )
        from_default = p.name not in given
        base = Path(placement.project_dir) if from_default else cwd
        value, mount = _convert(p, str(raw), entry_point.name, base, mount=not from_default)
        values[p.name] = value
        if mount and downloaded and p.name in downloaded:
            mount = Mount(mount.path, read_only=True)  # the shared cached copy: a run must not alter it
        if mount:
            mounts.append(mount)
            named[mount.path] = p.name
        if mount and mount.output and downloaded is None:  # said once: a second rendering has downloads
            # A mistyped input would otherwise only fail inside the command.
            log.warning("-P %s=%s: no such file; taken as an output (written by the run into %s)",
                        p.name, raw, mount.path)
    _check_outputs(mounts, named)
    extras = {k: str(v) for k, v in given.items() if k not in declared}
    for key in extras:
        if not _KEY.match(key):
            raise ParameterError(f"parameter name {key!r}: expected letters, digits, '_', '-' or '.'")
    command = _format(entry_point, {k: shlex.quote(v) for k, v in values.items()})
    if extras:
        command += "".join(f" --{k} {shlex.quote(v)}" for k, v in extras.items())
    values.update(extras)
    return RenderedCommand(command=command, values=values, mounts=_dedupe(mounts), downloads=downloads)


def _check_outputs(mounts: list[Mount], named: Mapping[str, str]) -> None:
    """An output's folder is the run's own in the container (only its outputs are there), so it
    cannot also be an input folder the run is to read."""
    inputs = {m.path for m in mounts if not m.output}
    for m in mounts:
        folder = os.path.dirname(m.path)
        if m.output and folder in inputs:
            raise ParameterError(f"parameter {named[m.path]!r}: its folder {folder!r} is the input of parameter "
                                 f"{named[folder]!r}; a run writes its outputs into a folder of their own: "
                                 "give the output another folder")


def _off_host(value: str, placement: Placement, where: str, given: bool) -> str:
    """A path or URI for a run that cannot see the host's files."""
    for prefix, mounted in placement.fuse.items():
        if value.startswith(prefix):
            return mounted + value[len(prefix):].lstrip("/")
    if given and not is_remote(value):
        fused = ", ".join(placement.fuse) or "remote"
        raise ParameterError(f"{where}: the local path {value!r} does not exist on {placement.name}; "
                             f"give a {fused} or s3:// path")
    return value


def _format(entry_point: EntryPoint, quoted: Mapping[str, str]) -> str:
    try:
        return entry_point.command.format(**quoted)
    except KeyError as e:
        raise ProjectError(
            f"entry point {entry_point.name!r}: command uses {{{e.args[0]}}} but declares no "
            "parameter of that name"
        ) from None
    except (IndexError, ValueError, AttributeError) as e:
        raise ProjectError(
            f"entry point {entry_point.name!r}: command is not a valid format string ({e}); "
            "write literal braces as {{ and }}"
        ) from None


def _convert(p: Parameter, raw: str, ep: str, cwd: Path, mount: bool) -> tuple[str, Mount | None]:
    where = f"parameter {p.name!r} of entry point {ep!r}"
    if p.type == "float":
        try:
            number = float(raw)
        except ValueError:
            raise ParameterError(f"{where}: expected a float, got {raw!r}") from None
        if math.isnan(number) or math.isinf(number):
            raise ParameterError(f"{where}: expected a finite float, got {raw!r}")
        return raw, None
    if p.type == "int":
        try:
            int(raw)
        except ValueError:
            raise ParameterError(f"{where}: expected an integer, got {raw!r}") from None
        return raw, None
    if p.type == "bool":
        if raw.lower() not in _BOOLS:
            raise ParameterError(f"{where}: expected true or false (or 1/0, yes/no), got {raw!r}")
        return raw, None
    if p.type == "uri":
        # As mlflow run: a URI is passed on as given, and a bare local path is not a URI.
        if raw.startswith("file:"):
            local = _file_uri_path(raw, where)
            return raw, _mount_for(local, where) if mount else None
        if not is_remote(raw):
            raise ParameterError(f"{where}: expected a URI (such as s3://..., https://... or file:///...), "
                                 f"got {raw!r}; declare the parameter as path for local files")
        return raw, None
    if p.type == "path":
        if is_remote(raw):
            return raw, None  # downloaded first (``downloads``), then rendered again
        local = _file_uri_path(raw, where) if raw.startswith("file:") else raw
        absolute = os.path.normpath(os.path.join(cwd, os.path.expanduser(local)))
        return absolute, _mount_for(absolute, where) if mount else None
    return raw, None


def _file_uri_path(uri: str, where: str) -> str:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
        raise ParameterError(f"{where}: {uri!r}: expected file:///absolute/path")
    return unquote(parsed.path)


# What project.inputs downloads (tests/test_inputs_remote.py keeps the two in step); the second
# group goes through MLflow's artifact repositories and needs dockrun[mlflow] (checked there).
DOWNLOADABLE = ("s3://", "http://", "https://", "dbfs:/",
                "runs:/", "models:/", "mlflow-artifacts:/", "gs://", "wasbs://", "abfss://", "ftp://",
                "sftp://", "hdfs:/", "viewfs:/", "b2://", "r2://")


def _check_downloadable(uri: str, where: str) -> None:
    if not uri.startswith(DOWNLOADABLE):
        scheme = uri.split(":", 1)[0]
        raise ParameterError(f"{where}: cannot download {scheme}: paths (supported: s3://, http(s)://, "
                             "dbfs:/, and with dockrun[mlflow] runs:/, models:/, gs://, wasbs://, ...); "
                             "pass a local path, or declare the parameter as uri")


def _mount_for(path: str, where: str) -> Mount:
    """Mount no more than the parameter names: an existing file or folder read-only at its own
    path; a path that does not exist yet is an output, in an existing folder."""
    if os.path.lexists(path):
        if os.path.realpath(path) == "/":
            raise ParameterError(f"{where}: {path!r} would mount the root directory; use a path in a folder")
        return Mount(path=path, read_only=True)
    target = os.path.dirname(path)
    if target in ("", "/"):
        raise ParameterError(f"{where}: {path!r} would mount the root directory; use a path in a folder")
    if not os.path.isdir(target):
        raise ParameterError(f"{where}: no such file or directory {path!r} (nor its folder {target!r})")
    return Mount(path=path, output=True)


def _dedupe(mounts: list[Mount]) -> tuple[Mount, ...]:
    """Drop inputs already covered by a read-only input folder that holds them (an output inside
    one is kept: its own folder is mounted on top)."""
    out: list[Mount] = []
    for m in sorted(set(mounts), key=lambda m: (m.path, m.read_only)):
        covered = any((m.path == o.path or m.path.startswith(o.path.rstrip("/") + "/"))
                      and m.read_only and o.read_only for o in out)
        if not covered:
            out.append(m)
    return tuple(out)
