"""What host access a project asks for, and whether it gets it (pure).

An MLproject's ``docker_env`` may bind-mount host folders (``volumes``) and copy host variables
into the container (``environment`` entries without a value); a ``path`` parameter's default may
be a remote URI, which this machine downloads, with its network and its credentials (s3://,
dbfs:/, runs:/, a service on its loopback), and hands to the run. MLflow honours all of them for
any project. dockrun honours them as MLflow does for a folder of the user's own, and refuses them
for a project from elsewhere (a Git URI or an archive: code the user did not write) unless the
user allowed it with ``--trust``. Whatever the source, a mount that hands over the machine (the engine's socket,
``/``, the home folder, a credentials folder) is said out loud on every run.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from ..httpauth import redact
from .spec import ProjectSpec

TRUST_FLAG = "--trust"

# Folders under the home folder whose contents are credentials (or config that runs commands).
_CREDENTIAL_FOLDERS = (".ssh", ".aws", ".azure", ".docker", ".kube", ".gnupg", ".config", ".netrc",
                       ".git-credentials", ".databrickscfg", ".pypirc", ".local/share/dockrun")
_ENGINE_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


@dataclass(frozen=True)
class HostAccess:
    """The host access a project's MLproject asks for, as written there."""

    volumes: tuple[str, ...] = ()
    host_variables: tuple[str, ...] = ()  # names whose value is copied from the host
    # (parameter, URI): a path parameter's default that this machine would download for the run
    downloads: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.volumes or self.host_variables or self.downloads)

    def describe(self) -> str:
        parts = [f"volume {v}" for v in self.volumes] + [f"host variable {n}" for n in self.host_variables]
        parts += [f"parameter {name!r}: a download of its default {redact(uri)} by this machine"
                  for name, uri in self.downloads]
        return ", ".join(parts)


def requested_access(project: ProjectSpec, downloads: Mapping[str, str] | None = None,
                     given: Mapping[str, str] | None = None) -> HostAccess:
    """What the project asks of this machine; with the run's ``downloads`` (parameter -> remote
    URI) and the parameters the user ``given``, the downloads its defaults name too."""
    defaults = tuple(sorted((name, uri) for name, uri in (downloads or {}).items() if name not in (given or {})))
    env = project.docker_env
    if env is None:
        return HostAccess(downloads=defaults)
    return HostAccess(volumes=tuple(env.volumes),
                      host_variables=tuple(name for name, value in env.environment if value is None),
                      downloads=defaults)


def check_host_access(access: HostAccess, from_elsewhere: bool, trusted: bool, shown_uri: str) -> None:
    """A project from elsewhere gets no host access unless the user trusted it: one line that
    lists exactly what it asks for and how to allow it."""
    if access and from_elsewhere and not trusted:
        asker = "MLproject" if access.downloads else "MLproject docker_env"
        raise ConfigError(
            f"{shown_uri}: {asker} asks for host access ({access.describe()}); a project from a "
            f"Git URI or an archive gets none unless you allow it: rerun with {TRUST_FLAG} if you trust this "
            "project with it" + (f", or give {_given(access)} yourself" if access.downloads else ""))


def _given(access: HostAccess) -> str:
    return " ".join(f"-P {name}=..." for name, _ in access.downloads)


def dangerous_mounts(access: HostAccess, environ: Mapping[str, str]) -> list[str]:
    """One warning per volume that hands over the machine or the user's credentials."""
    home = os.path.realpath(os.path.expanduser(environ.get("HOME") or "~"))
    sockets = set(_ENGINE_SOCKETS)
    docker_host = environ.get("DOCKER_HOST", "")
    if docker_host.startswith("unix://"):
        sockets.add(docker_host[len("unix://"):])
    sockets = {os.path.realpath(s) for s in sockets}
    credentials = [os.path.join(home, name) for name in _CREDENTIAL_FOLDERS]
    warnings = []
    for volume in access.volumes:
        host = os.path.realpath(os.path.expanduser(volume.split(":", 1)[0]))
        why = None
        if host in sockets:
            why = "the Docker engine's socket: root on this machine"
        elif host == "/":
            why = "the whole machine's file system"
        elif home == host or home.startswith(host.rstrip("/") + "/"):
            why = "your home folder"
        elif any(host == c or host.startswith(c + "/") for c in credentials):
            why = "a folder of credentials"
        elif host == "/etc" or host.startswith("/etc/"):
            why = "the machine's configuration"
        if why:
            warnings.append(f"MLproject docker_env.volumes: {volume} gives the container {why}")
    return warnings
