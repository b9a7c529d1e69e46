"""A strict local emulator of the Databricks REST API parts dockrun uses (DBFS API 2.0, Jobs API
2.1 one-time runs), for tests: Databricks itself cannot be reached from here.

Strict means: bearer auth on every call, the documented method per endpoint, JSON object bodies,
required fields present and typed, unknown fields refused (400 INVALID_PARAMETER_VALUE), DBFS's
1 MB limit per put/add-block, and only documented states. It also *executes* a submitted
``spark_python_task`` here (``python <file> <parameters>``), with ``DOCKRUN_DBFS_FUSE`` pointing at
the emulated DBFS root: the stand-in for the /dbfs mount a cluster has. Libraries are recorded,
not installed (the test machine has what the tests need).
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

MAX_BLOCK = 1 << 20
NEW_CLUSTER_FIELDS = {
    "spark_version", "node_type_id", "driver_node_type_id", "num_workers", "autoscale", "instance_pool_id",
    "driver_instance_pool_id", "spark_conf", "spark_env_vars", "custom_tags", "docker_image", "aws_attributes",
    "azure_attributes", "gcp_attributes", "cluster_log_conf", "init_scripts", "enable_elastic_disk",
    "data_security_mode", "runtime_engine", "policy_id", "ssh_public_keys", "single_user_name", "cluster_name",
    "apply_policy_default_values", "enable_local_disk_encryption", "workload_type", "kind", "is_single_node",
}
LIBRARY_KINDS = {"pypi", "whl", "jar", "maven", "cran", "egg", "requirements"}
TASK_FIELDS = {"task_key", "new_cluster", "existing_cluster_id", "spark_python_task", "libraries",
               "timeout_seconds", "description", "depends_on", "max_retries", "email_notifications"}
SUBMIT_FIELDS = {"run_name", "tasks", "timeout_seconds", "idempotency_token", "access_control_list",
                 "email_notifications", "webhook_notifications", "notification_settings", "git_source",
                 "environments", "health", "queue", "run_as", "budget_policy_id"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bad(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def _fields(body: dict[str, Any], allowed: set[str], required: set[str], where: str) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise bad(f"{where}: unknown field(s) {sorted(unknown)}")
    missing = required - set(body)
    if missing:
        raise bad(f"{where}: missing required field(s) {sorted(missing)}")


class Run:
    def __init__(self, run_id: int, task_run_id: int, body: dict[str, Any]):
        self.run_id, self.task_run_id, self.body = run_id, task_run_id, body
        self.life, self.result, self.message = "PENDING", None, ""
        self.logs, self.start = "", int(time.time() * 1000)
        self.end: int | None = None
        self.proc: subprocess.Popen | None = None
        self.cancelled = False

    def state(self) -> dict[str, Any]:
        state = {"life_cycle_state": self.life, "state_message": self.message}
        if self.result:
            state["result_state"] = self.result
        return state


class DatabricksEmulator:
    def __init__(self, pending_s: float = 0.2):
        self.token = "dapi" + secrets.token_hex(16)
        self.dbfs_root = Path(tempfile.mkdtemp(prefix="dbfs-"))
        self.pending_s = pending_s
        self.submitted: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, int]] = []
        self.runs: dict[int, Run] = {}
        self.handles: dict[int, tuple[str, bytearray]] = {}
        self.tokens: dict[str, int] = {}
        self.lock = threading.Lock()
        self._next = 1000
        self.server: ThreadingHTTPServer | None = None

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> DatabricksEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                emulator._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                emulator._handle(self, "POST")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        for run in self.runs.values():
            if run.proc and run.proc.poll() is None:
                run.proc.kill()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def dbfs_file(self, path: str) -> bytes | None:
        local = self._local(path)
        return local.read_bytes() if local.is_file() else None

    # ---- HTTP -------------------------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(req.path)
        status, payload = 200, {}
        try:
            if req.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, "UNAUTHENTICATED", "Invalid access token.")
            route = ROUTES.get(parsed.path)
            if route is None:
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {parsed.path}'")
            want, fn = route
            if method != want:
                raise ApiError(405, "INVALID_PARAMETER_VALUE", f"{parsed.path} takes {want}")
            if method == "POST":
                length = int(req.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(req.rfile.read(length) or b"null")
                except ValueError:
                    raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request") from None
                if not isinstance(body, dict):
                    raise ApiError(400, "MALFORMED_REQUEST", "the request body must be a JSON object")
            else:
                body = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
            payload = fn(self, body)
        except ApiError as e:
            status, payload = e.status, {"error_code": e.code, "message": e.message}
        self.requests.append((method, req.path, status))
        data = json.dumps(payload).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    # ---- DBFS -------------------------------------------------------------------------------
    def _local(self, path: str) -> Path:
        if path.startswith("dbfs:"):
            path = path[len("dbfs:"):]
        if not path.startswith("/") or ".." in Path(path).parts:
            raise bad(f"Path must be absolute: {path}")
        return self.dbfs_root / path.lstrip("/")

    def _path(self, body: dict[str, Any]) -> Path:
        path = body.get("path")
        if not isinstance(path, str) or not path:
            raise bad("path is required")
        return self._local(path)

    def dbfs_put(self, body: dict[str, Any]) -> dict[str, Any]:
        _fields(body, {"path", "contents", "overwrite"}, {"path", "contents"}, "dbfs/put")
        target = self._path(body)
        data = _b64(body["contents"])
        if len(data) > MAX_BLOCK:
            raise ApiError(400, "MAX_BLOCK_SIZE_EXCEEDED", "contents exceed 1 MB; use create/add-block/close")
        if target.exists() and not body.get("overwrite"):
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"A file or directory already exists at {body['path']}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return {}

    def dbfs_create(self, body: dict[str, Any]) -> dict[str, Any]:
        _fields(body, {"path", "overwrite"}, {"path"}, "dbfs/create")
        target = self._path(body)
        if target.exists() and not body.get("overwrite"):
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"A file or directory already exists at {body['path']}")
        with self.lock:
            self._next += 1
            self.handles[self._next] = (body["path"], bytearray())
            return {"handle": self._next}

    def dbfs_add_block(self, body: dict[str, Any]) -> dict[str, Any]:
        _fields(body, {"handle", "data"}, {"handle", "data"}, "dbfs/add-block")
        if body["handle"] not in self.handles:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", "unknown handle")
        data = _b64(body["data"])
        if len(data) > MAX_BLOCK:
            raise ApiError(400, "MAX_BLOCK_SIZE_EXCEEDED", "a block may hold 1 MB at most")
        self.handles[body["handle"]][1].extend(data)
        return {}

    def dbfs_close(self, body: dict[str, Any]) -> dict[str, Any]:
        _fields(body, {"handle"}, {"handle"}, "dbfs/close")
        if body["handle"] not in self.handles:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", "unknown handle")
        path, data = self.handles.pop(body["handle"])
        target = self._local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bytes(data))
        return {}

    def dbfs_get_status(self, query: dict[str, Any]) -> dict[str, Any]:
        _fields(query, {"path"}, {"path"}, "dbfs/get-status")
        target = self._path(query)
        if not target.exists():
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {query['path']}.")
        return {"path": query["path"], "is_dir": target.is_dir(), "file_size": 0 if target.is_dir()
                else target.stat().st_size, "modification_time": int(target.stat().st_mtime * 1000)}

    # ---- Jobs -------------------------------------------------------------------------------
    def runs_submit(self, body: dict[str, Any]) -> dict[str, Any]:
        _fields(body, SUBMIT_FIELDS, {"tasks"}, "runs/submit")
        token = body.get("idempotency_token")
        if token is not None and token in self.tokens:
            return {"run_id": self.tokens[token]}
        tasks = body["tasks"]
        if not isinstance(tasks, list) or len(tasks) != 1:
            raise bad("tasks: this emulator takes exactly one task")
        task = tasks[0]
        if not isinstance(task, dict):
            raise bad("tasks[0]: expected an object")
        _fields(task, TASK_FIELDS, {"task_key"}, "tasks[0]")
        if not re.fullmatch(r"[\w\-.]{1,100}", str(task["task_key"])):
            raise bad("tasks[0].task_key: only letters, digits, '_', '-' and '.'")
        if ("new_cluster" in task) == ("existing_cluster_id" in task):
            raise bad("tasks[0]: exactly one of new_cluster and existing_cluster_id is required")
        if "new_cluster" in task:
            _check_cluster(task["new_cluster"])
        for i, lib in enumerate(task.get("libraries") or []):
            if not isinstance(lib, dict) or len(lib) != 1 or not set(lib) <= LIBRARY_KINDS:
                raise bad(f"tasks[0].libraries[{i}]: exactly one of {sorted(LIBRARY_KINDS)}")
            if "pypi" in lib and not isinstance(lib["pypi"].get("package"), str):
                raise bad(f"tasks[0].libraries[{i}].pypi.package is required")
        spt = task.get("spark_python_task")
        if not isinstance(spt, dict):
            raise bad("tasks[0]: only spark_python_task is supported by this emulator")
        _fields(spt, {"python_file", "parameters", "source"}, {"python_file"}, "spark_python_task")
        params = spt.get("parameters") or []
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise bad("spark_python_task.parameters: expected a list of strings")
        if not str(spt["python_file"]).startswith("dbfs:/") or not self._local(spt["python_file"]).is_file():
            raise bad(f"spark_python_task.python_file {spt['python_file']!r} does not exist")
        with self.lock:
            self._next += 2
            run = Run(self._next - 1, self._next, body)
            self.runs[run.run_id] = run
            if token is not None:
                self.tokens[token] = run.run_id
        self.submitted.append(body)
        threading.Thread(target=self._execute, args=(run,), daemon=True).start()
        return {"run_id": run.run_id}

    def _execute(self, run: Run) -> None:
        time.sleep(self.pending_s)
        if run.cancelled:
            run.life, run.result, run.end = "TERMINATED", "CANCELED", int(time.time() * 1000)
            return
        task = run.body["tasks"][0]
        spt = task["spark_python_task"]
        env = {**os.environ, "DOCKRUN_DBFS_FUSE": str(self.dbfs_root),
               **(task.get("new_cluster", {}).get("spark_env_vars") or {})}
        run.proc = subprocess.Popen([sys.executable, str(self._local(spt["python_file"])), *spt.get("parameters", [])],
                                    cwd=tempfile.mkdtemp(prefix="dbx-task-"), env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        run.life = "RUNNING"
        out, _ = run.proc.communicate()
        run.logs = out.decode(errors="replace")
        run.life, run.end = "TERMINATING", int(time.time() * 1000)
        if run.cancelled:
            run.result, run.message = "CANCELED", "Run cancelled."
        elif run.proc.returncode == 0:
            run.result = "SUCCESS"
        else:
            run.result, run.message = "FAILED", f"Task dockrun failed with message: exit code {run.proc.returncode}."
        run.life = "TERMINATED"

    def _run(self, query: dict[str, Any]) -> Run:
        try:
            run = self.runs.get(int(query.get("run_id", "")))
        except (TypeError, ValueError):
            raise bad("run_id must be an integer") from None
        if run is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {query.get('run_id')} does not exist.")
        return run

    def runs_get(self, query: dict[str, Any]) -> dict[str, Any]:
        _fields(query, {"run_id", "include_history", "include_resolved_values", "page_token"}, {"run_id"}, "runs/get")
        run = self._run(query)
        info = {"run_id": run.run_id, "run_name": run.body.get("run_name", "Untitled"), "state": run.state(),
                "start_time": run.start, "run_page_url": f"{self.url}/#job/runs/{run.run_id}",
                "tasks": [{"run_id": run.task_run_id, "task_key": run.body["tasks"][0]["task_key"],
                           "state": run.state()}]}
        if run.end:
            info["end_time"] = run.end
        return info

    def runs_cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        _fields(body, {"run_id"}, {"run_id"}, "runs/cancel")
        if not isinstance(body["run_id"], int):
            raise bad("run_id must be an integer")
        run = self._run(body)
        if run.life not in ("TERMINATED", "TERMINATING"):
            run.cancelled = True
            if run.proc and run.proc.poll() is None:
                os.killpg(run.proc.pid, signal.SIGTERM)
        return {}

    def runs_get_output(self, query: dict[str, Any]) -> dict[str, Any]:
        _fields(query, {"run_id"}, {"run_id"}, "runs/get-output")
        task_id = int(query["run_id"])
        run = next((r for r in self.runs.values() if r.task_run_id == task_id), None)
        if run is None:
            if task_id in self.runs:  # as Databricks: a multi-task run's own ID has no output
                raise bad("Retrieving the output of runs with multiple tasks is not supported; use a task run ID.")
            raise bad(f"Run {task_id} does not exist.")
        out: dict[str, Any] = {"metadata": {"run_id": task_id, "state": run.state()},
                               "logs": run.logs[-5_000_000:], "logs_truncated": len(run.logs) > 5_000_000}
        if run.result == "FAILED":
            out["error"] = run.message
        return out


def _check_cluster(cluster: Any) -> None:
    if not isinstance(cluster, dict):
        raise bad("new_cluster: expected an object")
    _fields(cluster, NEW_CLUSTER_FIELDS, {"spark_version"}, "new_cluster")
    if not cluster.keys() & {"node_type_id", "instance_pool_id"}:
        raise bad("new_cluster: node_type_id or instance_pool_id is required")
    if not cluster.keys() & {"num_workers", "autoscale"}:
        raise bad("new_cluster: num_workers or autoscale is required")
    if "docker_image" in cluster and not isinstance(cluster["docker_image"].get("url"), str):
        raise bad("new_cluster.docker_image.url is required")


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise bad("expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise bad("not valid base64") from None


ROUTES = {
    "/api/2.0/dbfs/put": ("POST", DatabricksEmulator.dbfs_put),
    "/api/2.0/dbfs/create": ("POST", DatabricksEmulator.dbfs_create),
    "/api/2.0/dbfs/add-block": ("POST", DatabricksEmulator.dbfs_add_block),
    "/api/2.0/dbfs/close": ("POST", DatabricksEmulator.dbfs_close),
    "/api/2.0/dbfs/get-status": ("GET", DatabricksEmulator.dbfs_get_status),
    "/api/2.1/jobs/runs/submit": ("POST", DatabricksEmulator.runs_submit),
    "/api/2.1/jobs/runs/get": ("GET", DatabricksEmulator.runs_get),
    "/api/2.1/jobs/runs/cancel": ("POST", DatabricksEmulator.runs_cancel),
    "/api/2.1/jobs/runs/get-output": ("GET", DatabricksEmulator.runs_get_output),
}


@pytest.fixture
def databricks() -> Iterator[DatabricksEmulator]:
    emulator = DatabricksEmulator().start()
    yield emulator
    emulator.stop()
