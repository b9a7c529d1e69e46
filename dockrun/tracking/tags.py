"""The tags and params `mlflow run` gives a project run, computed here for every tracked run
(pure, but for finding a folder's Git work tree). Tag names and values follow MLflow's
mlflow/utils/mlflow_tags.py and mlflow/projects (utils.py, docker.py, backend/local.py)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..project.source import Source
from ..project.spec import EntryPoint

MAX_PARAM_LENGTH = 6000  # MLflow refuses longer param values
# What `mlflow run --run-id` sets on a run it did not create: the rest was the creator's to say.
RESUME_TAGS = ("mlflow.project.env", "mlflow.project.backend", "mlflow.docker.image.uri",
               "mlflow.docker.image.id", "dockrun.run-id")


def project_tags(source: Source, entry_point: str, mlflow_env: str, image: str, image_id: str,
                 user: str, run_id: str) -> dict[str, str]:
    tags = {
        "mlflow.user": user,
        "mlflow.source.name": source_name(source),
        "mlflow.source.type": "PROJECT",
        "mlflow.project.entryPoint": entry_point,
        "mlflow.project.backend": "local",  # as `mlflow run` with a docker_env: a local container
        "mlflow.project.env": mlflow_env,  # MLflow's name for the environment's kind (images/kinds.py)
        "mlflow.docker.image.uri": image,
        "mlflow.docker.image.id": image_id,
        "dockrun.run-id": run_id,
    }
    if source.commit:
        tags["mlflow.source.git.commit"] = source.commit
    return tags


def login_name() -> str:
    """The user MLflow records (mlflow.user): the login name, or MLflow's default when there is none
    (no login name and a uid without a passwd entry, as in many containers)."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def source_name(source: Source) -> str:
    """As MLflow names a project's source: a remote URI as given (here: redacted); a local folder
    in a Git work tree as ``file://<work tree>#<subdirectory>``, any other folder by its path."""
    if not source.uri.startswith("/"):
        return source.uri
    top = _work_tree(source.root)
    if top is None:
        return str(source.root)
    sub = source.root.relative_to(top).as_posix()
    return f"file://{top}" + (f"#{sub}" if sub != "." else "")


def _work_tree(folder: Path) -> Path | None:
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def logged_params(entry_point: EntryPoint, given: Mapping[str, object]) -> dict[str, str]:
    """The params as the user typed them (a relative path stays relative, a float keeps its
    spelling), with the declared defaults of the others, as `mlflow run` logs them."""
    params = {p.name: str(p.default) for p in entry_point.parameters if p.default is not None}
    params.update({k: str(v) for k, v in given.items()})
    return {k: v[:MAX_PARAM_LENGTH] for k, v in params.items()}
