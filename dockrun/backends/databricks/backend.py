"""The Databricks backend's seam.

The project tree (the same files an image would get) is uploaded once per content to
``dbfs:/dockrun/<user>/projects/``, or with ``"volume"`` in ``-c`` to ``<volume>/<user>/projects/``
through the Files API (named by the archive's SHA-256, which the launcher checks on the very bytes
it unpacks); a small standard-library launcher (launcher.py) is a workspace file in the caller's
home folder (``/Users/<user>/.dockrun/launcher/``, which no other user can write), uploaded once per
version and checked by content before every run; the run is a one-off
``spark_python_task`` on the cluster from ``-c``, with the environment's PyPI requirements as
cluster libraries (``docker_env``: the cluster's docker_image).
The run is recorded like a local one and followed by polling ``runs/get``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ...config import check_durations
from ...databricks_api.workspace import check, connect
from ...errors import ConfigError, RemoteError
from ...images.kinds import DOCKER
from ...options import honoured_by
from ...project.params import Placement
from ...store.records import RunStore, new_run_id
from ...tracking.runs import ProjectRun, Tracked, start_project_run
from ..handle import new_record
from ..outcome import record_end
from .config import NEEDS_VOLUME, Cluster, check_docker_env, cluster_from_config, remote_tracking

if TYPE_CHECKING:
    from ...databricks_api.client import DatabricksClient
    from ...request import PreparedRun, RunRequest
    from ...tracking.target import TrackingTarget
    from .run import DatabricksRun

DBFS_ROOT = "dbfs:/dockrun"
LAUNCHER = Path(__file__).with_name("launcher.py")
# The cluster reads dbfs:/ paths through its /dbfs mount; host paths mean nothing there, and a
# relative default is the project's own file in the unpacked project.
ON_CLUSTER = Placement(project_dir=".", host_paths=False, name="Databricks", fuse={"dbfs:/": "/dbfs/"})


class DatabricksBackend:
    name = "databricks"
    # Tracking is the workspace's own MLflow (config.remote_tracking); -A, --storage-dir, --base-image,
    # --rebuild and --dev mean nothing on a cluster and are refused by prepare.check_options.
    options = honoured_by(name)
    placement = ON_CLUSTER
    # A tracked run goes to the workspace's MLflow, never to MLflow's local default store: its rules
    # (config.remote_tracking) decide the target in configure, which carries it to submit.
    default_tracking_uri = "databricks"

    def local_store_refusal(self, environ: Mapping[str, str]) -> str | None:
        # Never asked in practice: remote_tracking refuses any URI but the workspace's first.
        return "a Databricks cluster; track to the workspace: --tracking-uri databricks"

    def configure(self, request: RunRequest, environ: Mapping[str, str]) -> Configured:
        if request.backend_config in (None, ""):
            raise ConfigError("--backend databricks needs --backend-config: a cluster spec (JSON file or string)")
        cluster = cluster_from_config(request.backend_config, request.cwd)
        check_durations("DOCKRUN_DATABRICKS_", environ)
        tracking, note = remote_tracking(request, environ)  # where it is tracked: refusals before any request
        check(environ)  # credentials are checked before any work (no host contacted), used when submitting
        return Configured(cluster, tracking, note)

    def submit(self, prepared: PreparedRun, log: Callable[[str], None]) -> DatabricksRun:
        """Upload what the workspace lacks, start the MLflow run if tracked, record, submit; return the run."""
        from ...databricks_api.client import DatabricksClient
        from .run import DatabricksRun
        from .submit import LauncherTask, cluster_libraries, project_archive, submit_body

        configured: Configured = prepared.backend_config
        cluster, target = configured.cluster, configured.tracking
        check_docker_env(cluster, prepared.env.kind)  # before any request
        client = DatabricksClient(connect(os.environ), log)
        if configured.note:
            log(configured.note)
        if target is not None:
            check_tracking_host(target, client.ws.host)
        source = prepared.source
        blob = project_archive(source.root, source.key if source.key_is_tree_hash else None)
        root, archive, launcher = upload_code(client, cluster, blob, log)
        run_id = new_run_id()
        outputs = f"{root}/runs/{run_id}/outputs"
        tracked = start_tracking(prepared, target, run_id)  # before the record: no run if it fails
        store = RunStore(prepared.settings.home)
        store.insert(dataclasses.replace(new_record(prepared, run_id, outputs), **tracked.record))
        task = LauncherTask(run_id, prepared.project.name, launcher, archive, prepared.rendered.command, outputs,
                            hashlib.sha256(blob).hexdigest(), tuple(f"{k}={v}" for k, v in tracked.env.items()))
        body = submit_body(task, cluster, prepared.env, cluster_libraries(prepared.env, prepared.project))
        try:
            remote_id = client.submit(body)
        except BaseException as e:
            record_end(store, run_id, "FAILED", None, f"Databricks refused the run: {e}".splitlines()[0])
            raise
        url = client.get(remote_id).get("run_page_url")
        store.update(run_id, remote_run_id=remote_id, remote_url=url)
        log(f"submitted Databricks run {remote_id}: {url}")
        if target is not None:
            tag_submitted(tracked, client.ws.host, remote_id, url, log)
        return DatabricksRun(store, run_id, client)

    def attach(self, store: RunStore, run_id: str) -> DatabricksRun:
        from .run import DatabricksRun

        return DatabricksRun(store, run_id)

    def batch(self, sweep_id: str, home: Path) -> AbstractContextManager[DatabricksBackend]:
        return nullcontext(self)  # a sweep's runs share nothing here but the image


def upload_code(client: DatabricksClient, cluster: Cluster, blob: bytes,
                log: Callable[[str], None]) -> tuple[str, str, str]:
    """Put the project archive where the cluster reads it (the volume named in ``-c``, under the
    caller's own folder, else the DBFS root) and the launcher in the caller's workspace home.
    (root, archive, launcher)."""
    from ...databricks_api.client import DatabricksError

    user = client.user_name()
    # One folder per user (or service principal): runs of different users never share a name. On the
    # DBFS root that keeps names apart, not people out (every workspace user can write there).
    root = f"{cluster.volume or DBFS_ROOT}/{user_folder(user)}"
    # Named by the archive's own SHA-256 (a Git source's key names a commit, not these bytes). Anyone
    # who can write the folder can still replace it before the cluster reads it: the launcher reads
    # it once and checks those bytes against the SHA-256 the submitted task carries.
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
    return root, archive, install_launcher(client, user, log)


def install_launcher(client: DatabricksClient, user: str, log: Callable[[str], None]) -> str:
    """The launcher as a workspace file in the caller's home folder, named by its SHA-256 and checked
    by content before every run. The cluster executes that file as the submitting user, so it must
    live where nobody else can change it between this check and the task's start: a workspace home
    is the caller's (and the workspace admins'), while every user can write the DBFS root and every
    WRITE VOLUME holder any folder of a volume."""
    import base64

    from ...databricks_api.client import DatabricksError

    if not user or "/" in user or user in (".", ".."):
        raise ConfigError(f"Databricks {client.ws.host}: the credentials' user name {user!r} names no workspace "
                          "home folder (/Users/<name>) for the launcher")
    text = LAUNCHER.read_bytes()
    folder = f"/Users/{user}/.dockrun/launcher"
    path = f"{folder}/{hashlib.sha256(text).hexdigest()}.py"

    def stored() -> bytes | None:
        try:
            answer = client.call("GET", "2.0/workspace/export", query={"path": path, "format": "AUTO"})
        except DatabricksError as e:
            if e.status == 404 or e.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return base64.b64decode(answer.get("content") or "")

    if stored() == text:
        return path
    client.call("POST", "2.0/workspace/mkdirs", {"path": folder})
    client.call("POST", "2.0/workspace/import", {"path": path, "format": "AUTO", "overwrite": True,
                                                 "content": base64.b64encode(text).decode()})
    if stored() != text:
        raise RemoteError(f"Databricks {client.ws.host}: {path} holds other content than was uploaded")
    log(f"uploaded the launcher to {path}")
    return path


def user_folder(user_name: str) -> str:
    """The caller's folder name (a user's e-mail, a service principal's ID) as one safe path
    component: other characters become ``_``, and a name of dots alone cannot climb out."""
    name = re.sub(r"[^A-Za-z0-9@._+-]", "_", user_name)
    return "unknown" if not name.strip(".") else name


@dataclasses.dataclass(frozen=True)
class Configured:
    """What configure made of -c and the tracking options, carried to submit (prepared.backend_config)."""

    cluster: Cluster
    tracking: TrackingTarget | None  # the workspace's MLflow (config.remote_tracking), or not tracked
    note: str = ""  # a tracking setting left aside, said when the run is submitted


def tag_submitted(tracked: Tracked, host: str, remote_id: str, url: str | None, log: Callable[[str], None]) -> None:
    """The tags `mlflow run -b databricks` sets once the run is submitted (a failure is a line, not
    a lost run: the run is already going)."""
    from ...errors import DockrunError
    from ...tracking.databricks import workspace_credentials
    from ...tracking.rest import MlflowRest

    tags = {"mlflow.databricks.runURL": url or "", "mlflow.databricks.shellJobRunID": remote_id,
            "mlflow.databricks.webappURL": host}
    try:
        creds = workspace_credentials(tracked.uri or "databricks", os.environ)
        MlflowRest(creds.host, os.environ, token=creds.token).set_tags(tracked.run_id or "", tags)
    except DockrunError as e:
        log(f"could not tag MLflow run {tracked.run_id}: {e}")


def check_tracking_host(target: TrackingTarget, host: str) -> None:
    """The tracking URI must name the workspace the run goes to: the task logs with the runtime's own
    credentials, and no token is handed to a workspace it was not issued for."""
    from ...tracking.databricks import workspace_credentials

    tracking_host = workspace_credentials(target.uri, os.environ).host
    if tracking_host.rstrip("/") != host.rstrip("/"):
        raise ConfigError(f"--tracking-uri {target.uri} is workspace {tracking_host}, but the run goes to {host}: "
                          "a run on Databricks is tracked in the workspace it runs in")


def start_tracking(prepared: PreparedRun, target: TrackingTarget | None, run_id: str) -> Tracked:
    """The run's MLflow run in the workspace (or --run-id resumed), with a local run's tags and params
    (backend "databricks", an image's tags only for a docker_env); the task is told where and into
    which run, and no credential: the runtime has its own, and task parameters show on the run's page."""
    image = prepared.env.base_image if prepared.env.kind == DOCKER.name else ""
    run = ProjectRun(run_id, prepared.source, prepared.entry_point, prepared.request.parameters,
                     prepared.env.mlflow_env, "databricks", image)
    return start_project_run(target, run, os.environ, credentials=False)
