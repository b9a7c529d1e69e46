"""The Databricks backend's seam.

The project tree (the same files an image would get) is uploaded once per content to
``dbfs:/dockrun/projects/`` (named by the archive's SHA-256, which the launcher checks); a small
standard-library launcher (launcher.py) is uploaded once per version; the run is a one-off
``spark_python_task`` on the cluster from ``-c``, with the environment's PyPI requirements as
cluster libraries (``docker_env``: the cluster's docker_image).
The run is recorded like a local one and followed by polling ``runs/get``.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ...databricks_api.workspace import workspace
from ...errors import ConfigError
from ...project.params import Placement
from ...store.records import RunStore, new_run_id
from ..handle import new_record
from ..outcome import record_end
from .config import Cluster, cluster_from_config

if TYPE_CHECKING:
    from ...request import PreparedRun, RunRequest
    from .run import DatabricksRun

DBFS_ROOT = "dbfs:/dockrun"
LAUNCHER = Path(__file__).with_name("launcher.py")
# The cluster reads dbfs:/ paths through its /dbfs mount; host paths mean nothing there, and a
# relative default is the project's own file in the unpacked project.
ON_CLUSTER = Placement(project_dir=".", host_paths=False, name="Databricks", fuse={"dbfs:/": "/dbfs/"})


class DatabricksBackend:
    name = "databricks"
    options = frozenset({"entry_point", "version", "parameters", "backend_config", "env_manager", "synchronous"})
    placement = ON_CLUSTER

    def configure(self, request: RunRequest, environ: Mapping[str, str]) -> Cluster:
        if request.backend_config is None:
            raise ConfigError("--backend databricks needs --backend-config: a cluster spec (JSON file or string)")
        cluster = cluster_from_config(request.backend_config)
        workspace(environ)  # credentials are checked before any work, used when submitting
        return cluster

    def submit(self, prepared: PreparedRun, log: Callable[[str], None]) -> DatabricksRun:
        """Upload what DBFS lacks, submit, record; return the run."""
        import os

        from ...databricks_api.client import DatabricksClient
        from .run import DatabricksRun
        from .submit import LauncherTask, cluster_libraries, project_archive, submit_body

        client = DatabricksClient(workspace(os.environ), log)
        source = prepared.source
        blob = project_archive(source.root, source.key if source.key_is_tree_hash else None)
        # Named by the archive's own SHA-256 (a Git source's key names a commit, not these bytes),
        # which the launcher checks before unpacking: a name always means one content.
        digest = hashlib.sha256(blob).hexdigest()
        archive = f"{DBFS_ROOT}/projects/{digest}.tar.gz"
        if client.size(archive) != len(blob):  # uploaded once, and again if what is there is wrong
            log(f"uploading the project to {archive}")
            client.upload(archive, blob)
        launcher_text = LAUNCHER.read_bytes()
        launcher = f"{DBFS_ROOT}/launcher/{hashlib.sha256(launcher_text).hexdigest()[:16]}.py"
        client.ensure(launcher, launcher_text)
        run_id = new_run_id()
        outputs = f"{DBFS_ROOT}/runs/{run_id}/outputs"
        store = RunStore(prepared.settings.home)
        store.insert(new_record(prepared, run_id, outputs))
        task = LauncherTask(run_id, prepared.project.name, launcher, archive, prepared.rendered.command, outputs,
                            digest)
        body = submit_body(task, prepared.backend_config, prepared.env,
                           cluster_libraries(prepared.env, prepared.project))
        try:
            remote_id = client.submit(body)
        except BaseException as e:
            record_end(store, run_id, "FAILED", None, f"Databricks refused the run: {e}".splitlines()[0])
            raise
        url = client.get(remote_id).get("run_page_url")
        store.update(run_id, remote_run_id=remote_id, remote_url=url)
        log(f"submitted Databricks run {remote_id}: {url}")
        return DatabricksRun(store, run_id, client)

    def attach(self, store: RunStore, run_id: str) -> DatabricksRun:
        from .run import DatabricksRun

        return DatabricksRun(store, run_id)
