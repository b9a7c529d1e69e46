"""Remote mode: forward a run to Databricks (Jobs API 2.1 runs/submit, DBFS API 2.0).

The project tree (the same files an image would get) is uploaded once per source key to
``dbfs:/dockrun/projects/``; a small standard-library launcher (databricks_launcher.py) is uploaded
once per version; the run is a one-off ``spark_python_task`` on the cluster from ``-c``, with the
environment's PyPI requirements as cluster libraries (``docker_env``: the cluster's docker_image).
The run is recorded like a local one and followed by polling ``runs/get``.
"""
from __future__ import annotations

import base64
import configparser
import dataclasses
import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from .config import Settings
from .environment import EnvSpec, conda_to_pypi, env_spec
from .errors import ConfigError, DockrunError, ParameterError, RemoteError
from .handle import RunHandle
from .outcome import record_end
from .params import RenderedCommand, is_remote, render_command
from .records import ACTIVE, RunRecord, RunStore
from .source import Source, resolve_source
from .spec import EntryPoint, ProjectSpec, load_project
from .treehash import walk

BLOCK = 1 << 20  # DBFS put and add-block take at most 1 MB per call
DBFS_ROOT = "dbfs:/dockrun"
POLL_S = float(os.environ.get("DOCKRUN_DATABRICKS_POLL_S", "5"))
LAUNCHER = Path(__file__).with_name("databricks_launcher.py")


# ---- configuration (pure) --------------------------------------------------------------------

@dataclass(frozen=True)
class Workspace:
    host: str
    token: str


def workspace(environ: Mapping[str, str], config_file: Path | None = None) -> Workspace:
    """DATABRICKS_HOST / DATABRICKS_TOKEN, else the DEFAULT profile of ~/.databrickscfg."""
    host, token = environ.get("DATABRICKS_HOST"), environ.get("DATABRICKS_TOKEN")
    cfg = config_file or Path(environ.get("DATABRICKS_CONFIG_FILE", "~/.databrickscfg")).expanduser()
    if (not host or not token) and cfg.is_file():
        parser = configparser.ConfigParser()
        parser.read(cfg)
        profile = environ.get("DATABRICKS_CONFIG_PROFILE", "DEFAULT")
        section = parser[profile] if profile in parser else parser.defaults()
        host, token = host or section.get("host"), token or section.get("token")
    if not host or not token:
        raise ConfigError("--backend databricks: set DATABRICKS_HOST and DATABRICKS_TOKEN (or ~/.databrickscfg)")
    if not host.startswith(("https://", "http://")):
        host = "https://" + host
    return Workspace(host.rstrip("/"), token)


@dataclass(frozen=True)
class Cluster:
    """Where the run goes: a new cluster spec, or an existing cluster, plus extra libraries."""

    new_cluster: Mapping[str, Any] | None
    existing_cluster_id: str | None
    libraries: tuple[Mapping[str, Any], ...] = ()
    timeout_seconds: int | None = None


def cluster_from_config(config: Any) -> Cluster:
    """``-c``: a new_cluster spec itself (as `mlflow run` takes it), or {"new_cluster": {...}} /
    {"existing_cluster_id": "..."} with optional "libraries" and "timeout_seconds"."""
    if isinstance(config, str):
        try:
            config = json.loads(Path(config).read_text() if Path(config).is_file() else config)
        except (ValueError, OSError) as e:
            raise ConfigError(f"--backend-config: not valid JSON ({e})") from None
    if not isinstance(config, dict) or not config:
        raise ConfigError("--backend-config: expected a JSON object with a cluster spec (spark_version, "
                          "node_type_id, num_workers) or {\"existing_cluster_id\": ...}")
    known = {"new_cluster", "existing_cluster_id", "libraries", "timeout_seconds"}
    if not (config.keys() & {"new_cluster", "existing_cluster_id"}):
        config = {"new_cluster": config}
    unknown = set(config) - known
    if unknown:
        raise ConfigError(f"--backend-config: unknown field(s) {', '.join(sorted(unknown))}")
    if ("new_cluster" in config) == ("existing_cluster_id" in config):
        raise ConfigError("--backend-config: give new_cluster or existing_cluster_id, not both")
    new = config.get("new_cluster")
    if new is not None:
        if not isinstance(new, dict) or "spark_version" not in new:
            raise ConfigError("--backend-config: new_cluster.spark_version is required")
        if not (new.keys() & {"node_type_id", "instance_pool_id"}):
            raise ConfigError("--backend-config: new_cluster needs node_type_id or instance_pool_id")
        if not (new.keys() & {"num_workers", "autoscale"}):
            raise ConfigError("--backend-config: new_cluster needs num_workers or autoscale")
    libraries = config.get("libraries") or []
    if not isinstance(libraries, list) or not all(isinstance(x, dict) for x in libraries):
        raise ConfigError("--backend-config: libraries: expected a list of library objects")
    return Cluster(new, config.get("existing_cluster_id"), tuple(libraries), config.get("timeout_seconds"))


def remote_command(ep: EntryPoint, given: Mapping[str, str]) -> RenderedCommand:
    """Render for the cluster: the command runs in the unpacked project, so relative defaults stay
    relative; ``dbfs:/`` paths become the cluster's /dbfs mount; host paths mean nothing there."""
    as_given: dict[str, str] = dict(given)
    for p in ep.parameters:
        value = given.get(p.name, p.default)
        if p.type in ("path", "uri") and value is not None and p.name in given:
            if value.startswith("dbfs:/"):
                as_given[p.name] = "/dbfs/" + value[len("dbfs:/"):].lstrip("/")
            elif not is_remote(value):
                raise ParameterError(f"parameter {p.name!r}: the local path {value!r} does not exist on "
                                     "Databricks; give a dbfs:/ or s3:// path")
    typed = dataclasses.replace(ep, parameters=tuple(
        dataclasses.replace(p, type="string") if p.type in ("path", "uri") else p for p in ep.parameters))
    return render_command(typed, as_given, project_dir=".")


def cluster_libraries(env: EnvSpec, project: ProjectSpec) -> list[dict[str, Any]]:
    if env.kind == "uv":
        return [{"pypi": {"package": req}} for req in env.requirements]
    if env.kind == "micromamba":  # the cluster has no conda: its PyPI-installable part, translated
        _, reqs = conda_to_pypi(project.root, project.env_file or "conda.yaml")
        return [{"pypi": {"package": req}} for req in reqs]
    return []


def submit_body(run_id: str, name: str, cluster: Cluster, env: EnvSpec, libraries: list[dict[str, Any]],
                launcher: str, archive: str, command: str, outputs: str) -> dict[str, Any]:
    task: dict[str, Any] = {
        "task_key": "dockrun",
        "spark_python_task": {"python_file": launcher, "parameters": [archive, command, run_id, outputs]},
    }
    if cluster.new_cluster is not None:
        new = dict(cluster.new_cluster)
        if env.kind == "docker":
            new.setdefault("docker_image", {"url": env.base_image})
        task["new_cluster"] = new
    else:
        task["existing_cluster_id"] = cluster.existing_cluster_id
    libs = libraries + list(cluster.libraries)
    if libs:
        task["libraries"] = libs
    if cluster.timeout_seconds:
        task["timeout_seconds"] = cluster.timeout_seconds
    # The dockrun run ID as idempotency token: a retried submit never starts a second run.
    return {"run_name": f"dockrun {name} {run_id}", "tasks": [task], "idempotency_token": run_id}


# ---- the REST adapter ------------------------------------------------------------------------

class _Retry(Exception):
    pass


class DatabricksClient:
    def __init__(self, ws: Workspace):
        self.ws = ws

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
             query: Mapping[str, Any] | None = None) -> dict[str, Any]:
        from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

        # Only transport errors, 429 and 5xx are retried: a 4xx answer is final.
        @retry(retry=retry_if_exception_type(_Retry), stop=stop_after_attempt(4),
               wait=wait_exponential(multiplier=0.5, max=8), reraise=True)
        def once() -> dict[str, Any]:
            return self._once(method, path, body, query)

        try:
            return once()
        except _Retry as e:
            raise RemoteError(f"Databricks {self.ws.host}: {e}") from None

    def _once(self, method: str, path: str, body: Mapping[str, Any] | None,
              query: Mapping[str, Any] | None) -> dict[str, Any]:
        import urllib.error
        import urllib.request

        url = f"{self.ws.host}/api/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.ws.token}", "Content-Type": "application/json",
            "User-Agent": "dockrun"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                detail = json.loads(text)
            except ValueError:
                detail = {"message": text.strip()[:200]}
            if e.code == 429 or e.code >= 500:
                raise _Retry(f"{e.code} {detail.get('error_code', '')}".strip()) from None
            raise DatabricksError(e.code, detail.get("error_code", ""), detail.get("message", "")) from None
        except (urllib.error.URLError, OSError) as e:
            raise _Retry(f"cannot reach the workspace ({getattr(e, 'reason', e)})") from None

    # DBFS: its endpoints take absolute paths (/x); dbfs:/x is the form tasks and users write.
    def exists(self, path: str) -> bool:
        try:
            self.call("GET", "2.0/dbfs/get-status", query={"path": _dbfs_path(path)})
            return True
        except DatabricksError as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST" or e.status == 404:
                return False
            raise

    def upload(self, path: str, data: bytes) -> None:
        """Put a file (streamed in 1 MB blocks when larger than one call may carry)."""
        path = _dbfs_path(path)
        if len(data) <= BLOCK:
            self.call("POST", "2.0/dbfs/put", {"path": path, "contents": base64.b64encode(data).decode(),
                                               "overwrite": True})
            return
        handle = self.call("POST", "2.0/dbfs/create", {"path": path, "overwrite": True})["handle"]
        for i in range(0, len(data), BLOCK):
            self.call("POST", "2.0/dbfs/add-block", {"handle": handle,
                                                     "data": base64.b64encode(data[i:i + BLOCK]).decode()})
        self.call("POST", "2.0/dbfs/close", {"handle": handle})

    # Jobs
    def submit(self, body: Mapping[str, Any]) -> str:
        return str(self.call("POST", "2.1/jobs/runs/submit", body)["run_id"])

    def get(self, run_id: str) -> dict[str, Any]:
        return self.call("GET", "2.1/jobs/runs/get", query={"run_id": run_id})

    def cancel(self, run_id: str) -> None:
        self.call("POST", "2.1/jobs/runs/cancel", {"run_id": int(run_id)})

    def output(self, task_run_id: str) -> dict[str, Any]:
        return self.call("GET", "2.1/jobs/runs/get-output", query={"run_id": task_run_id})


def _dbfs_path(path: str) -> str:
    return "/" + path[len("dbfs:"):].lstrip("/") if path.startswith("dbfs:") else path


class DatabricksError(RemoteError):
    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(f"Databricks answered {status} {error_code}: {message}".strip())
        self.status, self.error_code = status, error_code
        # A refused token or request is the user's to fix (exit 2, like a Git auth failure).
        self.exit_code = 2 if 400 <= status < 500 else 1


# ---- submitting and following ----------------------------------------------------------------

def project_archive(root: Path) -> bytes:
    """A deterministic tar.gz of the tree an image would get (.dockerignore honoured, no .git)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for entry in walk(root):
            info = tar.gettarinfo(str(entry.path), arcname=entry.relpath)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isfile():
                with open(entry.path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0)


def submit_run(uri: str, settings: Settings, entry_point: str, version: str | None,
               parameters: Mapping[str, str], env_manager: str, backend_config: Any,
               run_id: str, log: Callable[[str], None]) -> DatabricksRun:
    """Validate everything locally, upload what DBFS lacks, submit, record; return the run."""
    cluster = cluster_from_config(backend_config)
    ws = workspace(os.environ)
    source: Source = resolve_source(uri, version, settings.home)
    project = load_project(source.root)
    ep = project.entry_point(entry_point)
    rendered = remote_command(ep, parameters)
    env = env_spec(project, settings, env_manager)
    libraries = cluster_libraries(env, project)
    client = DatabricksClient(ws)
    archive = f"{DBFS_ROOT}/projects/{source.key[:32]}.tar.gz"
    if not client.exists(archive):  # content-addressed: the same code is uploaded once
        log(f"uploading the project to {archive}")
        client.upload(archive, project_archive(source.root))
    launcher_text = LAUNCHER.read_bytes()
    launcher = f"{DBFS_ROOT}/launcher/{hashlib.sha256(launcher_text).hexdigest()[:16]}.py"
    if not client.exists(launcher):
        client.upload(launcher, launcher_text)
    outputs = f"{DBFS_ROOT}/runs/{run_id}/outputs"
    store = RunStore(settings.home)
    store.insert(RunRecord(
        run_id=run_id, status="SCHEDULED", created=time.time(), uri=source.uri, commit_sha=source.commit,
        dirty=source.dirty, source_key=source.key, subdirectory=source.subdirectory, project=project.name,
        entry_point=ep.name, parameters=dict(rendered.values), command=rendered.command, image="",
        env_key=env.key(), outputs=outputs, backend="databricks",
    ))
    body = submit_body(run_id, project.name, cluster, env, libraries, launcher, archive, rendered.command, outputs)
    try:
        remote_id = client.submit(body)
    except BaseException as e:
        record_end(store, run_id, "FAILED", None, f"Databricks refused the run: {e}".splitlines()[0])
        raise
    url = client.get(remote_id).get("run_page_url")
    store.update(run_id, remote_run_id=remote_id, remote_url=url)
    log(f"submitted Databricks run {remote_id}: {url}")
    return DatabricksRun(store, run_id, client)


_STATES = {"PENDING": "SCHEDULED", "QUEUED": "SCHEDULED", "BLOCKED": "SCHEDULED", "WAITING_FOR_RETRY": "SCHEDULED",
           "RUNNING": "RUNNING", "TERMINATING": "RUNNING"}
_RESULTS = {"SUCCESS": "FINISHED", "CANCELED": "KILLED"}


class DatabricksRun(RunHandle):
    """A run forwarded to Databricks, with the same interface as a local run."""

    poll_s = POLL_S

    def __init__(self, store: RunStore, run_id: str, client: DatabricksClient | None = None):
        super().__init__(store, run_id)
        self._client = client

    @property
    def client(self) -> DatabricksClient:
        if self._client is None:
            self._client = DatabricksClient(workspace(os.environ))
        return self._client

    def record(self) -> RunRecord:
        rec = self._stored()
        if rec.over or not rec.remote_run_id:
            return rec
        state = self.client.get(rec.remote_run_id)
        life = state.get("state", {}).get("life_cycle_state", "PENDING")
        if life in _STATES:
            status = _STATES[life]
            if status == "RUNNING":
                self._store.transition(self.run_id, "RUNNING", ("SCHEDULED",), started=time.time())
            return self._store.get(self.run_id) or rec
        result = state.get("state", {}).get("result_state", "FAILED")
        self._save_logs(state)
        status = _RESULTS.get(result, "FAILED")
        reason = None if status == "FINISHED" else (state.get("state", {}).get("state_message") or result)
        record_end(self._store, self.run_id, status, 0 if status == "FINISHED" else None, reason)
        return self._store.get(self.run_id) or rec

    def _save_logs(self, state: Mapping[str, Any]) -> None:
        tasks = state.get("tasks") or []
        if not tasks:
            return
        try:
            out = self.client.output(str(tasks[0]["run_id"]))
        except DockrunError:
            return
        run_dir = self._store.run_dir(self.run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "stdout.log").write_text(out.get("logs", ""))
        (run_dir / "stderr.log").write_text((out.get("error") or "") + ("\n" if out.get("error") else ""))

    def cancel(self) -> None:
        rec = self.record()
        if rec.over:
            return
        self._store.transition(self.run_id, "KILLED", ACTIVE, reason="cancelled")
        self.client.cancel(rec.remote_run_id or "0")
        self.wait()

    def follow(self, out: IO[bytes], err: IO[bytes], follow: bool = True) -> RunRecord:
        """Databricks gives a task's output when it has ended: wait, then print it."""
        rec = self.record()
        while follow and not rec.over:
            time.sleep(POLL_S)
            rec = self.record()
        run_dir = self._store.run_dir(self.run_id)
        for name, sink in (("stdout.log", out), ("stderr.log", err)):
            if (run_dir / name).exists():
                sink.write((run_dir / name).read_bytes())
                sink.flush()
        return rec
