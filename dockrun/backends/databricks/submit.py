"""Submitting to Databricks (pure parts and the upload): the project tree packed as the image would
get it, the environment as cluster libraries, and the runs/submit body of a launcher task."""
from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...images.conda_spec import conda_to_pypi
from ...images.environment import EnvSpec
from ...images.kinds import DOCKER, kind_of
from ...images.requirements import is_local_code
from ...project.spec import ProjectSpec
from ...project.treehash import TreeDigest, walk
from .config import Cluster
from .launcher import encode_command


def cluster_libraries(env: EnvSpec, project: ProjectSpec) -> list[dict[str, Any]]:
    reads = kind_of(env.kind).reads
    if reads == "requirements":
        return [{"pypi": {"package": req}} for req in env.requirements]
    if reads == "conda":  # the cluster has no conda: its PyPI-installable part, translated
        _, reqs = conda_to_pypi(project.root, project.env_file or "conda.yaml")
        return [{"pypi": {"package": req}} for req in reqs if not is_local_code(req)]
    return []


@dataclass(frozen=True)
class LauncherTask:
    """What the launcher on the cluster is told: where the project and itself are on DBFS, the
    command, and where the run's outputs go."""

    run_id: str
    project: str
    launcher: str
    archive: str
    command: str
    outputs: str
    archive_sha256: str = ""
    env: tuple[str, ...] = ()  # NAME=VALUE for the command (MLflow's run; never a secret: the run's page shows them)


def submit_body(task_in: LauncherTask, cluster: Cluster, env: EnvSpec,
                libraries: list[dict[str, Any]]) -> dict[str, Any]:
    run_id = task_in.run_id
    task: dict[str, Any] = {
        "task_key": "dockrun",
        "spark_python_task": {"python_file": task_in.launcher,
                              "parameters": [task_in.archive, encode_command(task_in.command), run_id, task_in.outputs,
                                             task_in.archive_sha256, *task_in.env]},
    }
    body: dict[str, Any] = {"run_name": f"dockrun {task_in.project} {run_id}", "tasks": [task]}
    if cluster.serverless is not None:
        # Serverless compute installs a task's environment, not cluster libraries: the same PyPI
        # requirements as pip lines, then the ones -c adds.
        task["environment_key"] = "dockrun"
        deps = [lib["pypi"]["package"] for lib in libraries if "pypi" in lib] + list(cluster.serverless["dependencies"])
        spec: dict[str, Any] = {"environment_version": cluster.serverless["environment_version"]}
        if deps:
            spec["dependencies"] = deps
        body["environments"] = [{"environment_key": "dockrun", "spec": spec}]
    elif cluster.new_cluster is not None:
        new = dict(cluster.new_cluster)
        if env.kind == DOCKER.name:
            new.setdefault("docker_image", {"url": env.base_image})
        task["new_cluster"] = new
    else:
        task["existing_cluster_id"] = cluster.existing_cluster_id
    libs = libraries + list(cluster.libraries)
    if libs and cluster.serverless is None:
        task["libraries"] = libs
    if cluster.timeout_seconds:
        task["timeout_seconds"] = cluster.timeout_seconds
    # The dockrun run ID as idempotency token: a retried submit never starts a second run.
    body["idempotency_token"] = run_id
    # Queued, not skipped, when the workspace is at its concurrency limits (2.2 queues jobs by
    # default; said explicitly so one-time runs behave the same whatever the default).
    body["queue"] = {"enabled": True}
    return body


def project_archive(root: Path, expected_key: str | None = None) -> bytes:
    """A deterministic tar.gz of the tree an image would get (.dockerignore honoured, no .git).
    With ``expected_key`` (a tree hash), what was packed must be that tree: the archive is
    uploaded under that key."""
    raw = io.BytesIO()
    digest = TreeDigest()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for entry in walk(root):
            info = tar.gettarinfo(str(entry.path), arcname=entry.relpath)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isfile():
                digest.pack_file(tar, info, entry, root)
            else:
                digest.link(entry.relpath, info.linkname)
                tar.addfile(info)
    if expected_key is not None:
        digest.verify(root, expected_key)
    return gzip.compress(raw.getvalue(), mtime=0)
