"""The Databricks backend's seam.

The project tree (the same files an image would get) is uploaded once per content to
``dbfs:/dockrun/projects/``, or with ``"volume"`` in ``-c`` to ``<volume>/<user>/projects/`` through
the Files API (named by the archive's SHA-256, which the launcher checks); a small
standard-library launcher (launcher.py) is uploaded once per version; the run is a one-off
``spark_python_task`` on the cluster from ``-c``, with the environment's PyPI requirements as
cluster libraries (``docker_env``: the cluster's docker_image).
The run is recorded like a local one and followed by polling ``runs/get``.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ...databricks_api.workspace import check, connect
from ...errors import ConfigError
from ...project.params import Placement
from ...store.records import RunStore, new_run_id
from ..handle import new_record
from ..outcome import record_end
from .config import NEEDS_VOLUME, Cluster, cluster_from_config

if TYPE_CHECKING:
    from ...databricks_api.client import DatabricksClient
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
        check(environ)  # credentials are checked before any work (no host contacted), used when submitting
        return cluster

    def submit(self, prepared: PreparedRun, log: Callable[[str], None]) -> DatabricksRun:
        """Upload what the workspace lacks, submit, record; return the run."""
        import os

        from ...databricks_api.client import DatabricksClient
        from .run import DatabricksRun
        from .submit import LauncherTask, cluster_libraries, project_archive, submit_body

        if prepared.backend_config.serverless is not None and prepared.env.kind == "docker":
            raise ConfigError("--backend-config: serverless compute runs no container image: the project's "
                              "docker_env needs a cluster (new_cluster with Databricks Container Services)")
        client = DatabricksClient(connect(os.environ), log)
        source = prepared.source
        blob = project_archive(source.root, source.key if source.key_is_tree_hash else None)
        root, archive, launcher = upload_code(client, prepared.backend_config, blob, log)
        run_id = new_run_id()
        outputs = f"{root}/runs/{run_id}/outputs"
        store = RunStore(prepared.settings.home)
        store.insert(new_record(prepared, run_id, outputs))
        task = LauncherTask(run_id, prepared.project.name, launcher, archive, prepared.rendered.command, outputs,
                            hashlib.sha256(blob).hexdigest())
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


def upload_code(client: DatabricksClient, cluster: Cluster, blob: bytes,
                log: Callable[[str], None]) -> tuple[str, str, str]:
    """Put the project archive and the launcher where the cluster reads them: the volume named in
    ``-c`` (under the caller's own folder), else the DBFS root. (root, archive, launcher)."""
    from ...databricks_api.client import DatabricksError

    if cluster.volume:
        # One folder per user (or service principal): runs of different users never share a name.
        root = f"{cluster.volume}/{re.sub(r'[^A-Za-z0-9@._+-]', '_', client.user_name()) or 'unknown'}"
    else:
        root = DBFS_ROOT
    # Named by the archive's own SHA-256 (a Git source's key names a commit, not these bytes),
    # which the launcher checks before unpacking: a name always means one content.
    archive = f"{root}/projects/{hashlib.sha256(blob).hexdigest()}.tar.gz"
    try:
        if client.size(archive) != len(blob):  # uploaded once, and again if what is there is wrong
            log(f"uploading the project to {archive}")
            client.upload(archive, blob)
    except DatabricksError as e:
        if not cluster.volume and e.status == 403 and "dbfs root" in str(e).lower():
            raise ConfigError(f"Databricks {client.ws.host}: this workspace does not allow files in the DBFS root "
                              f"({e.error_code}): {NEEDS_VOLUME}") from None
        raise
    text = LAUNCHER.read_bytes()
    launcher = f"{root}/launcher/{hashlib.sha256(text).hexdigest()[:16]}.py"
    client.ensure(launcher, text)
    return root, archive, launcher
