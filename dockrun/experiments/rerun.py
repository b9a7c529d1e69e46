"""`dockrun runs rerun` and `dockrun.rerun()`: the same thing again, exactly. A run's record names
its source by commit (or content hash), its entry point, the parameters as given, the options
that shape its environment, and its image by content ID; a rerun repeats all of them, in that same
image where it can still be had (here, or in the team's registry), else in one built again from
the same source and lock, saying whether it installed the same packages. ``-P`` overrides a value
and the new record says which run it repeats (``rerun_of``)."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Callable

from ..api import submit_prepared
from ..backends import get_backend
from ..config import load_settings
from ..errors import ConfigError
from ..httpauth import redact
from ..locks import make_private_dir, write_atomic
from ..options import OPTIONS, from_kept
from ..prepare import prepare
from ..project.access import requested_access
from ..project.resolve import is_git_uri
from ..request import RunRequest
from ..terminal import printable


def rerun(run: str, parameters: Mapping[str, Any] | None = None, synchronous: bool = True,
          log: Callable[[str], None] | None = None,
          output: tuple[IO[bytes] | None, IO[bytes] | None] = (None, None),
          trust: bool = False, quiet: bool = False, verbose: bool = False):  # noqa: ANN201 - a RunHandle
    """Run ``run`` (an ID, a unique prefix, or a file `dockrun runs show` wrote) again; returns the
    new run's handle, as ``execute`` does. A record file is someone else's: what it asks of this
    machine (host paths as parameters, docker options, the project's host access and build
    credentials) needs ``trust``. Without ``log``, ``quiet`` and ``verbose`` are `dockrun run`'s."""
    record = load_record(run)
    overrides = {k: str(v) for k, v in (parameters or {}).items()}
    request = rerun_request(record, overrides)
    foreign = _is_file(run) and not trust
    # The project's host access: the user's --trust, or their own record's; never a file's own word.
    request = dataclasses.replace(request, trust=trust or (request.trust and not _is_file(run)))
    if foreign:
        _refuse_host_access(run, _options_asked(request))
    backend = get_backend(request.backend)
    prepared = prepare(request, backend)  # every reason it cannot be exact, before a word is said
    if foreign:
        mounted = {m.path for m in prepared.rendered.mounts}
        asked = [f"host path {k}={v}" for k, v in prepared.rendered.values.items()
                 if k not in overrides and v in mounted]
        # A remote URI is fetched by this machine, with its network and credentials: the same.
        asked += [f"download {k}={redact(v)}" for k, v in prepared.rendered.downloads.items() if k not in overrides]
        # A folder or archive on this machine that a record file names is no more the user's own
        # than a URI it names: its docker_env host access needs --trust too.
        access = requested_access(prepared.project)
        _refuse_host_access(run, asked + ([f"the project's {access.describe()}"] if access else []))
    changed = {k: v for k, v in request.parameters.items() if record["options"].get("parameters", {}).get(k) != v}
    say = log or (lambda line: None if quiet else sys.stderr.write(f"dockrun: {line}\n"))
    # The record's text may come from elsewhere (a file): shown terminal-safe.
    say(printable(f"rerun of {record['run_id']}" + (f" with {', '.join(f'{k}={v}' for k, v in changed.items())}"
                                                    if changed else "")))
    _remember_environment(record)
    return submit_prepared(prepared, backend, log, output, quiet, verbose)


def _is_file(run: str) -> bool:
    return run.endswith(".json") or os.sep in run


def _options_asked(request: RunRequest) -> list[str]:
    docker_args = request.docker_args.items() if isinstance(request.docker_args, Mapping) else [
        (a, "") for a in request.docker_args]
    asked = [f"docker option {k}" + (f"={v}" if v not in ("", None) else "") for k, v in docker_args]
    if request.storage_dir:
        asked.append(f"storage folder {request.storage_dir}")
    return asked


def _refuse_host_access(run: str, asked: list[str]) -> None:
    if asked:
        raise ConfigError(f"{run}: a record file is someone else's, and this one asks for access to this machine "
                          f"({', '.join(asked)}); change a host path with -P NAME=VALUE, or rerun with --trust "
                          "if you trust this record (and its project) with it")


def load_record(run: str) -> dict[str, Any]:
    """The record as `runs show` prints it: from this machine's store, or from such a file."""
    if _is_file(run):
        try:
            data = json.loads(Path(run).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{run}: no such file (expected a run ID or a file `dockrun runs show` wrote)") from None
        except ValueError as e:
            raise ConfigError(f"{run}: not a run record ({e})") from None
        if not isinstance(data, dict) or "run_id" not in data or "uri" not in data:
            raise ConfigError(f"{run}: not a run record (expected what `dockrun runs show ID` prints)")
        data.setdefault("options", {})
        _check_shape(data, run)
        return data
    from ..api import get_run

    return dataclasses.asdict(get_run(run).record())


# The fields of a record file a rerun reads, and the JSON each must be (None: absent).
_TEXT, _MAYBE_TEXT = ((str,), "text"), ((str, type(None)), "text or null")
_RECORD_SHAPE = {"run_id": _TEXT, "uri": _TEXT, "entry_point": _TEXT, "image_id": _MAYBE_TEXT,
                 "source_key": _MAYBE_TEXT, "commit_sha": _MAYBE_TEXT, "subdirectory": _MAYBE_TEXT,
                 "backend": _MAYBE_TEXT, "dev": ((bool, type(None)), "true, false or null"),
                 "options": ((dict,), "an object")}
_SCALAR = (str, int, float, bool)


def _check_shape(data: Mapping[str, Any], where: str) -> None:
    """A record file is anyone's text: each field a rerun reads must be the JSON `runs show` writes,
    or one line names it (not a Python error further on)."""
    for name, (types, what) in _RECORD_SHAPE.items():
        if not isinstance(data.get(name), types):
            raise ConfigError(f"{where}: {name}: expected {what}")
    for name, value in data["options"].items():
        opt = OPTIONS.get(name)
        if opt is None or "rerun" not in opt.kept or value is None:
            continue  # what a rerun does not take is left aside (from_kept)
        if name == "parameters":
            ok = isinstance(value, dict) and all(isinstance(v, _SCALAR) for v in value.values())
            what = "an object of parameter values"
        elif opt.multiple:  # a list of docker options, or execute()'s mapping of them
            ok = (isinstance(value, list) and all(isinstance(v, str) for v in value)) or (
                isinstance(value, dict) and all(v is None or isinstance(v, _SCALAR) for v in value.values()))
            what = "a list of texts or an object"
        elif opt.is_flag:
            ok, what = isinstance(value, bool), "true or false"
        else:
            ok, what = isinstance(value, str), "text"
        if not ok:
            raise ConfigError(f"{where}: options.{name}: expected {what}")


def rerun_request(record: Mapping[str, Any], overrides: Mapping[str, str]) -> RunRequest:
    """The request that repeats ``record``, or one line saying why it cannot be exact."""
    run_id, backend = record["run_id"], record.get("backend") or "local"
    if backend != "local":
        raise ConfigError(f"run {run_id} ran on {backend}: dockrun reruns local runs exactly; for this one, "
                          "submit it again with dockrun run -b " + backend)
    if record.get("dev"):
        raise ConfigError(f"run {run_id} was a --dev run: it ran the folder's code as it was then, which nothing "
                          "kept; run it again with dockrun run --dev")
    if not record.get("image_id"):
        raise ConfigError(f"run {run_id}: its record names no image ID (made by an older dockrun), so it cannot "
                          "be repeated exactly")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", str(record["image_id"])):  # it also names a cache file
        raise ConfigError(f"run {run_id}: its record's image_id {record['image_id']!r} is not an image ID "
                          "(expected sha256: and 64 hex digits)")
    options = record.get("options") or {}
    uri, version = record["uri"], None
    if record.get("commit_sha") and is_git_uri(uri):
        version = record["commit_sha"]
        if record.get("subdirectory") and "#" not in uri:
            uri = f"{uri}#{record['subdirectory']}"
    for name, value in (options.get("parameters") or {}).items():
        if "***" in str(value) and name not in overrides:
            raise ConfigError(f"run {run_id}: its parameter {name} was a URL with credentials, which records never "
                              f"keep; give it again: -P {name}=URL")
    if "***" in uri:
        raise ConfigError(f"run {run_id}: its URI carried credentials, which records never keep; give them in "
                          "DOCKRUN_GIT_USERNAME / DOCKRUN_GIT_PASSWORD and run the URI without them")
    kept = from_kept(options, "rerun")
    kept["parameters"] = {**kept.get("parameters", {}), **overrides}
    return RunRequest(uri=uri, version=version, entry_point=record["entry_point"], **kept,
                      image_id=record["image_id"], rerun_of=run_id, source_key=record["source_key"])


def _remember_environment(record: Mapping[str, Any]) -> None:
    """A record file carries what its image installed: kept as this machine's knowledge of that
    image, so a rebuild can be compared with it."""
    env = record.get("environment")
    if not isinstance(env, dict) or not env.get("recorded") or not env.get("packages"):
        return
    home = load_settings().home
    path = home / "cache" / "installed" / (str(record["image_id"]).split(":")[-1] + ".json")
    if not path.exists():
        make_private_dir(home)
        write_atomic(path, json.dumps({**env, "recorded": True}, sort_keys=True))
