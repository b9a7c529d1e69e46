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
    "get_run",
    "rerun",
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


def get_run(run_id: str):  # noqa: ANN201 - returns dockrun.runs.LocalRun
    """A handle on an existing run, by ID (or a unique prefix), from any process."""
    from .api import get_run as _get_run

    return _get_run(run_id)


def rerun(run: str, parameters=None, synchronous: bool = True):  # noqa: ANN001, ANN201 - see dockrun.rerun.rerun
    """Run a recorded run again exactly (same source, entry point, parameters and image); ``parameters``
    override values. Returns the new run's handle, as ``execute`` does."""
    from .rerun import rerun as _rerun

    return _rerun(run, parameters, synchronous)
