"""Where the engine is, from settings alone (DOCKER_HOST, DOCKER_CONTEXT, docker's config.json):
read before docker-py is imported, so the choices that depend on it cost nothing."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping

REMOTE_ENV = "DOCKRUN_REMOTE_ENGINE"
DEFAULT_SOCKET = "/var/run/docker.sock"


def local_socket(environ: Mapping[str, str]) -> str | None:
    """The unix socket of the engine these settings name, if it is a local one the lean client
    can use; None for anything else (tcp, ssh, a docker context, copies forced by
    DOCKRUN_REMOTE_ENGINE=1). Reads settings and docker's config.json, never the engine."""
    if environ.get(REMOTE_ENV, "").strip() not in ("", "0"):  # 1 copies files; anything else is refused there
        return None
    host = environ.get("DOCKER_HOST")
    if host:
        return (host[len("unix://"):] or None) if host.startswith("unix://") else None
    context = environ.get("DOCKER_CONTEXT") or _current_context(environ)
    return DEFAULT_SOCKET if context in ("", "default") else None


def docker_config_file(environ: Mapping[str, str]) -> str | None:
    """docker's config file, found as docker-py finds it: the first of DOCKER_CONFIG's
    config.json, ~/.docker/config.json and ~/.dockercfg that exists; None if none does."""
    home = os.path.expanduser("~")
    candidates = [os.path.join(environ["DOCKER_CONFIG"], "config.json")] if environ.get("DOCKER_CONFIG") else []
    candidates += [os.path.join(home, ".docker", "config.json"), os.path.join(home, ".dockercfg")]
    return next((path for path in candidates if os.path.exists(path)), None)


def _current_context(environ: Mapping[str, str]) -> str:
    """docker's config.json ``currentContext``, read as docker-py's get_current_context_name does
    (unreadable: default)."""
    found = docker_config_file(environ)
    if found is None:
        return "default"
    try:
        with open(found, encoding="utf-8") as f:
            name = json.load(f).get("currentContext", "default")
    except Exception:  # noqa: BLE001 - as docker-py: an unreadable config means the default context
        return "default"
    return name if isinstance(name, str) else "default"
