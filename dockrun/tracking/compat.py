"""Can the project's MLflow open the local store the host's MLflow writes? (pure, but for asking
the host's installed distributions)

A sqlite store carries its schema's revision, and every MLflow refuses a store whose revision is
not its own ("Detected out-of-date database schema"), newer or older. The host's MLflow creates
the run (and the store, migrated to its own schema) before the container's MLflow logs into it, so
both must be releases with the same schema. MLflow changes the schema only in minor releases
(3.17.0 and 3.17.2 share one, 3.18.0 has another), so two MLflows are taken to agree when their
major.minor does: a patch apart never refuses a run that would have worked.

The environment's MLflow is known before the build when the project pins it exactly
(``mlflow==X`` in its requirements or lock), else from the image's record of what it installed
(images/installed.py) once the image is there; an environment without MLflow logs nothing itself.
A file: store has no schema revision, a server is reached over its versioned REST API: only
sqlite: stores are checked.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError
from .target import STORE, TrackingTarget

# The distributions that carry MLflow's store code, in the order a host's is looked for.
MLFLOW_DISTS = ("mlflow", "mlflow-skinny")
_EXACT = re.compile(r"^(mlflow|mlflow-skinny)(?:\[[^\]]*\])?===?(\d+(?:\.\d+)*)(?:\s|;|$)", re.I)

Found = tuple[str, str]  # (distribution, version)


def schema_matters(target: TrackingTarget | None) -> bool:
    """Whether the project's MLflow must share the host's store schema: a sqlite: store."""
    return target is not None and target.kind == STORE and target.uri.startswith("sqlite:")


def host_mlflow() -> Found | None:
    """The host's MLflow distribution and version (no import of MLflow: a second or more)."""
    import importlib.metadata as metadata

    for dist in MLFLOW_DISTS:
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def pinned_mlflow(lines: Iterable[str]) -> Found | None:
    """MLflow pinned exactly in requirement or lock lines (canonical: ``mlflow-skinny==3.17.2``)."""
    for line in lines:
        m = _EXACT.match(line.strip().replace("_", "-"))
        if m:
            return m.group(1).lower(), m.group(2)
    return None


def installed_mlflow(record: Mapping[str, Any]) -> Found | None:
    """MLflow in an image's record of what it installed (images/installed.py), if any."""
    versions = {re.sub(r"[-_.]+", "-", str(p.get("name", ""))).lower(): str(p.get("version", ""))
                for p in record.get("packages") or []}
    return next(((d, versions[d]) for d in MLFLOW_DISTS if versions.get(d)), None)


def _release(version: str) -> tuple[str, ...]:
    return tuple(re.split(r"[.+-]", version)[:2])


def check_store_mlflow(target: TrackingTarget, env: Found | None, host: Found | None) -> None:
    """One line saying what to change when the project's MLflow cannot open the host's store."""
    if not (schema_matters(target) and env and host) or _release(env[1]) == _release(host[1]):
        return
    raise ConfigError(
        f"MLflow store {target.uri}: the host's MLflow {host[1]} and MLflow {env[1]} in the project's "
        f"environment use different store schemas, and each refuses the other's; pin {env[0]}=={host[1]} "
        f"in the project, or install {host[0]}=={env[1]} on the host")
