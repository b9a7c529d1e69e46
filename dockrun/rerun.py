"""`dockrun runs rerun` and `dockrun.rerun()`: the same thing again, exactly. A run's record names
its source by commit (or content hash), its entry point, the parameters as given, the options
that shape its environment, and its image by content ID; a rerun repeats all of them, in that same
image where it can still be had (here, or in the team's registry), else in one built again from
the same source and lock, saying whether it installed the same packages. ``-P`` overrides a value
and the new record says which run it repeats (``rerun_of``)."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Callable

from .api import submit_prepared
from .backends import get_backend
from .config import load_settings
from .errors import ConfigError
from .locks import make_private_dir, write_atomic
from .prepare import prepare
from .project.resolve import is_git_uri
from .request import RunRequest


def rerun(run: str, parameters: Mapping[str, Any] | None = None, synchronous: bool = True,
          log: Callable[[str], None] | None = None,
          output: tuple[IO[bytes] | None, IO[bytes] | None] = (None, None)):  # noqa: ANN201 - a RunHandle
    """Run ``run`` (an ID, a unique prefix, or a file `dockrun runs show` wrote) again; returns the
    new run's handle, as ``execute`` does."""
    record = load_record(run)
    request = rerun_request(record, {k: str(v) for k, v in (parameters or {}).items()})
    backend = get_backend(request.backend)
    prepared = prepare(request, backend)  # every reason it cannot be exact, before a word is said
    changed = {k: v for k, v in request.parameters.items() if record["options"].get("parameters", {}).get(k) != v}
    say = log or (lambda line: sys.stderr.write(f"dockrun: {line}\n"))
    say(f"rerun of {record['run_id']}" + (f" with {', '.join(f'{k}={v}' for k, v in changed.items())}"
                                          if changed else ""))
    _remember_environment(record)
    return submit_prepared(prepared, backend, log, output)


def load_record(run: str) -> dict[str, Any]:
    """The record as `runs show` prints it: from this machine's store, or from such a file."""
    if run.endswith(".json") or os.sep in run:
        try:
            data = json.loads(Path(run).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{run}: no such file (expected a run ID or a file `dockrun runs show` wrote)") from None
        except ValueError as e:
            raise ConfigError(f"{run}: not a run record ({e})") from None
        if not isinstance(data, dict) or "run_id" not in data or "uri" not in data:
            raise ConfigError(f"{run}: not a run record (expected what `dockrun runs show ID` prints)")
        data.setdefault("options", {})
        return data
    import dataclasses

    from .api import get_run

    return dataclasses.asdict(get_run(run).record())


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
    options = record.get("options") or {}
    uri, version = record["uri"], None
    if record.get("commit_sha") and is_git_uri(uri):
        version = record["commit_sha"]
        if record.get("subdirectory") and "#" not in uri:
            uri = f"{uri}#{record['subdirectory']}"
    if "***" in uri:
        raise ConfigError(f"run {run_id}: its URI carried credentials, which records never keep; give them in "
                          "DOCKRUN_GIT_USERNAME / DOCKRUN_GIT_PASSWORD and run the URI without them")
    docker_args = options.get("docker_args") or ()
    return RunRequest(
        uri=uri, version=version, entry_point=record["entry_point"],
        parameters={**options.get("parameters", {}), **overrides},
        docker_args=dict(docker_args) if isinstance(docker_args, Mapping) else tuple(docker_args),
        env_manager=options.get("env_manager", "auto"), base_image=options.get("base_image"),
        storage_dir=Path(options["storage_dir"]) if options.get("storage_dir") else None,
        cwd=Path(options["cwd"]) if options.get("cwd") else None, trust=bool(options.get("trust")),
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
