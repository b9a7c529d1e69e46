"""dockrun: run MLflow Projects in Docker containers, reproducibly and fast."""
from __future__ import annotations

from .errors import (
    BuildError,
    ConfigError,
    DockrunError,
    ExecutionError,
    Interrupted,
    ParameterError,
    ProjectError,
    RemoteError,
    SourceError,
)

__version__ = "0.1.0"

__all__ = [
    "execute",
    "DockrunError",
    "ProjectError",
    "ParameterError",
    "SourceError",
    "ConfigError",
    "BuildError",
    "ExecutionError",
    "RemoteError",
    "Interrupted",
]


def execute(*args, **kwargs):  # noqa: ANN002, ANN003 - documented in dockrun.api.execute
    from .api import execute as _execute  # lazy: keeps `import dockrun` light

    return _execute(*args, **kwargs)


execute.__doc__ = "Run an MLflow project in a container; see dockrun.api.execute."
