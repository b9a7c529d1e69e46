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
    "sweep",
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


def rerun(run: str, parameters=None, synchronous: bool = True, trust: bool = False):  # noqa: ANN001, ANN201 - see dockrun.experiments.rerun.rerun
    """Run a recorded run again exactly (same source, entry point, parameters and image); ``parameters``
    override values. Returns the new run's handle, as ``execute`` does. ``trust``: as ``execute``'s, and a
    record file (someone else's) may have what it asks of this machine (host paths, docker options, host
    access, build credentials); a run of your own keeps the ``trust`` it had."""
    from .experiments.rerun import rerun as _rerun

    return _rerun(run, parameters, synchronous, trust=trust)


def sweep(uri: str, grid, parallel: int = 4, **options):  # noqa: ANN001, ANN003, ANN201 - see dockrun.experiments.sweep
    """Run ``uri`` for every point of ``grid`` (a mapping of parameter -> values, every combination;
    or a list of parameter mappings), at most ``parallel`` at once; ``options`` are ``execute``'s
    (entry_point, backend, docker_args, ...). Returns a SweepResult: ``.rows`` (parameters, run ID,
    status, metrics) and ``.sweep_id``."""
    from collections.abc import Mapping

    from .experiments.sweep import grid_points
    from .experiments.sweep import sweep as _sweep
    from .options import from_keywords

    points = grid_points({k: [str(v) for v in vs] for k, vs in grid.items()}) if isinstance(grid, Mapping) else [
        {k: str(v) for k, v in p.items()} for p in grid]
    return _sweep(from_keywords(uri, options, "sweep"), points, parallel)
