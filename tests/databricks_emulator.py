"""A strict local emulator of the documented Databricks REST API parts dockrun uses, for tests
(Databricks itself cannot be reached from here): DBFS API 2.0, Jobs API 2.1 and 2.2 one-time runs
(2.2's runs/get pages its arrays: ``page_size``), the Files API, and the workspace's MLflow REST API
(experiments get-by-name/get/create, runs create/get/update/set-tag/log-batch/log-metric/log-parameter,
what MLflow's own client calls inside a task as well as dockrun's on the host: experiment names are
absolute workspace paths, there is no experiment 0, params cannot change).

Strict means the emulator refuses what the documentation does not allow, and, where the
documentation is silent, picks the stricter reading (each such choice is marked "strict:"):

* every request carries ``Authorization: Bearer <token>``; POST bodies are JSON objects;
  unknown fields, missing required fields and wrong JSON types are 400 INVALID_PARAMETER_VALUE;
* only the documented method of each endpoint is routed; anything else is 404 ENDPOINT_NOT_FOUND;
* DBFS limits: 1 MB per put/add-block, 1 MB per read; streams appear only when closed;
* runs/submit validates tasks, clusters, libraries and serverless ``environments`` (their spec's
  fields taken from the SDK's dataclass), and refuses task kinds it cannot execute (marked "not
  supported by this emulator": a limitation of the emulator, not of Databricks);
* ``{{...}}`` dynamic value references in task parameters are replaced when the task starts, as
  Databricks does (an unknown name in a known namespace is refused at submit);
* Unity Catalog volumes through the Files API (``/api/2.0/fs/files{path}``, ``directories``);
  ``dbfs_root_disabled=True`` is a workspace whose DBFS root is off (every DBFS call 403
  PERMISSION_DENIED); clusters in standard (shared) access mode (a new_cluster's
  ``data_security_mode``, or an existing one registered in ``clusters``) and serverless tasks
  refuse a python_file in the DBFS root;
* workspace files (``/api/2.0/workspace/...``: mkdirs, import as AUTO, export, get-status), each
  principal's ``/Users/<name>`` home private to it; a python_file there runs on any compute;
  ``before_task`` is called just before a task's file is read (a test's stand-in for another user
  acting between submit and start);
* OAuth M2M as the SDKs call it: host metadata, OIDC discovery and a client-credentials token
  endpoint (``client_id`` / ``client_secret``); ``GET /api/2.0/preview/scim/v2/Me`` says whose
  token it is.

A submitted ``spark_python_task`` really runs, in a container on the Docker engine, as a cluster
runs it: an image with the runtime's layout (``RUNTIME``: built once per test session from the local
base image; a Python virtualenv at ``/databricks/python3``, bash, ``/databricks/driver`` as the
working folder), or the new_cluster's ``docker_image`` (Databricks Container Services), with the
emulator's DBFS root mounted at ``/dbfs`` (not on standard access modes, serverless compute or a
disabled DBFS root) and its volumes at ``/Volumes``, the cluster's ``spark_env_vars``, and nothing
of the test runner's environment. So the launcher under test is the one that ships, reading paths
where clusters have them. The runtime's own credentials (what MLflow and the SDK inside a task use)
are ``DATABRICKS_HOST``, the emulator as the container reaches it (the docker bridge's gateway, the
only host address it reaches), and ``DATABRICKS_TOKEN``, a token that acts as the run's submitter
while the task runs. Images come from the local engine or a registry on 127.0.0.1 only: any other
image the engine lacks fails the run as a cluster that cannot pull it (life cycle INTERNAL_ERROR,
result FAILED, ``termination_details.code`` CLUSTER_ERROR, DOCKER_IMAGE_PULL_FAILURE in the
state_message); an image without ``/databricks/python3/bin/python`` or bash fails it the same way
(strict: the termination reason is DOCKER_CONTAINER_CREATION_EXCEPTION; where exactly a workspace
stops such an image is not documented). Every container is removed when its task ends, and
``stop()`` removes any left.

The task's PyPI libraries (a cluster's ``libraries[].pypi``, a serverless ``environments[].spec.
dependencies``) are installed by pip into a copy of the image's ``/databricks/python3``, from wheels
the test runner's pip fetched (the stand-in for the cluster's access to PyPI): one copy per image and
distinct set, made once per test session and shared by every emulator (``ENVIRONMENTS``). A set pip
cannot install fails the run as Databricks does: life cycle INTERNAL_ERROR, result FAILED, the
library and pip's error in ``state_message``, ``status.termination_details.code``
LIBRARY_INSTALLATION_ERROR. JVM and R libraries (jar, maven, cran) are recorded only: a Python task
never sees them.

The file runs as the runtime runs it: in a Python process whose ``sys.stdout`` and ``sys.stderr``
the driver captures (that capture is runs/get-output's ``logs``: the last 5 MB, ``logs_truncated``
beyond); what a child process writes to the inherited descriptors goes to the driver's own log, not
to ``logs``. An uncaught exception's traceback is get-output's ``error_trace`` and its last line
``error``.

A wrong token is answered as Databricks answers it: 403 with ``{"error_code": 403, "message":
"Invalid access token."}`` (a missing one: 401). Faults a real workspace shows can be injected per
path: ``fail_next`` (429/5xx, optionally with Retry-After; not applied), ``drop_reply`` (applied,
then the connection is closed unanswered), ``html_next`` (a 200 login page), ``rewrite`` (change
successful answers, e.g. to report states a newer Databricks may send).
"""
from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

MB = 1 << 20
BLOCK_LIMIT = MB  # dbfs/put contents and dbfs/add-block data, decoded
READ_LIMIT = MB  # dbfs/read length
READ_DEFAULT = 512 * 1024  # dbfs/read length when not given
HANDLE_IDLE_S = 600.0  # a dbfs/create handle expires after 10 idle minutes
LOGS_LIMIT = 5 * MB  # get-output returns the last 5 MB of a task's stdout/stderr
RUN_NAME_MAX = 4096  # bytes of UTF-8
IDEMPOTENCY_TOKEN_MAX = 64
TASK_KEY_MAX = 100
# The documented pattern is ^[\w\-\_]+$ (word characters and dashes; no dots, no spaces).
TASK_KEY_RE = re.compile(r"^[\w\-]+$")

# ---- errors ------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer: HTTP status plus Databricks' {"error_code", "message"} body."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.body = body  # an answer in another shape than Databricks' REST errors (OAuth's)


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def unsupported(message: str) -> ApiError:
    """Valid for Databricks, but beyond this emulator: said plainly so a test failure explains itself."""
    return invalid(f"{message}: not supported by this emulator")


def missing(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


def exists(message: str) -> ApiError:
    # The DBFS docs name the code, not the status; 400 is what the legacy DBFS service answers.
    return ApiError(400, "RESOURCE_ALREADY_EXISTS", message)


# ---- JSON shape checks (pure) -----------------------------------------------------------------

_KINDS: dict[str, type] = {"string": str, "integer": int, "boolean": bool, "object": dict, "array": list}


def _kind_of(value: Any) -> str:
    for name, kind in _KINDS.items():
        if isinstance(value, kind) and (name == "boolean") == isinstance(value, bool):
            return name
    return "null" if value is None else type(value).__name__


def expect(value: Any, kind: str, where: str) -> Any:
    """The value, if it has the JSON type `kind` (bool is no integer; strict: null is no value)."""
    if _kind_of(value) != kind:
        raise invalid(f"{where}: expected {kind}, got {_kind_of(value)}")
    return value


def fields(obj: Any, where: str, spec: Mapping[str, str], required: Iterable[str] = ()) -> dict[str, Any]:
    """Check an object against {field: kind}: no unknown field, required ones present, types right."""
    expect(obj, "object", where)
    unknown = sorted(set(obj) - set(spec))
    if unknown:
        raise invalid(f"{where}: unknown field(s): {', '.join(unknown)}")
    for name in required:
        if name not in obj:
            raise invalid(f"{where}: missing required field: {name}")
    for name, value in obj.items():
        if spec[name] != "any":
            expect(value, spec[name], f"{where}.{name}")
    return obj


def string_map(value: Mapping[str, Any], where: str) -> None:
    for key, item in value.items():
        expect(item, "string", f"{where}.{key}")


def string_list(value: list[Any], where: str) -> None:
    for i, item in enumerate(value):
        expect(item, "string", f"{where}[{i}]")


def decode_b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}: not valid base64") from None


def query_int(query: Mapping[str, str], name: str, default: int | None = None) -> int:
    if name not in query:
        if default is None:
            raise invalid(f"missing required parameter: {name}")
        return default
    if not re.fullmatch(r"-?\d+", query[name]):
        raise invalid(f"{name}: expected an integer, got {query[name]!r}")
    return int(query[name])


def now_ms() -> int:
    return int(time.time() * 1000)


def dbfs_path(value: Any, where: str, accept_dbfs_scheme: bool) -> str:
    """Validate and normalise a DBFS API path ("/a//b/" -> "/a/b")."""
    expect(value, "string", where)
    if value.startswith("dbfs:"):
        # strict: the DBFS API docs describe and exemplify only absolute paths (/mnt/foo); dbfs:/ URIs
        # belong to clusters and jobs (python_file), so a client must strip the scheme itself.
        if not accept_dbfs_scheme:
            raise invalid(f"{where}: {value!r}: the DBFS API takes an absolute path such as /mnt/foo, "
                          "not a dbfs: URI")
        value = value[len("dbfs:"):]
    if not value.startswith("/") or "\0" in value:
        raise invalid(f"{where}: {value!r} is not an absolute DBFS path")
    parts = [p for p in value.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise invalid(f"{where}: {value!r}: '.' and '..' are not allowed in a DBFS path")
    return "/" + "/".join(parts)


# ---- DBFS API 2.0 -----------------------------------------------------------------------------


@dataclass
class _Stream:
    path: str
    overwrite: bool
    data: bytearray = field(default_factory=bytearray)
    touched: float = field(default_factory=time.monotonic)


class Dbfs:
    """DBFS on a local folder. Paths are absolute DBFS paths ("/mnt/foo"), as the docs ask."""

    def __init__(self, root: Path, staging: Path, accept_dbfs_scheme: bool, handle_idle_s: float):
        self.root, self.staging = root, staging
        self.accept_dbfs_scheme, self.handle_idle_s = accept_dbfs_scheme, handle_idle_s
        # A workspace with the DBFS root (and mounts) disabled, the default for new workspaces: every
        # DBFS API call is refused with Databricks' wording.
        self.root_disabled = False
        self._lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}

    # paths
    def path(self, value: Any, where: str = "path") -> str:
        path = dbfs_path(value, where, self.accept_dbfs_scheme)
        if self.root_disabled:
            raise ApiError(403, "PERMISSION_DENIED", f"Public DBFS root is disabled. Access is denied on path: {path}")
        return path

    def local(self, path: str) -> Path:
        return self.root.joinpath(*path.strip("/").split("/")) if path != "/" else self.root

    def _no_file_above(self, path: str) -> None:
        """A file where a parent folder should be: mkdirs documents RESOURCE_ALREADY_EXISTS for it."""
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            if self.root.joinpath(*parts[:i]).is_file():
                raise exists(f"a file exists at /{'/'.join(parts[:i])}, a parent of {path}")

    def _writable(self, path: str, overwrite: bool) -> None:
        if path == "/":
            raise invalid("path: cannot write to the DBFS root")
        self._no_file_above(path)
        target = self.local(path)
        if target.is_dir():
            raise exists(f"a directory already exists at {path}")
        if target.exists() and not overwrite:
            raise exists(f"a file already exists at {path} (overwrite is false)")

    def _write(self, path: str, data: bytes, overwrite: bool) -> None:
        """Write whole and then rename, so a running task never sees half a file."""
        self._writable(path, overwrite)
        target = self.local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.staging)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)

    def info(self, path: str) -> dict[str, Any]:
        target = self.local(path)
        if not target.exists():
            raise missing(f"no file or directory exists at {path}")
        stat = target.stat()
        return {"path": path, "is_dir": target.is_dir(), "file_size": 0 if target.is_dir() else stat.st_size,
                "modification_time": int(stat.st_mtime * 1000)}

    def file(self, path: str) -> bytes | None:
        target = self.local(path)
        return target.read_bytes() if target.is_file() else None

    # endpoints
    def put(self, body: Any) -> dict[str, Any]:
        fields(body, "put", {"path": "string", "contents": "string", "overwrite": "boolean"}, ["path"])
        if "contents" not in body:
            # The docs allow a multipart form post instead of `contents`; this emulator speaks JSON only.
            raise unsupported("put without contents (multipart upload)")
        path = self.path(body["path"])
        data = decode_b64(body["contents"], "put.contents")
        if len(data) > BLOCK_LIMIT:
            raise ApiError(400, "MAX_BLOCK_SIZE_EXCEEDED", f"put contents is {len(data)} bytes; the limit is "
                           f"{BLOCK_LIMIT} (1 MB): use create, add-block and close")
        with self._lock:
            self._write(path, data, body.get("overwrite", False))
        return {}

    def create(self, body: Any) -> dict[str, Any]:
        fields(body, "create", {"path": "string", "overwrite": "boolean"}, ["path"])
        path = self.path(body["path"])
        with self._lock:
            self._writable(path, body.get("overwrite", False))
            handle = secrets.randbelow(1 << 62) + 1
            self._streams[handle] = _Stream(path, body.get("overwrite", False))
        return {"handle": handle}

    def _stream(self, handle: int) -> _Stream:
        stream = self._streams.get(handle)
        if stream is None or time.monotonic() - stream.touched > self.handle_idle_s:
            self._streams.pop(handle, None)
            raise missing(f"no open stream with handle {handle}")
        stream.touched = time.monotonic()
        return stream

    def add_block(self, body: Any) -> dict[str, Any]:
        fields(body, "add-block", {"handle": "integer", "data": "string"}, ["handle", "data"])
        data = decode_b64(body["data"], "add-block.data")
        with self._lock:
            stream = self._stream(body["handle"])
            if len(data) > BLOCK_LIMIT:
                raise ApiError(400, "MAX_BLOCK_SIZE_EXCEEDED",
                               f"block is {len(data)} bytes; the limit is {BLOCK_LIMIT} (1 MB)")
            stream.data += data
        return {}

    def close(self, body: Any) -> dict[str, Any]:
        fields(body, "close", {"handle": "integer"}, ["handle"])
        with self._lock:
            stream = self._stream(body["handle"])
            del self._streams[body["handle"]]
            self._write(stream.path, bytes(stream.data), stream.overwrite)
        return {}

    def get_status(self, query: Mapping[str, str]) -> dict[str, Any]:
        return self.info(self.path(query.get("path"), "path"))

    def list(self, query: Mapping[str, str]) -> dict[str, Any]:
        path = self.path(query.get("path"), "path")
        info = self.info(path)
        if not info["is_dir"]:
            return {"files": [info]}
        children = sorted(self.local(path).iterdir())
        return {"files": [self.info(path.rstrip("/") + "/" + c.name) for c in children]}

    def read(self, query: Mapping[str, str]) -> dict[str, Any]:
        path = self.path(query.get("path"), "path")
        offset, length = query_int(query, "offset", 0), query_int(query, "length", READ_DEFAULT)
        if offset < 0 or length < 0:
            raise invalid("offset and length must not be negative")
        if length > READ_LIMIT:
            raise ApiError(400, "MAX_READ_SIZE_EXCEEDED", f"length {length} exceeds the 1 MB read limit")
        if self.info(path)["is_dir"]:
            raise invalid(f"{path} is a directory")
        with open(self.local(path), "rb") as f:
            f.seek(offset)
            data = f.read(length)
        return {"bytes_read": len(data), "data": base64.b64encode(data).decode()}

    def mkdirs(self, body: Any) -> dict[str, Any]:
        fields(body, "mkdirs", {"path": "string"}, ["path"])
        path = self.path(body["path"])
        with self._lock:
            self._no_file_above(path)
            if self.local(path).is_file():
                raise exists(f"a file exists at {path}")
            self.local(path).mkdir(parents=True, exist_ok=True)
        return {}

    def delete(self, body: Any) -> dict[str, Any]:
        fields(body, "delete", {"path": "string", "recursive": "boolean"}, ["path"])
        path = self.path(body["path"])
        target = self.local(path)
        with self._lock:
            if path == "/":
                raise invalid("path: the DBFS root cannot be deleted")
            if target.is_dir():
                if any(target.iterdir()) and not body.get("recursive", False):
                    raise ApiError(400, "IO_ERROR", f"{path} is a non-empty directory and recursive is false")
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            # The docs name no error for a path that does not exist: deleting it succeeds.
        return {}

    def move(self, body: Any) -> dict[str, Any]:
        spec = {"source_path": "string", "destination_path": "string"}
        fields(body, "move", spec, spec)
        source = self.path(body["source_path"], "source_path")
        dest = self.path(body["destination_path"], "destination_path")
        with self._lock:
            if not self.local(source).exists():
                raise missing(f"no file or directory exists at {source}")
            if self.local(dest).exists():
                raise exists(f"a file or directory already exists at {dest}")
            self._no_file_above(dest)
            self.local(dest).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.local(source), self.local(dest))
        return {}


# ---- Files API 2.0: Unity Catalog volumes -----------------------------------------------------

VOLUME_RE = re.compile(r"^/Volumes/([^/]+)/([^/]+)/([^/]+)(/.*)?$")


@dataclass(frozen=True)
class Reply:
    """An answer that is not a JSON object: the Files API's raw bytes, 204s and HEAD headers."""

    status: int
    data: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    kind: str = "application/octet-stream"


class Volumes:
    """Volumes on a local folder (``root/Volumes/<catalog>/<schema>/<volume>/...``), reached through
    ``/api/2.0/fs/files{path}`` (PUT raw bytes with ?overwrite, GET, HEAD, DELETE) and
    ``/api/2.0/fs/directories{path}`` (PUT creates). Only volumes created with ``create`` exist."""

    def __init__(self, root: Path, staging: Path):
        self.root, self.staging = root, staging
        self.known: set[str] = set()
        self._lock = threading.Lock()

    def create(self, volume: str) -> None:
        match = VOLUME_RE.match(volume)
        if not match or match.group(4):
            raise ValueError(f"not a volume: {volume}")
        self.known.add(volume)
        self.local(volume).mkdir(parents=True, exist_ok=True)

    def path(self, raw: str) -> str:
        path = unquote(raw)
        parts = path.split("/")
        if not path.startswith("/") or any(p in (".", "..") for p in parts) or "//" in path or "\0" in path:
            raise invalid(f"{path!r} is not an absolute path")
        match = VOLUME_RE.match(path)
        if not match:
            # strict: the Files API also serves workspace files; this emulator has volumes only.
            raise unsupported(f"{path}: a path outside /Volumes/<catalog>/<schema>/<volume>")
        volume = "/".join(parts[:5])
        if volume not in self.known:
            raise ApiError(404, "NOT_FOUND", f"Volume '{'.'.join(match.groups()[:3])}' does not exist.")
        return path.rstrip("/") or path

    def local(self, path: str) -> Path:
        return self.root.joinpath(*path.strip("/").split("/"))

    def file(self, path: str) -> bytes | None:
        target = self.local(path)
        return target.read_bytes() if target.is_file() else None

    def files(self, method: str, raw_path: str, query: Mapping[str, str], data: bytes) -> Reply:
        path = self.path(raw_path)
        target = self.local(path)
        allowed = {"PUT": {"overwrite"}}.get(method, set())
        if set(query) - allowed:
            raise invalid(f"unknown query parameter(s): {', '.join(sorted(set(query) - allowed))}")
        if method == "PUT":
            overwrite = query.get("overwrite", "true")
            if overwrite not in ("true", "false"):
                raise invalid("overwrite: expected true or false")
            with self._lock:
                if target.is_dir():
                    raise ApiError(409, "ALREADY_EXISTS", f"{path} is a directory")
                if target.exists() and overwrite == "false":
                    raise ApiError(409, "ALREADY_EXISTS", f"The file being created already exists: {path}")
                target.parent.mkdir(parents=True, exist_ok=True)  # parents are created as needed
                fd, tmp = tempfile.mkstemp(dir=self.staging)
                with os.fdopen(fd, "wb") as f:  # the whole body or nothing: a reader never sees half
                    f.write(data)
                os.replace(tmp, target)
            return Reply(204)
        if not target.is_file():
            raise ApiError(404, "NOT_FOUND", f"The file being accessed is not found: {path}")
        if method == "DELETE":
            target.unlink()
            return Reply(204)
        stat = target.stat()
        headers = {"Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(stat.st_mtime))}
        if method == "HEAD":
            return Reply(200, b"", {**headers, "Content-Length": str(stat.st_size)})
        if method == "GET":
            return Reply(200, target.read_bytes(), headers)
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} /api/2.0/fs/files{path}'")

    def directories(self, method: str, raw_path: str, query: Mapping[str, str], data: bytes) -> Reply:
        path = self.path(raw_path)
        if method != "PUT":
            raise unsupported(f"{method} /api/2.0/fs/directories")
        if self.local(path).is_file():
            raise ApiError(409, "ALREADY_EXISTS", f"a file exists at {path}")
        self.local(path).mkdir(parents=True, exist_ok=True)
        return Reply(204)


class Workspace:
    """Workspace files (``/api/2.0/workspace/mkdirs``, ``import``, ``export``, ``get-status``), each
    principal's home folder ``/Users/<name>`` private to it, as a workspace's default permissions
    have it (admins aside, which this emulator has none of): another principal's request there is
    403 PERMISSION_DENIED. Paths may be given with the ``/Workspace`` prefix. Only files are kept
    (strict: content with a notebook header is refused as not supported)."""

    LIMIT = 10 * MB  # import: the base64-decoded content

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.folders: set[str] = {"/", "/Users", "/Shared"}
        self._lock = threading.Lock()

    @staticmethod
    def path(value: Any, where: str = "path") -> str:
        path = expect(value, "string", where)
        if path.startswith("/Workspace/"):
            path = path[len("/Workspace"):]
        parts = path.split("/")
        if not path.startswith("/") or any(p in (".", "..") for p in parts) or "//" in path or "\0" in path:
            raise invalid(f"{where}: {path!r} is not an absolute workspace path")
        return path.rstrip("/") or "/"

    def _allowed(self, path: str, principal: str) -> None:
        parts = path.split("/")
        if len(parts) >= 3 and parts[1] == "Users" and parts[2] != principal:
            raise ApiError(403, "PERMISSION_DENIED", f"User {principal} does not have permission on {path}")

    def _home(self, principal: str) -> None:
        self.folders.add(f"/Users/{principal}")  # made on a principal's first use of the workspace

    def file(self, path: str) -> bytes | None:
        return self.files.get(self.path(path))

    def handle(self, method: str, endpoint: str, query: Mapping[str, str], body: Mapping[str, Any],
               principal: str) -> dict[str, Any]:
        self._home(principal)
        if (method, endpoint) == ("POST", "mkdirs"):
            fields(body, "workspace/mkdirs", {"path": "string"}, ["path"])
            path = self.path(body["path"])
            self._allowed(path, principal)
            with self._lock:
                parts = path.split("/")
                for i in range(2, len(parts) + 1):
                    folder = "/".join(parts[:i])
                    if folder in self.files:
                        raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{folder} exists and is not a directory")
                    self.folders.add(folder)
            return {}
        if (method, endpoint) == ("POST", "import"):
            fields(body, "workspace/import", {"path": "string", "format": "string", "content": "string",
                                              "language": "string", "overwrite": "boolean"}, ["path"])
            path = self.path(body["path"])
            self._allowed(path, principal)
            if body.get("format", "SOURCE") != "AUTO":
                raise unsupported("workspace/import format other than AUTO (a file)")
            data = decode_b64(body.get("content", ""), "content")
            if len(data) > self.LIMIT:
                raise ApiError(400, "MAX_NOTEBOOK_SIZE_EXCEEDED", "content exceeds 10 MB")
            if data.lstrip().startswith((b"# Databricks notebook source", b"-- Databricks notebook source")):
                raise unsupported("importing notebooks")
            with self._lock:
                if path.rpartition("/")[0] not in self.folders:
                    raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"The parent folder of {path} does not exist")
                if path in self.folders or (path in self.files and not body.get("overwrite", False)):
                    raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{path} already exists")
                self.files[path] = data
            return {}
        if (method, endpoint) in (("GET", "export"), ("GET", "get-status")):
            path = self.path(query.get("path", ""))
            self._allowed(path, principal)
            with self._lock:
                data, is_folder = self.files.get(path), path in self.folders
            if data is None and not is_folder:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({path}) doesn't exist.")
            if endpoint == "get-status":
                kind = "DIRECTORY" if is_folder else "FILE"
                return {"object_type": kind, "path": path, "object_id": abs(hash(path)) % 10**15,
                        **({} if is_folder else {"size": len(data or b"")})}
            if query.get("format", "SOURCE") not in ("SOURCE", "AUTO") or \
                    query.get("direct_download", "false") != "false":
                raise unsupported("workspace/export other than format SOURCE/AUTO as base64")
            if is_folder:
                raise unsupported("exporting a folder")
            return {"content": base64.b64encode(data or b"").decode(), "file_type": path.rpartition(".")[2]}
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} /api/2.0/workspace/{endpoint}'")


# ---- Jobs API 2.1: request validation (pure) --------------------------------------------------

_SUBMIT_FIELDS = {
    "run_name": "string", "tasks": "array", "timeout_seconds": "integer", "idempotency_token": "string",
    "access_control_list": "array", "email_notifications": "object", "webhook_notifications": "object",
    "notification_settings": "object", "health": "object", "queue": "object", "run_as": "object",
    "budget_policy_id": "string", "usage_policy_id": "string", "git_source": "object", "environments": "array",
}
# Task kinds the Jobs API knows besides spark_python_task; submitting one is refused as unsupported.
OTHER_TASK_KINDS = (
    "notebook_task", "spark_jar_task", "spark_submit_task", "pipeline_task", "python_wheel_task", "dbt_task",
    "sql_task", "run_job_task", "condition_task", "for_each_task", "clean_rooms_notebook_task",
    "dashboard_task", "power_bi_task", "gen_ai_compute_task", "dbt_cloud_task", "alert_task",
)
_TASK_FIELDS = {
    "task_key": "string", "description": "string", "depends_on": "array", "run_if": "string",
    "existing_cluster_id": "string", "new_cluster": "object", "job_cluster_key": "string",
    "environment_key": "string", "compute": "object", "spark_python_task": "object", "libraries": "array",
    "timeout_seconds": "integer", "max_retries": "integer", "min_retry_interval_millis": "integer",
    "retry_on_timeout": "boolean", "email_notifications": "object", "notification_settings": "object",
    "webhook_notifications": "object", "health": "object", "disabled": "boolean",
    "disable_auto_optimization": "boolean", **{kind: "object" for kind in OTHER_TASK_KINDS},
}
_NEW_CLUSTER_FIELDS = {
    "spark_version": "string", "node_type_id": "string", "driver_node_type_id": "string",
    "instance_pool_id": "string", "driver_instance_pool_id": "string", "num_workers": "integer",
    "autoscale": "object", "spark_conf": "object", "spark_env_vars": "object", "custom_tags": "object",
    "docker_image": "object", "aws_attributes": "object", "azure_attributes": "object",
    "gcp_attributes": "object", "cluster_log_conf": "object", "init_scripts": "array",
    "ssh_public_keys": "array", "enable_elastic_disk": "boolean", "enable_local_disk_encryption": "boolean",
    "data_security_mode": "string", "single_user_name": "string", "runtime_engine": "string",
    "policy_id": "string", "apply_policy_default_values": "boolean", "cluster_name": "string",
    "autotermination_minutes": "integer", "workload_type": "object", "kind": "string",
    "is_single_node": "boolean", "use_ml_runtime": "boolean", "remote_disk_throughput": "integer",
    "total_initial_remote_disk_size": "integer", "driver_node_type_flexibility": "object",
    "worker_node_type_flexibility": "object",
}


def _json_kind(annotation: str, modules: tuple[Any, ...]) -> str:
    """The JSON type of an SDK dataclass field, from its annotation ('Optional[List[X]]' -> array)."""
    name = annotation.removeprefix("Optional[").removesuffix("]") if annotation.startswith("Optional[") else annotation
    if name.startswith("List["):
        return "array"
    if name.startswith("Dict[") or name == "Any":
        return "object"
    scalar = {"str": "string", "int": "integer", "bool": "boolean", "float": "number"}.get(name)
    if scalar:
        return scalar
    import enum

    found = next((getattr(m, name) for m in modules if hasattr(m, name)), None)
    return "string" if isinstance(found, type) and issubclass(found, enum.Enum) else "object"


def _sdk_fields() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """runs/submit's, a task's and a new_cluster's fields from the SDK's own definitions (the
    published API as the SDK is generated from it), else the lists above (as of SDK 0.162)."""
    try:
        import dataclasses
        import inspect

        from databricks.sdk.service import compute, jobs
    except ImportError:
        return _SUBMIT_FIELDS, _TASK_FIELDS, _NEW_CLUSTER_FIELDS
    modules = (jobs, compute)
    submit = {name: _json_kind(str(p.annotation), modules)
              for name, p in inspect.signature(jobs.JobsAPI.submit).parameters.items() if name != "self"}
    task = {f.name: _json_kind(str(f.type), modules) for f in dataclasses.fields(jobs.SubmitTask)}
    cluster = {f.name: _json_kind(str(f.type), modules) for f in dataclasses.fields(compute.ClusterSpec)}
    return submit, task, cluster


SUBMIT_FIELDS, TASK_FIELDS, NEW_CLUSTER_FIELDS = _sdk_fields()
DATA_SECURITY_MODES = {
    "NONE", "SINGLE_USER", "USER_ISOLATION", "LEGACY_TABLE_ACL", "LEGACY_PASSTHROUGH", "LEGACY_SINGLE_USER",
    "LEGACY_SINGLE_USER_STANDARD", "DATA_SECURITY_MODE_AUTO", "DATA_SECURITY_MODE_STANDARD",
    "DATA_SECURITY_MODE_DEDICATED",
}
RUNTIME_ENGINES = {"NULL", "STANDARD", "PHOTON"}
# Standard (formerly "shared") access: many users' code on one cluster, so no code from the DBFS root.
SHARED_ACCESS_MODES = {"USER_ISOLATION", "DATA_SECURITY_MODE_STANDARD"}
LIBRARY_KINDS = {"jar": "string", "egg": "string", "whl": "string", "requirements": "string",
                 "pypi": "object", "maven": "object", "cran": "object"}


def check_submit(body: Any) -> None:
    fields(body, "runs/submit", SUBMIT_FIELDS, ["tasks"])
    # strict: the docs do not mark `tasks` required, but a one-time run without a task runs nothing.
    if "git_source" in body:
        raise unsupported("runs/submit.git_source")
    environments = check_environments(body.get("environments", []))
    if "queue" in body:
        fields(body["queue"], "runs/submit.queue", {"enabled": "boolean"}, ["enabled"])
    if len(body.get("run_name", "").encode()) > RUN_NAME_MAX:
        raise invalid(f"runs/submit.run_name: longer than {RUN_NAME_MAX} bytes")
    if body.get("timeout_seconds", 0) < 0:
        raise invalid("runs/submit.timeout_seconds: must not be negative")
    if len(body.get("idempotency_token", "")) > IDEMPOTENCY_TOKEN_MAX:
        raise invalid(f"runs/submit.idempotency_token: longer than {IDEMPOTENCY_TOKEN_MAX} characters")
    if not body["tasks"]:
        raise invalid("runs/submit.tasks: at least one task is required")
    keys = [check_task(task, f"tasks[{i}]") for i, task in enumerate(body["tasks"])]
    if len(set(keys)) != len(keys):
        raise invalid("runs/submit.tasks: task_key values must be unique within the run")
    for i, task in enumerate(body["tasks"]):
        if "environment_key" in task and task["environment_key"] not in environments:
            raise invalid(f"tasks[{i}].environment_key: {task['environment_key']!r} is not in runs/submit.environments")
        check_references(task["spark_python_task"].get("parameters", []), f"tasks[{i}].spark_python_task.parameters")


def _environment_fields() -> dict[str, str]:
    """The fields of an environment spec, from the SDK's own dataclass when it is installed (so the
    emulator follows the published API), else the list as of SDK 0.162."""
    try:
        import dataclasses

        from databricks.sdk.service.compute import Environment
    except ImportError:
        names = ["base_environment", "client", "dependencies", "environment_version", "java_dependencies",
                 "project_environment"]
    else:
        names = [f.name for f in dataclasses.fields(Environment)]
    kinds = {"dependencies": "array", "java_dependencies": "array"}
    return {name: kinds.get(name, "string") for name in names}


def check_environments(environments: Any) -> set[str]:
    """runs/submit.environments (serverless compute): keys unique, a spec with a version or a base."""
    expect(environments, "array", "runs/submit.environments")
    keys = set()
    for i, env in enumerate(environments):
        where = f"runs/submit.environments[{i}]"
        fields(env, where, {"environment_key": "string", "spec": "object"}, ["environment_key", "spec"])
        spec = fields(env["spec"], f"{where}.spec", _environment_fields())
        if not ({"environment_version", "client", "base_environment", "project_environment"} & spec.keys()):
            raise invalid(f"{where}.spec: environment_version (or base_environment) is required")
        string_list(spec.get("dependencies", []), f"{where}.spec.dependencies")
        if env["environment_key"] in keys:
            raise invalid(f"{where}.environment_key: {env['environment_key']!r} is used twice")
        keys.add(env["environment_key"])
    return keys


# Dynamic value references Databricks replaces in task parameters ({{job.run_id}}, ...), and the
# namespaces in which an unknown name is an error rather than literal text.
REFERENCE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
REFERENCES = {"job.id", "job.name", "job.run_id", "job.repair_count", "job.start_time.iso_datetime",
              "job.trigger.type", "task.name", "task.run_id", "task.execution_count", "run_id", "parent_run_id",
              "job_id", "task_key", "start_date", "start_time", "workspace.id", "workspace.url"}
REFERENCE_NAMESPACES = ("job.", "task.", "tasks.", "workspace.", "backfill.")


def check_references(parameters: list[str], where: str) -> None:
    for value in parameters:
        for name in REFERENCE.findall(value):
            if name not in REFERENCES and name.startswith(REFERENCE_NAMESPACES):
                raise invalid(f"{where}: {{{{{name}}}}} is not a valid dynamic value reference")


def resolve_references(value: str, values: Mapping[str, str]) -> str:
    """What a task receives: each known reference replaced; anything else stays literal."""
    return REFERENCE.sub(lambda m: values.get(m.group(1), m.group(0)), value)


def check_task(task: Any, where: str) -> str:
    fields(task, where, TASK_FIELDS, ["task_key"])
    key = task["task_key"]
    if not TASK_KEY_RE.match(key) or len(key) > TASK_KEY_MAX:
        raise invalid(f"{where}.task_key: {key!r} must be 1-{TASK_KEY_MAX} letters, digits, '_' or '-'")
    check_task_kind(task, where)
    check_task_compute(task, where)
    if task.get("timeout_seconds", 0) < 0:
        raise invalid(f"{where}.timeout_seconds: must not be negative")
    for i, lib in enumerate(task.get("libraries", [])):
        check_library(lib, f"{where}.libraries[{i}]")
    return key


def check_task_kind(task: Mapping[str, Any], where: str) -> None:
    kinds = [k for k in ("spark_python_task", *OTHER_TASK_KINDS) if k in task]
    if len(kinds) != 1:
        raise invalid(f"{where}: exactly one task kind (e.g. spark_python_task) is required, got {kinds or 'none'}")
    if kinds[0] != "spark_python_task":
        raise unsupported(f"{where}.{kinds[0]} (only spark_python_task runs here)")
    spt = fields(task["spark_python_task"], f"{where}.spark_python_task",
                 {"python_file": "string", "parameters": "array", "source": "string"}, ["python_file"])
    string_list(spt.get("parameters", []), f"{where}.spark_python_task.parameters")
    if spt.get("source", "WORKSPACE") not in ("WORKSPACE", "GIT"):
        raise invalid(f"{where}.spark_python_task.source: expected WORKSPACE or GIT")
    if spt.get("source") == "GIT":
        raise unsupported(f"{where}.spark_python_task.source GIT")
    if task.get("depends_on"):
        raise unsupported(f"{where}.depends_on (tasks of one run all start together here)")
    if task.get("run_if", "ALL_SUCCESS") != "ALL_SUCCESS":
        raise unsupported(f"{where}.run_if")
    if task.get("max_retries", 0) != 0 or task.get("disabled"):
        raise unsupported(f"{where}: retries or disabled tasks")


def check_task_compute(task: Mapping[str, Any], where: str) -> None:
    for name in ("job_cluster_key", "compute"):
        if name in task:
            raise unsupported(f"{where}.{name}")
    computes = [k for k in ("new_cluster", "existing_cluster_id", "environment_key") if k in task]
    if len(computes) != 1:
        raise invalid(f"{where}: exactly one of new_cluster, existing_cluster_id or environment_key (serverless) "
                      f"is required, got {computes or 'none'}")
    if "environment_key" in task:
        if "libraries" in task:  # serverless compute takes dependencies in the environment
            raise invalid(f"{where}.libraries: libraries are not supported on serverless compute; "
                          "list them as dependencies of the task's environment")
        return
    if "new_cluster" in task:
        check_new_cluster(task["new_cluster"], f"{where}.new_cluster")
    elif not task["existing_cluster_id"]:
        raise invalid(f"{where}.existing_cluster_id: must not be empty")


def check_new_cluster(spec: Any, where: str) -> None:
    # strict: spark_version could come from a cluster policy in Databricks; here it is required.
    fields(spec, where, NEW_CLUSTER_FIELDS, ["spark_version"])
    if not ({"node_type_id", "instance_pool_id"} & spec.keys()):
        raise invalid(f"{where}: node_type_id or instance_pool_id is required")
    if ("num_workers" in spec) == ("autoscale" in spec):
        raise invalid(f"{where}: exactly one of num_workers or autoscale is required")
    if spec.get("num_workers", 0) < 0:
        raise invalid(f"{where}.num_workers: must not be negative")
    if "autoscale" in spec:
        scale = fields(spec["autoscale"], f"{where}.autoscale", {"min_workers": "integer", "max_workers": "integer"},
                       ["min_workers", "max_workers"])
        if not 0 <= scale["min_workers"] <= scale["max_workers"]:
            raise invalid(f"{where}.autoscale: need 0 <= min_workers <= max_workers")
    for name in ("spark_conf", "spark_env_vars", "custom_tags"):
        string_map(spec.get(name, {}), f"{where}.{name}")
    string_list(spec.get("ssh_public_keys", []), f"{where}.ssh_public_keys")
    if "docker_image" in spec:
        image = fields(spec["docker_image"], f"{where}.docker_image", {"url": "string", "basic_auth": "object"},
                       ["url"])
        if "basic_auth" in image:
            fields(image["basic_auth"], f"{where}.docker_image.basic_auth",
                   {"username": "string", "password": "string"}, ["username", "password"])
    if spec.get("data_security_mode", "NONE") not in DATA_SECURITY_MODES:
        raise invalid(f"{where}.data_security_mode: unknown mode {spec['data_security_mode']!r}")
    if spec.get("runtime_engine", "NULL") not in RUNTIME_ENGINES:
        raise invalid(f"{where}.runtime_engine: expected one of {sorted(RUNTIME_ENGINES)}")
    # Cloud attribute objects, log and init-script settings are type-checked only: nothing here uses them.


def check_library(lib: Any, where: str) -> None:
    fields(lib, where, LIBRARY_KINDS)
    if len(lib) != 1:
        raise invalid(f"{where}: a library names exactly one of {', '.join(sorted(LIBRARY_KINDS))}")
    kind, value = next(iter(lib.items()))
    if kind == "pypi":
        fields(value, f"{where}.pypi", {"package": "string", "repo": "string"}, ["package"])
        if "repo" in value:
            raise unsupported(f"{where}.pypi.repo (installs come from the machine's package index)")
    elif kind == "cran":
        fields(value, f"{where}.cran", {"package": "string", "repo": "string"}, ["package"])
    elif kind == "maven":
        maven = fields(value, f"{where}.maven", {"coordinates": "string", "repo": "string", "exclusions": "array"},
                       ["coordinates"])
        string_list(maven.get("exclusions", []), f"{where}.maven.exclusions")
    elif not value:
        raise invalid(f"{where}.{kind}: must not be empty")
    elif kind in ("whl", "egg", "requirements"):  # Python files the emulator would have to fetch and install
        raise unsupported(f"{where}.{kind} (only pypi libraries are installed here)")


# ---- task environments: the libraries really installed --------------------------------------


class LibraryError(Exception):
    """pip could not install a task's libraries: the message is the run's state_message."""


def pip_requirements(task: Mapping[str, Any], environments: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    """What pip installs for a task (requirement strings), and how Databricks names them in an error
    ("pypi" for cluster libraries, "environment" for a serverless task's dependencies)."""
    if "environment_key" in task:
        return tuple(environments[task["environment_key"]].get("dependencies", [])), "environment"
    return tuple(lib["pypi"]["package"] for lib in task.get("libraries", []) if "pypi" in lib), "pypi"


class ClusterError(Exception):
    """The task's cluster could not start (its image cannot be had or cannot run a Python task): the
    message is the run's state_message."""


# The runtime-like image every task runs in unless its cluster names a docker_image: what a
# Databricks Runtime has where a Python task needs it (a virtualenv at /databricks/python3 with pip,
# bash, the driver's working folder /databricks/driver). /dbfs and /Volumes are mounted at run time.
RUNTIME_DOCKERFILE = """\
FROM {base}
RUN python3 -m venv /databricks/python3 && mkdir -p /databricks/driver && chmod 1777 /databricks/driver
ENV PATH=/databricks/python3/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /databricks/driver
LABEL dockrun-test.databricks-runtime="1"
"""
RUNTIME_PYTHON = "/databricks/python3/bin/python"
TASK_LABEL = "dockrun-test.databricks-emulator"  # on every task container: the emulator's id


class Runtime:
    """The engine and the runtime-like image (built once per test session from the local base image,
    named by a hash of its Dockerfile and the base's ID, so later sessions reuse it). Images come from
    the local engine or a registry on 127.0.0.1 (the tests' own), never from the internet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: Any = None
        self._image: str | None = None
        self.tag = ""  # the runtime image's name, once built
        self._gateway: str | None = None
        self._checked: dict[str, str] = {}  # image ID -> "" (runs Python tasks) or what it lacks

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import docker

                self._client = docker.from_env(timeout=600)
            return self._client

    def image(self, base: str | None = None) -> str:
        """The runtime image's ID, built from ``base`` ($DOCKRUN_BASE_IMAGE, else dockrun-base:bookworm)."""
        client = self.client()
        with self._lock:
            if self._image is None:
                import hashlib
                import io

                base = base or os.environ.get("DOCKRUN_BASE_IMAGE") or "dockrun-base:bookworm"
                text = RUNTIME_DOCKERFILE.format(base=base)
                digest = hashlib.sha256(f"{text}\0{client.images.get(base).id}".encode()).hexdigest()[:16]
                tag = f"dockrun-test-databricks-runtime:{digest}"
                try:
                    self._image = client.images.get(tag).id
                except Exception:  # noqa: BLE001 - not built yet
                    image, _ = client.images.build(fileobj=io.BytesIO(text.encode()), tag=tag, rm=True,
                                                   forcerm=True, pull=False)
                    self._image = image.id
                self.tag = tag
            return self._image

    def gateway(self) -> str:
        """The docker bridge's gateway: the one host address a task container reaches the emulator at."""
        from docker_bridge import docker_gateway

        with self._lock:
            if self._gateway is None:
                self._gateway = docker_gateway()
            return self._gateway

    def cluster_image(self, url: str, auth: Mapping[str, str] | None, cluster_id: str) -> str:
        """A docker_image (Databricks Container Services) as the cluster gets it: its ID, or
        ClusterError as a cluster that cannot start says it."""
        import docker

        client = self.client()
        try:
            image = client.images.get(url)
        except docker.errors.ImageNotFound:
            registry = url.split("/", 1)[0] if "/" in url else ""
            if registry.rsplit(":", 1)[0] not in ("127.0.0.1", "localhost"):
                raise ClusterError(pull_failure(cluster_id, url, "not found (this emulator pulls only from a "
                                                "registry on 127.0.0.1, never from the internet)")) from None
            try:
                image = client.images.pull(url, auth_config=dict(auth) if auth else None)
            except docker.errors.APIError as e:
                raise ClusterError(pull_failure(cluster_id, url, str(e.explanation or e))) from None
        with self._lock:
            lacks = self._checked.get(image.id)
        if lacks is None:
            # What Databricks Container Services needs to run a Python task: its virtualenv and bash.
            probe = f"test -x {RUNTIME_PYTHON} || echo {RUNTIME_PYTHON}; command -v bash >/dev/null || echo bash"
            name = f"databricks-probe-{secrets.token_hex(6)}"
            try:
                out = client.containers.run(image.id, ["sh", "-c", probe], remove=True, entrypoint=[], name=name,
                                            labels={TASK_LABEL: "probe"})
                lacks = out.decode(errors="replace").split()
            except docker.errors.ContainerError as e:
                lacks = [f"a working shell (exit {e.exit_status})"]
            except docker.errors.APIError as e:  # made, but it did not start: removed here
                lacks = [f"a shell ({e.explanation or e})"]
                remove_container(client, name)
            lacks = " and ".join(lacks)
            with self._lock:
                self._checked[image.id] = lacks
        if lacks:
            raise ClusterError(f"Cluster {cluster_id} could not start: DOCKER_CONTAINER_CREATION_EXCEPTION"
                               f"(CLIENT_ERROR): the container image {url} has no {lacks}, which Databricks "
                               "Container Services needs to run Python tasks")
        return str(image.id)


def pull_failure(cluster_id: str, url: str, reason: str) -> str:
    """The state_message of a run whose cluster could not pull its image (the termination reason is
    the Clusters API's DOCKER_IMAGE_PULL_FAILURE, the run's termination code CLUSTER_ERROR)."""
    return (f"Cluster {cluster_id} could not start: DOCKER_IMAGE_PULL_FAILURE(CLIENT_ERROR): "
            f"failed to pull the container image {url}: {reason}")


RUNTIME = Runtime()


def remove_container(client: Any, name: str) -> None:
    with contextlib.suppress(Exception):  # never made, or already gone
        client.containers.get(name).remove(force=True)


class Environments:
    """A task's libraries as the cluster installs them: into a copy of its image's /databricks/python3,
    one per (image, set of requirements), made once per test session and mounted at
    /databricks/python3 in the task's container. pip runs in a container of that image with no
    network: the wheels come from the test runner's pip (``pip wheel``, whose index and certificate
    settings are the machine's), the stand-in for the cluster's own access to PyPI. Failures are kept
    too. Concurrent tasks needing the same set wait for the one making it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._root: Path | None = None
        self._made: dict[tuple[str, ...], tuple[str | None, str]] = {}  # key -> (folder, pip's errors)
        self._making: dict[tuple[str, ...], threading.Lock] = {}
        self.installs = 0  # how many sets pip was asked for (tests check the cache)

    def folder(self, image: str, requirements: Iterable[str], kind: str = "pypi") -> str | None:
        """The host folder to mount at /databricks/python3 (None: no libraries, the image's own)."""
        reqs = tuple(sorted({r.strip() for r in requirements}))
        if not reqs:
            return None
        wheels = self._once(("wheels", *reqs), lambda: self._wheels(reqs))
        if wheels[0] is not None:
            wheels = self._once(("env", image, *reqs), lambda: self._install(image, wheels[0] or "", reqs))
        folder, errors = wheels
        if folder is None:
            raise LibraryError(library_error(reqs, kind, errors))
        return folder

    def _once(self, key: tuple[str, ...], make: Callable[[], tuple[str | None, str]]) -> tuple[str | None, str]:
        with self._lock:
            making = self._making.setdefault(key, threading.Lock())
        with making:
            if key not in self._made:
                self._made[key] = make()
            return self._made[key]

    def _new(self, name: str) -> Path:
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="databricks-emulator-envs-"))
                atexit.register(shutil.rmtree, self._root, True)
            folder = self._root / f"{name}-{len(self._making)}-{secrets.token_hex(4)}"
        folder.mkdir()
        return folder

    def _wheels(self, reqs: tuple[str, ...]) -> tuple[str | None, str]:
        self.installs += 1
        bad = [r for r in reqs if r.startswith("-") or not r]
        if bad:  # options (-r, -e, --index-url) would need files or settings the emulator has not
            return None, f"ERROR: {bad[0]!r}: not supported by this emulator"
        folder = self._new("wheels")
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-input", "--disable-pip-version-check", "-q",
                            "-w", str(folder), *reqs], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            errors = [line for line in (r.stderr + r.stdout).splitlines() if line.startswith("ERROR")]
            return None, " ".join(errors) or f"pip exited with code {r.returncode}"
        return str(folder), ""

    def _install(self, image: str, wheels: str, reqs: tuple[str, ...]) -> tuple[str | None, str]:
        import docker

        client, folder = RUNTIME.client(), self._new("env")
        user, name = f"{os.getuid()}:{os.getgid()}", f"databricks-install-{secrets.token_hex(6)}"
        try:
            client.containers.run(image, ["cp", "-a", "/databricks/python3/.", "/out/"], remove=True, user=user,
                                  entrypoint=[], volumes={str(folder): {"bind": "/out", "mode": "rw"}},
                                  name=name + "-copy", labels={TASK_LABEL: "install"})
            client.containers.run(image, [RUNTIME_PYTHON, "-m", "pip", "install", "-q", "--no-index", "--no-cache-dir",
                                          "--disable-pip-version-check", "--find-links", "/wheels", *reqs],
                                  remove=True, user=user, entrypoint=[], environment={"HOME": "/tmp"},
                                  network_mode="none", name=name, labels={TASK_LABEL: "install"},
                                  volumes={str(folder): {"bind": "/databricks/python3", "mode": "rw"},
                                           wheels: {"bind": "/wheels", "mode": "ro"}})
        except docker.errors.APIError as e:  # made, but it did not start: removed here
            for made in (name + "-copy", name):
                remove_container(client, made)
            shutil.rmtree(folder, ignore_errors=True)
            return None, f"ERROR: pip could not run in the cluster's image: {e.explanation or e}"
        except docker.errors.ContainerError as e:
            shutil.rmtree(folder, ignore_errors=True)
            text = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else str(e.stderr or "")
            errors = [line for line in text.splitlines() if line.startswith("ERROR")]
            return None, " ".join(errors) or f"pip exited with code {e.exit_status}"
        return str(folder), ""


def library_error(key: tuple[str, ...], kind: str, errors: str) -> str:
    """Databricks' state_message for a library that did not install (as users report it; the docs
    name only the termination code): which library, then pip's own error."""
    match = re.search(r"No matching distribution found for (\S+)", errors)
    failed = next((r for r in key if match and r.split(";")[0].strip() == match.group(1)), key[0] if key else "")
    if kind == "environment":
        return (f"Library installation failed for library due to user error for environment dependency "
                f"{failed!r}. Error Message: {errors}")
    return (f"Library installation failed for library due to user error for pypi {{ package: \"{failed}\" }}. "
            f"Error messages: Library installation attempted on the driver node of cluster and failed. "
            f"Please refer to the following error message to fix the library or contact Databricks support. "
            f"Error Code: DRIVER_LIBRARY_INSTALLATION_FAILURE. Error Message: "
            f"org.apache.spark.SparkException: Process List(/bin/pip, install, {failed}, "
            f"--disable-pip-version-check) exited with code 1. {errors}")


ENVIRONMENTS = Environments()

# How the runtime runs a python_file: its Python process's sys.stdout and sys.stderr are captured by
# the driver (get-output's logs); an uncaught exception's traceback is kept as error_trace.
# argv: LOG TRACE FILE PARAMETERS...
CAPTURE = """
import os, runpy, sys, traceback
log, trace, script = sys.argv[1:4]
sys.argv = [script] + sys.argv[4:]
sys.path[0] = os.path.dirname(script)
stream = open(log, "a", encoding="utf-8", errors="replace", buffering=1)
sys.stdout = sys.stderr = stream
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as e:
    code = e.code
    if code is not None and not isinstance(code, int):
        print(code)
        code = 1
except BaseException:
    kind, value, tb = sys.exc_info()
    while tb is not None and tb.tb_frame.f_code.co_filename != script:  # the file's frames, not ours
        tb = tb.tb_next
    text = "".join(traceback.format_exception(kind, value, tb))
    stream.write(text)
    with open(trace, "w") as f:
        f.write(text)
    code = 1
stream.flush()
sys.exit(code)
"""


# ---- Jobs API 2.1: runs -----------------------------------------------------------------------

TERMINAL = "TERMINATED"


@dataclass
class TaskRun:
    run_id: int
    spec: dict[str, Any]
    folder: Path  # the task's own: driver/ (its working folder) and capture/ (its logs and trace)
    life: str = "PENDING"
    result: str | None = None
    message: str = "Waiting for cluster"
    start: int = 0
    end: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    container: Any = None  # the task's container (docker-py), while it exists
    code: str = ""  # status.termination_details.code, once terminated

    @property
    def key(self) -> str:
        return str(self.spec["task_key"])

    @property
    def log(self) -> Path:  # what the file's sys.stdout/sys.stderr wrote (get-output's logs)
        return self.folder / "capture" / "log"

    @property
    def trace(self) -> Path:  # an uncaught exception's traceback (get-output's error_trace)
        return self.folder / "capture" / "trace"


@dataclass
class Run:
    run_id: int
    job_id: int
    body: dict[str, Any]
    tasks: list[TaskRun]
    life: str = "PENDING"
    result: str | None = None
    message: str = "Waiting for cluster"
    start: int = field(default_factory=now_ms)
    end: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    code: str = ""
    principal: str = ""  # who submitted it: the task's own token acts as them


# Jobs API 2.1's life cycle states as the newer ``status.state`` (RunLifecycleStateV2State) says them.
STATE_V2 = {"PENDING": "PENDING", "QUEUED": "QUEUED", "BLOCKED": "BLOCKED", "WAITING_FOR_RETRY": "WAITING",
            "RUNNING": "RUNNING", "TERMINATING": "TERMINATING", "TERMINATED": "TERMINATED",
            "SKIPPED": "TERMINATED", "INTERNAL_ERROR": "TERMINATED"}
# status.termination_details.code -> its type (TerminationTypeType), for the codes the emulator sends.
TERMINATION_TYPES = {"SUCCESS": "SUCCESS", "USER_CANCELED": "SUCCESS", "CANCELED": "CLIENT_ERROR",
                     "CLUSTER_ERROR": "CLIENT_ERROR",
                     "RUN_EXECUTION_ERROR": "CLIENT_ERROR", "LIBRARY_INSTALLATION_ERROR": "CLIENT_ERROR",
                     "INVALID_RUN_CONFIGURATION": "CLIENT_ERROR", "RESOURCE_NOT_FOUND": "CLIENT_ERROR"}
RESULT_CODES = {"SUCCESS": "SUCCESS", "CANCELED": "USER_CANCELED", "TIMEDOUT": "CANCELED",
                "FAILED": "RUN_EXECUTION_ERROR"}


def status(life: str, result: str | None, code: str, message: str) -> dict[str, Any]:
    """The run's ``status`` (the newer form of ``state``): the state and, once over, why."""
    out: dict[str, Any] = {"state": STATE_V2[life]}
    if result:
        code = code or RESULT_CODES.get(result, "RUN_EXECUTION_ERROR")
        out["termination_details"] = {"code": code, "type": TERMINATION_TYPES[code], "message": message}
    return out


def state(life: str, result: str | None, message: str) -> dict[str, Any]:
    out: dict[str, Any] = {"life_cycle_state": life, "state_message": message,
                           "user_cancelled_or_timedout": result in ("CANCELED", "TIMEDOUT")}
    if result:  # documented as present only once the run is in a terminal state
        out["result_state"] = result
    return out


def overall_result(run: Run) -> str:
    if run.cancel.is_set():
        return "CANCELED"
    results = {t.result for t in run.tasks}
    for result in ("FAILED", "TIMEDOUT", "CANCELED"):
        if result in results:
            return result
    return "SUCCESS"


class Jobs:
    """One-time runs: validation at submit, then PENDING -> RUNNING -> TERMINATING -> TERMINATED."""

    def __init__(self, emulator: DatabricksEmulator):
        self.emu = emulator
        self._lock = threading.Lock()
        # Real run ids exceed 32 bits; so do these, so a client that squeezes them into an int32 breaks here.
        self._ids = iter(range((1 << 32) + 1, 1 << 62))
        self.runs: dict[int, Run] = {}
        self.task_runs: dict[int, tuple[Run, TaskRun]] = {}
        self._tokens: dict[str, int] = {}

    # endpoints
    def submit(self, body: Any) -> dict[str, Any]:
        check_submit(body)
        for i, task in enumerate(body["tasks"]):
            self._check_python_file(task["spark_python_task"]["python_file"], f"tasks[{i}]")
        with self._lock:
            token = body.get("idempotency_token")
            if token in self._tokens:  # the docs promise exactly one run per token
                return {"run_id": self._tokens[token]}
            run = self._new_run(body)
            run.principal = self.emu.caller
            if token is not None:
                self._tokens[token] = run.run_id
        self.emu.submitted.append(body)
        run.thread = threading.Thread(target=self._drive, args=(run,), name=f"run-{run.run_id}", daemon=True)
        run.thread.start()
        return {"run_id": run.run_id}

    def _check_python_file(self, python_file: str, where: str) -> None:
        if python_file.startswith("/") and not python_file.startswith("/Volumes/"):  # a workspace file
            if self.emu.workspace.file(python_file) is None:
                raise invalid(f"{where}.spark_python_task.python_file: {python_file} does not exist in the workspace")
            return
        if python_file.startswith("/Volumes/"):
            if self.emu.volumes.file(self.emu.volumes.path(python_file)) is None:
                raise invalid(f"{where}.spark_python_task.python_file: {python_file} does not exist")
            return
        if not python_file.startswith("dbfs:/"):
            # Databricks also takes workspace paths and cloud URIs (s3:/, ...); the emulator has only DBFS.
            raise unsupported(f"{where}.spark_python_task.python_file {python_file!r} (only dbfs:/ paths)")
        path = dbfs_path(python_file[len("dbfs:"):], f"{where}.spark_python_task.python_file", False)
        # strict: Databricks would fail the run later; the emulator refuses the submit at once.
        if self.emu.dbfs.file(path) is None:
            raise invalid(f"{where}.spark_python_task.python_file: {python_file} does not exist in DBFS")

    def _new_run(self, body: dict[str, Any]) -> Run:
        run_id, job_id = next(self._ids), next(self._ids)
        tasks = []
        for spec in body["tasks"]:
            task_id = next(self._ids)
            tasks.append(TaskRun(task_id, spec, self.emu.work / f"task-{task_id}"))
        run = Run(run_id, job_id, body, tasks)
        self.runs[run_id] = run
        for task in tasks:
            self.task_runs[task.run_id] = (run, task)
        return run

    def _find(self, run_id: int) -> tuple[Run, TaskRun | None]:
        if run_id in self.runs:
            return self.runs[run_id], None
        if run_id in self.task_runs:
            return self.task_runs[run_id]
        # get-output documents 400 for an invalid run_id; runs/get and runs/cancel answer alike.
        raise invalid(f"Run {run_id} does not exist.")

    def get(self, query: Mapping[str, str]) -> dict[str, Any]:
        for name in ("include_history", "include_resolved_values"):
            if query.get(name, "false") not in ("true", "false"):
                raise invalid(f"{name}: expected true or false")
        with self._lock:
            run, task = self._find(query_int(query, "run_id"))
            return self._task_view(run, task) if task else self._run_view(run)

    def get_2_2(self, query: Mapping[str, str]) -> dict[str, Any]:
        """Jobs API 2.2's runs/get: array properties (tasks, job_clusters, job_parameters,
        repair_history) come 100 elements at a time; ``next_page_token`` while more remain, passed
        back as ``page_token``; arrays without more are empty on later pages."""
        token = query.get("page_token")
        start = 0
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("tasks:"))
            except (binascii.Error, ValueError):
                raise invalid(f"page_token: {token!r} is not a token this API gave") from None
        view = self.get({k: v for k, v in query.items() if k != "page_token"})
        tasks = view.get("tasks", [])
        size = self.emu.page_size
        view["tasks"] = tasks[start:start + size]
        if start + size < len(tasks):
            view["next_page_token"] = base64.urlsafe_b64encode(f"tasks:{start + size}".encode()).decode()
        return view

    def cancel(self, body: Any) -> dict[str, Any]:
        fields(body, "runs/cancel", {"run_id": "integer"}, ["run_id"])
        with self._lock:
            run, task = self._find(body["run_id"])
            targets = [task] if task else run.tasks
            if task is None and run.life != TERMINAL:
                run.cancel.set()
                run.life, run.message = "TERMINATING", "Run cancellation requested"
            for t in targets:
                if t.life != TERMINAL:
                    t.cancel.set()
                    if t.life == "RUNNING":
                        t.life, t.message = "TERMINATING", "Run cancellation requested"
        return {}  # cancelling a finished run is a no-op, as cancellation is asynchronous anyway

    def get_output(self, query: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            run, task = self._find(query_int(query, "run_id"))
            if task is None:
                raise invalid("Retrieving the output of a run with multiple tasks is not supported: "
                              "ask for the output of each task run (tasks[].run_id) instead.")
            out: dict[str, Any] = {"metadata": self._task_view(run, task)}
            if task.result in ("FAILED", "TIMEDOUT"):
                out["error"] = task.message
                trace = task.trace.read_text(errors="replace") if task.trace.exists() else ""
                if trace.strip():
                    out["error_trace"] = trace
                    out["error"] = trace.strip().splitlines()[-1]
        logs, truncated = self._tail(task.log)
        out.update(logs=logs, logs_truncated=truncated)
        return out

    def _tail(self, log: Path) -> tuple[str, bool]:
        if not log.exists():
            return "", False
        limit = self.emu.logs_limit
        with open(log, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            return f.read().decode(errors="replace"), size > limit

    # views
    def _url(self, run: Run, run_id: int) -> str:
        return f"{self.emu.url}/#job/{run.job_id}/run/{run_id}"

    def _run_view(self, run: Run) -> dict[str, Any]:
        return {
            "job_id": run.job_id, "run_id": run.run_id, "number_in_job": run.run_id,
            "original_attempt_run_id": run.run_id, "attempt_number": 0,
            "run_name": run.body.get("run_name", "Untitled"), "run_type": "SUBMIT_RUN", "format": "MULTI_TASK",
            "state": state(run.life, run.result, run.message),
            "status": status(run.life, run.result, run.code, run.message), "start_time": run.start, "end_time": run.end,
            # The per-phase durations are documented as 0 for multi-task runs; run_duration carries the total.
            "setup_duration": 0, "execution_duration": 0, "cleanup_duration": 0,
            "run_duration": (run.end or now_ms()) - run.start, "run_page_url": self._url(run, run.run_id),
            "tasks": [self._task_summary(run, t) for t in run.tasks],
        }

    def _task_summary(self, run: Run, task: TaskRun) -> dict[str, Any]:
        view = dict(task.spec)
        view.update(run_id=task.run_id, state=state(task.life, task.result, task.message),
                    status=status(task.life, task.result, task.code, task.message),
                    start_time=task.start, end_time=task.end, attempt_number=0,
                    run_page_url=self._url(run, task.run_id))
        return view

    def _task_view(self, run: Run, task: TaskRun) -> dict[str, Any]:
        view = self._task_summary(run, task)
        view.update(job_id=run.job_id, job_run_id=run.run_id, run_type="SUBMIT_RUN",
                    run_name=run.body.get("run_name", "Untitled"))
        return view

    # execution
    def _set(self, obj: Run | TaskRun, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(obj, name, value)

    def _drive(self, run: Run) -> None:
        if run.cancel.wait(self.emu.pending_s):  # cancelled while the "cluster" was starting
            for task in run.tasks:
                self._set(task, life=TERMINAL, result="CANCELED", message="Run cancelled", end=now_ms())
            self._set(run, life=TERMINAL, result="CANCELED", message="Run cancelled", end=now_ms())
            return
        with self._lock:
            if not run.cancel.is_set():  # a cancel that came just now has already said TERMINATING
                run.life, run.message = "RUNNING", "In run"
        deadline = self._deadline(run.body.get("timeout_seconds", 0))
        threads = [threading.Thread(target=self._execute, args=(run, t, deadline), daemon=True) for t in run.tasks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._set(run, life="TERMINATING", message="Cleaning up")
        time.sleep(self.emu.terminating_s)
        result = overall_result(run)
        message = "" if result == "SUCCESS" else {"CANCELED": "Run cancelled", "TIMEDOUT": "Run timed out"}.get(
            result, "Workload failed, see run output for details")
        broken = [t for t in run.tasks if t.code in ("LIBRARY_INSTALLATION_ERROR", "CLUSTER_ERROR")]
        if broken and result == "FAILED":  # the run did not get to run its code: Databricks says why
            self._set(run, life="INTERNAL_ERROR", result=result, message=broken[0].message, code=broken[0].code,
                      end=now_ms())
            return
        self._set(run, life=TERMINAL, result=result, message=message, code=RESULT_CODES[result], end=now_ms())

    @staticmethod
    def _deadline(timeout_s: int) -> float:
        return time.monotonic() + timeout_s if timeout_s > 0 else float("inf")

    def _execute(self, run: Run, task: TaskRun, run_deadline: float) -> None:
        if task.cancel.is_set():
            self._set(task, life=TERMINAL, result="CANCELED", message="Run cancelled", end=now_ms())
            return
        deadline = min(run_deadline, self._deadline(task.spec.get("timeout_seconds", 0)))
        try:
            image = self._cluster_image(run, task)  # the cluster starts (its image pulled) first
            self._set(task, message="Installing libraries")
            python_env = ENVIRONMENTS.folder(image, *pip_requirements(task.spec, self._environments(run)))
        except (ClusterError, LibraryError) as e:  # the cluster could not give the task what it needs: nothing runs
            code = "CLUSTER_ERROR" if isinstance(e, ClusterError) else "LIBRARY_INSTALLATION_ERROR"
            self._set(task, life="INTERNAL_ERROR", result="FAILED", message=str(e), code=code, end=now_ms())
            return
        if task.cancel.is_set():  # cancelled while its libraries were installed
            self._set(task, life=TERMINAL, result="CANCELED", message="Run cancelled", code="USER_CANCELED",
                      end=now_ms())
            return
        self._set(task, life="RUNNING", message="In run", start=now_ms())
        token = self.emu.task_token(run.principal)
        try:
            try:
                container = self._spawn(run, task, image, python_env, token)
            except OSError as e:
                result, message = "FAILED", f"Could not start the task: {e}"
            else:
                result, message = self._watch(task, container, deadline)
        finally:
            self.emu.revoke(token)
            self._remove(task)
        self._set(task, life="TERMINATING", message="Cleaning up")
        time.sleep(self.emu.terminating_s)
        self._set(task, life=TERMINAL, result=result, message=message, code=RESULT_CODES[result], end=now_ms())

    def _cluster_image(self, run: Run, task: TaskRun) -> str:
        """The image the task's compute runs: its new_cluster's docker_image (Databricks Container
        Services), else the runtime's (existing clusters and serverless compute: the runtime's)."""
        image = (task.spec.get("new_cluster") or {}).get("docker_image")
        if not image:
            return RUNTIME.image()
        cluster_id = f"{time.strftime('%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        return RUNTIME.cluster_image(image["url"], image.get("basic_auth"), cluster_id)

    @staticmethod
    def _environments(run: Run) -> dict[str, Any]:
        return {env["environment_key"]: env["spec"] for env in run.body.get("environments", [])}

    def _spawn(self, run: Run, task: TaskRun, image: str, python_env: str | None, token: str) -> Any:
        """The task's container: the python_file run by the image's /databricks/python3 as the runtime
        runs it (CAPTURE), /dbfs and /Volumes mounted where clusters have them, the cluster's
        spark_env_vars, and the workspace's address and a token of the submitter's (the runtime's own
        credentials, which MLflow and the SDK inside a task use)."""
        import docker

        spt = task.spec["spark_python_task"]
        python_file = spt["python_file"]
        if self.emu.before_task is not None:
            self.emu.before_task(task)
        # Serverless compute runs in standard access mode too; there, and where the DBFS root is
        # disabled, nothing reads the DBFS root: not the python_file, not a path under /dbfs.
        mode = "serverless" if "environment_key" in task.spec else \
            task.spec.get("new_cluster", {}).get("data_security_mode") or \
            self.emu.clusters.get(task.spec.get("existing_cluster_id", ""), "NONE")
        standard = mode in SHARED_ACCESS_MODES or mode == "serverless"
        if python_file.startswith("/") and not python_file.startswith("/Volumes/"):
            source = self.emu.workspace.file(python_file)  # workspace files: any access mode, serverless too
        elif python_file.startswith("/Volumes/"):
            source = self.emu.volumes.file(python_file)
        else:
            if standard:
                raise OSError(f"{python_file}: DBFS root is not supported on clusters in {mode} (standard) "
                              "access mode; use a Unity Catalog volume or workspace files")
            if self.emu.dbfs.root_disabled:
                raise OSError(f"{python_file}: Public DBFS root is disabled")
            source = self.emu.dbfs.file(dbfs_path(python_file[len("dbfs:"):], "python_file", False))
        if source is None:
            raise OSError(f"{python_file} no longer exists")
        driver, capture = task.folder / "driver", task.folder / "capture"
        for folder in (driver, capture):
            folder.mkdir(parents=True, exist_ok=True)
        script = Path(spt["python_file"]).name
        (driver / script).write_bytes(source)
        task.log.touch()
        mounts = {str(driver): {"bind": "/databricks/driver", "mode": "rw"},
                  str(capture): {"bind": "/databricks/capture", "mode": "rw"},
                  str(self.emu.volumes_root): {"bind": "/Volumes", "mode": "rw"}}
        if not (standard or self.emu.dbfs.root_disabled):
            mounts[str(self.emu.dbfs_root)] = {"bind": "/dbfs", "mode": "rw"}
        if python_env is not None:  # the cluster's libraries, installed into its /databricks/python3
            mounts[python_env] = {"bind": "/databricks/python3", "mode": "ro"}
        url = self.emu.task_url
        env = {**task.spec.get("new_cluster", {}).get("spark_env_vars", {}),
               "DATABRICKS_HOST": url, "DATABRICKS_TOKEN": token}
        values = {"job.run_id": str(run.run_id), "run_id": str(run.run_id), "task.run_id": str(task.run_id),
                  "job.id": str(run.job_id), "job_id": str(run.job_id), "task.name": task.key, "task_key": task.key,
                  "workspace.url": url, "workspace.id": str(self.emu.workspace_id)}
        parameters = [resolve_references(p, values) for p in spt.get("parameters", [])]
        command = [RUNTIME_PYTHON, "-c", CAPTURE, "/databricks/capture/log", "/databricks/capture/trace",
                   f"/databricks/driver/{script}", *parameters]
        client = RUNTIME.client()
        try:
            # init: SIGTERM reaches the Python process, whose own descriptors are the driver's log.
            container = client.containers.create(
                image, command, entrypoint=[], environment=env, volumes=mounts, working_dir="/databricks/driver",
                user=f"{os.getuid()}:{os.getgid()}", init=True, labels={TASK_LABEL: self.emu.id},
                name=f"databricks-task-{task.run_id}-{secrets.token_hex(3)}")
        except docker.errors.APIError as e:
            raise OSError(f"the task's container could not be made: {e.explanation or e}") from None
        self._set(task, container=container)
        try:
            container.start()
        except docker.errors.APIError as e:
            raise OSError(f"the task's container did not start: {e.explanation or e}") from None
        return container

    def _watch(self, task: TaskRun, container: Any, deadline: float) -> tuple[str, str]:
        ended, codes = threading.Event(), []

        def wait() -> None:
            try:
                codes.append(container.wait()["StatusCode"])
            except Exception as e:  # noqa: BLE001 - the engine lost it: said as the task's failure
                codes.append(f"the engine lost the task's container: {e}")
            ended.set()

        threading.Thread(target=wait, daemon=True).start()
        while not ended.wait(0.05):
            for event, result, message in ((task.cancel, "CANCELED", "Run cancelled"),
                                           (None, "TIMEDOUT", "Run timed out")):
                if (event.is_set() if event else time.monotonic() > deadline):
                    stop(container, ended, self.emu.kill_grace_s)
                    return result, message
        code = codes[0]
        if code == 0:
            return "SUCCESS", ""
        if isinstance(code, str):
            return "FAILED", code
        return "FAILED", f"Workload failed: the Python file exited with code {code}"

    def _remove(self, task: TaskRun) -> None:
        container, task.container = task.container, None
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)

    def shutdown(self) -> None:
        with self._lock:
            runs = list(self.runs.values())
        for run in runs:
            run.cancel.set()
            for task in run.tasks:
                task.cancel.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout=30)


def stop(container: Any, ended: threading.Event, grace_s: float) -> None:
    """SIGTERM to the task's process, SIGKILL if it is still there after ``grace_s``."""
    for sig, wait_s in (("SIGTERM", grace_s), ("SIGKILL", 10.0)):
        with contextlib.suppress(Exception):  # already gone
            container.kill(signal=sig)
        if ended.wait(wait_s):
            return


# ---- MLflow (the workspace's tracking server, REST API 2.0) --------------------------------------

RUN_STATUSES = {"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"}
KEY_VALUE = {"key": "string", "value": "string"}


class Mlflow:
    """The MLflow REST endpoints a client uses to create, tag and end runs, under /api/2.0/mlflow/, as
    a workspace serves them: experiment names are absolute workspace paths (there is no default
    experiment 0), params cannot change once logged, errors are MLflow's {"error_code", "message"}."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self._caller = threading.local()  # who the current request (this server thread's) is from
        self._ids = iter(range(1_000_000_000_000_001, 1 << 62))

    @property
    def principal(self) -> str:
        return getattr(self._caller, "name", "")

    @principal.setter
    def principal(self, name: str) -> None:
        self._caller.name = name

    def _experiment(self, experiment_id: Any) -> dict[str, Any]:
        experiment = self.experiments.get(str(experiment_id))
        if experiment is None:
            raise missing(f"No Experiment with id={experiment_id} exists")
        return experiment

    def _run(self, run_id: Any) -> dict[str, Any]:
        run = self.runs.get(str(run_id))
        if run is None:
            raise missing(f"Run '{run_id}' not found")
        return run

    def get_by_name(self, query: Mapping[str, str]) -> dict[str, Any]:
        name = query.get("experiment_name") or ""
        with self._lock:
            for experiment in self.experiments.values():
                if experiment["name"] == name:
                    return {"experiment": experiment}
        raise missing(f"Experiment '{name}' does not exist.")

    def get_experiment(self, query: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            return {"experiment": self._experiment(query.get("experiment_id"))}

    def create_experiment(self, body: Any) -> dict[str, Any]:
        fields(body, "experiments/create", {"name": "string", "artifact_location": "string", "tags": "array"},
               ["name"])
        name = body["name"]
        if not name.startswith("/"):
            raise invalid(f"Got an invalid experiment name '{name}'. An experiment name must be an absolute path "
                          "within the Databricks workspace, e.g. '/Users/<some-username>/my-experiment'.")
        with self._lock:
            if any(e["name"] == name for e in self.experiments.values()):
                raise exists(f"Node named '{name.rsplit('/', 1)[1]}' already exists")
            experiment_id = str(next(self._ids))
            self.experiments[experiment_id] = {
                "experiment_id": experiment_id, "name": name, "lifecycle_stage": "active",
                "artifact_location": body.get("artifact_location", f"dbfs:/databricks/mlflow-tracking/{experiment_id}"),
                "creation_time": now_ms(), "last_update_time": now_ms(), "tags": body.get("tags", [])}
        return {"experiment_id": experiment_id}

    def create_run(self, body: Any) -> dict[str, Any]:
        fields(body, "runs/create", {"experiment_id": "string", "user_id": "string", "run_name": "string",
                                     "start_time": "integer", "tags": "array"})
        tags = {}
        for i, tag in enumerate(body.get("tags", [])):
            fields(tag, f"runs/create.tags[{i}]", KEY_VALUE, ["key"])
            tags[tag["key"]] = tag.get("value", "")
        with self._lock:
            experiment = self._experiment(body.get("experiment_id", "0"))
            run_id = secrets.token_hex(16)
            if body.get("run_name"):
                tags["mlflow.runName"] = body["run_name"]
            self.runs[run_id] = {
                "info": {"run_id": run_id, "run_uuid": run_id, "experiment_id": experiment["experiment_id"],
                         "run_name": body.get("run_name", ""), "user_id": self.principal, "status": "RUNNING",
                         "start_time": body.get("start_time", now_ms()), "lifecycle_stage": "active",
                         "artifact_uri": f"{experiment['artifact_location']}/{run_id}/artifacts"},
                "data": {"params": {}, "tags": tags, "metrics": []}}
            return {"run": self._view(run_id)}

    def _view(self, run_id: str) -> dict[str, Any]:
        run = self.runs[run_id]
        data = {"params": [{"key": k, "value": v} for k, v in run["data"]["params"].items()],
                "tags": [{"key": k, "value": v} for k, v in run["data"]["tags"].items()],
                "metrics": list(run["data"]["metrics"])}
        return {"info": dict(run["info"]), "data": data}

    def get_run(self, query: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            self._run(query.get("run_id"))
            return {"run": self._view(str(query.get("run_id")))}

    def update_run(self, body: Any) -> dict[str, Any]:
        fields(body, "runs/update", {"run_id": "string", "run_uuid": "string", "status": "string",
                                     "end_time": "integer", "run_name": "string"})
        if body.get("status", "RUNNING") not in RUN_STATUSES:
            raise invalid(f"runs/update.status: expected one of {sorted(RUN_STATUSES)}")
        with self._lock:
            info = self._run(body.get("run_id") or body.get("run_uuid"))["info"]
            for name in ("status", "end_time", "run_name"):
                if name in body:
                    info[name] = body[name]
            return {"run_info": dict(info)}

    def set_tag(self, body: Any) -> dict[str, Any]:
        fields(body, "runs/set-tag", {"run_id": "string", "run_uuid": "string", **KEY_VALUE}, ["key", "value"])
        with self._lock:
            self._run(body.get("run_id") or body.get("run_uuid"))["data"]["tags"][body["key"]] = body["value"]
        return {}

    def log_metric(self, body: Any) -> dict[str, Any]:
        fields(body, "runs/log-metric", {"run_id": "string", "run_uuid": "string", "key": "string", "value": "any",
                                         "timestamp": "integer", "step": "integer", "model_id": "string",
                                         "dataset_name": "string", "dataset_digest": "string"},
               ["key", "value", "timestamp"])
        if isinstance(body["value"], bool) or not isinstance(body["value"], (int, float)):
            raise invalid("runs/log-metric.value: expected a number")
        metric = {k: body[k] for k in ("key", "value", "timestamp", "step") if k in body}
        with self._lock:
            self._run(body.get("run_id") or body.get("run_uuid"))["data"]["metrics"].append(metric)
        return {}

    def log_parameter(self, body: Any) -> dict[str, Any]:
        fields(body, "runs/log-parameter", {"run_id": "string", "run_uuid": "string", **KEY_VALUE}, ["key", "value"])
        run_id = body.get("run_id") or body.get("run_uuid") or ""
        return self.log_batch({"run_id": run_id, "params": [{"key": body["key"], "value": body["value"]}]})

    def log_batch(self, body: Any) -> dict[str, Any]:
        fields(body, "runs/log-batch", {"run_id": "string", "metrics": "array", "params": "array", "tags": "array"},
               ["run_id"])
        with self._lock:
            data = self._run(body["run_id"])["data"]
            for kind in ("params", "tags"):
                for i, item in enumerate(body.get(kind, [])):
                    fields(item, f"runs/log-batch.{kind}[{i}]", KEY_VALUE, ["key", "value"])
                    old = data["params"].get(item["key"]) if kind == "params" else None
                    if old is not None and old != item["value"]:
                        raise invalid(f"Changing param values is not allowed. Param with key='{item['key']}' was "
                                      f"already logged with value='{old}' for run ID='{body['run_id']}'. Attempted "
                                      f"logging new value '{item['value']}'.")
                    data[kind][item["key"]] = item["value"]
            data["metrics"].extend(body.get("metrics", []))
        return {}


# ---- OAuth (machine-to-machine): discovery and the token endpoint, as the SDKs and CLI call them --

OAUTH_TOKEN_S = 3600


def oauth_error(status: int, error: str, description: str) -> ApiError:
    """RFC 6749's error shape ({"error", "error_description"}), which the token endpoint answers."""
    return ApiError(status, error, description, {"error": error, "error_description": description})


class OAuth:
    """The workspace's OAuth endpoints. ``GET /.well-known/databricks-config`` (host metadata: where
    OIDC lives), ``GET /oidc/.well-known/oauth-authorization-server`` (the endpoints) and
    ``POST /oidc/v1/token``: client credentials (HTTP Basic ``client_id:client_secret``, form body
    ``grant_type=client_credentials&scope=all-apis``) -> a bearer access token for the REST API."""

    def __init__(self, emulator: DatabricksEmulator, client_id: str, client_secret: str):
        self.emu, self.client_id, self.client_secret = emulator, client_id, client_secret
        self._lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # access token -> expiry (monotonic)

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self.tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def host_metadata(self, method: str, headers: Any, raw: bytes) -> dict[str, Any]:
        self._method(method, "GET")
        return {"oidc_endpoint": f"{self.emu.url}/oidc", "workspace_id": str(self.emu.workspace_id)}

    def discovery(self, method: str, headers: Any, raw: bytes) -> dict[str, Any]:
        self._method(method, "GET")
        oidc = f"{self.emu.url}/oidc"
        return {"issuer": oidc, "authorization_endpoint": f"{oidc}/v1/authorize", "token_endpoint": f"{oidc}/v1/token",
                "jwks_uri": f"{oidc}/jwks.json", "grant_types_supported": ["client_credentials", "authorization_code",
                                                                           "refresh_token"],
                "response_types_supported": ["code"], "scopes_supported": ["all-apis", "offline_access"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"]}

    def token(self, method: str, headers: Any, raw: bytes) -> dict[str, Any]:
        self._method(method, "POST")
        if not (headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            raise oauth_error(400, "invalid_request", "the token request must be form-encoded")
        form = {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")  # client_secret_post
        scheme, _, given = (headers.get("Authorization") or "").partition(" ")
        if scheme == "Basic":  # client_secret_basic, what the SDKs send
            try:
                client_id, _, secret = base64.b64decode(given).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise oauth_error(400, "invalid_request", "malformed Basic authorization") from None
        if form.get("grant_type") != "client_credentials":
            raise oauth_error(400, "unsupported_grant_type", "only client_credentials is supported here")
        if client_id != self.client_id or not secrets.compare_digest(secret or "", self.client_secret):
            raise oauth_error(401, "invalid_client", "Client authentication failed")
        if "all-apis" not in (form.get("scope") or "").split():
            raise oauth_error(400, "invalid_scope", "scope must include all-apis")
        access = "eyJ" + secrets.token_hex(24)
        with self._lock:
            self.tokens[access] = time.monotonic() + OAUTH_TOKEN_S
        return {"access_token": access, "token_type": "Bearer", "expires_in": OAUTH_TOKEN_S, "scope": "all-apis"}

    @staticmethod
    def _method(method: str, expected: str) -> None:
        if method != expected:
            raise ApiError(405, "METHOD_NOT_ALLOWED", f"use {expected}")


LOGIN_PAGE = (b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>"
              b"<form action=\"/login\">Sign in to continue</form></body></html>")

# ---- HTTP -------------------------------------------------------------------------------------

Route = Callable[[Any], dict[str, Any]]
# Real Jobs API endpoints (2.0, 2.1, 2.2) the emulator does not implement: said as such (501), so a
# test failure explains itself; a misspelt path stays 404 ENDPOINT_NOT_FOUND, as in Databricks.
JOBS_ENDPOINTS = {
    "create", "list", "get", "reset", "update", "delete", "run-now", "runs/list", "runs/get", "runs/delete",
    "runs/export", "runs/repair", "runs/cancel", "runs/cancel-all", "runs/submit", "runs/get-output",
}


class DatabricksEmulator:
    """Start with ``start()``; point the client at ``url`` with ``token``; ``stop()`` when done.

    Inspect: ``submitted`` (accepted runs/submit bodies), ``requests`` ((method, path?query, status)),
    ``errors`` (tracebacks of emulator crashes: tests should find it empty), ``dbfs_file(path)``.
    """

    def __init__(self, token: str | None = None, pending_s: float = 0.2, terminating_s: float = 0.05,
                 kill_grace_s: float = 5.0, logs_limit: int = LOGS_LIMIT, accept_dbfs_scheme: bool = False,
                 handle_idle_s: float = HANDLE_IDLE_S, volumes: Iterable[str] = ("/Volumes/main/ml/dockrun",),
                 dbfs_root_disabled: bool = False):
        self.token = token or "dapi" + secrets.token_hex(16)
        self.user_name = "someone@example.com"  # whom the PAT belongs to (SCIM Me)
        # Existing clusters with an access mode (cluster ID -> data_security_mode); any other ID is
        # taken as a cluster without one.
        self.clusters: dict[str, str] = {}
        # A service principal of this workspace (OAuth M2M): its ID and secret, for the token endpoint.
        self.client_id, self.client_secret = secrets.token_hex(8) + "-sp", "dose" + secrets.token_hex(16)
        self.workspace_id = secrets.randbelow(1 << 50)
        self.oauth = OAuth(self, self.client_id, self.client_secret)
        # Every Authorization header received (tests check that no credential went to the wrong host).
        self.authorizations: list[str] = []
        self.pending_s, self.terminating_s, self.kill_grace_s = pending_s, terminating_s, kill_grace_s
        self.logs_limit = logs_limit
        self.page_size = 100  # Jobs API 2.2: elements of an array property per runs/get page
        self.base = Path(tempfile.mkdtemp(prefix="databricks-emulator-"))
        self.dbfs_root, self.work = self.base / "dbfs", self.base / "work"
        for folder in (self.dbfs_root, self.work, self.base / "staging"):
            folder.mkdir()
        self.dbfs = Dbfs(self.dbfs_root, self.base / "staging", accept_dbfs_scheme, handle_idle_s)
        self.dbfs.root_disabled = dbfs_root_disabled
        self.uc_root = self.base / "uc"
        self.volumes_root = self.uc_root / "Volumes"  # what clusters mount at /Volumes
        self.volumes_root.mkdir(parents=True)
        self.volumes = Volumes(self.uc_root, self.base / "staging")
        for volume in volumes:
            self.volumes.create(volume)
        self.workspace = Workspace()
        self.jobs = Jobs(self)
        self.mlflow = Mlflow()
        # Called with each task run just before the cluster reads its python_file: a test's stand-in
        # for what another workspace user does between the submit and the task's start.
        self.before_task: Callable[[TaskRun], None] | None = None
        self.submitted: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, int]] = []
        self.errors: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        # What task containers reach: the same API on the docker bridge's gateway, started with the first task.
        self._task_server: ThreadingHTTPServer | None = None
        self.id = secrets.token_hex(8)  # labels this emulator's task containers
        # Tokens the "runtime" gives running tasks (token -> the principal who submitted the run).
        self._task_tokens: dict[str, str] = {}
        self._faults_lock = threading.Lock()
        self._faults: dict[str, list[tuple[Any, ...]]] = {}
        self._rewrites: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self._routes: dict[tuple[str, str], tuple[Route, set[str] | None]] = {
            # (method, path) -> (handler, allowed query parameters, or None for a JSON body)
            ("POST", "/api/2.0/dbfs/put"): (self.dbfs.put, None),
            ("POST", "/api/2.0/dbfs/create"): (self.dbfs.create, None),
            ("POST", "/api/2.0/dbfs/add-block"): (self.dbfs.add_block, None),
            ("POST", "/api/2.0/dbfs/close"): (self.dbfs.close, None),
            ("POST", "/api/2.0/dbfs/mkdirs"): (self.dbfs.mkdirs, None),
            ("POST", "/api/2.0/dbfs/delete"): (self.dbfs.delete, None),
            ("POST", "/api/2.0/dbfs/move"): (self.dbfs.move, None),
            ("GET", "/api/2.0/dbfs/get-status"): (self.dbfs.get_status, {"path"}),
            ("GET", "/api/2.0/dbfs/list"): (self.dbfs.list, {"path"}),
            ("GET", "/api/2.0/dbfs/read"): (self.dbfs.read, {"path", "offset", "length"}),
            ("POST", "/api/2.1/jobs/runs/submit"): (self.jobs.submit, None),
            # Jobs API 2.2: the same one-time runs; runs/get pages its arrays.
            ("POST", "/api/2.2/jobs/runs/submit"): (self.jobs.submit, None),
            ("POST", "/api/2.2/jobs/runs/cancel"): (self.jobs.cancel, None),
            ("GET", "/api/2.2/jobs/runs/get"): (
                self.jobs.get_2_2, {"run_id", "include_history", "include_resolved_values", "page_token"}),
            ("GET", "/api/2.2/jobs/runs/get-output"): (self.jobs.get_output, {"run_id"}),
            ("POST", "/api/2.1/jobs/runs/cancel"): (self.jobs.cancel, None),
            ("GET", "/api/2.1/jobs/runs/get"): (
                self.jobs.get, {"run_id", "include_history", "include_resolved_values", "page_token"}),
            ("GET", "/api/2.1/jobs/runs/get-output"): (self.jobs.get_output, {"run_id"}),
            ("GET", "/api/2.0/mlflow/experiments/get-by-name"): (self.mlflow.get_by_name, {"experiment_name"}),
            ("GET", "/api/2.0/mlflow/experiments/get"): (self.mlflow.get_experiment, {"experiment_id"}),
            ("POST", "/api/2.0/mlflow/experiments/create"): (self.mlflow.create_experiment, None),
            ("POST", "/api/2.0/mlflow/runs/create"): (self.mlflow.create_run, None),
            ("GET", "/api/2.0/mlflow/runs/get"): (self.mlflow.get_run, {"run_id", "run_uuid"}),
            ("POST", "/api/2.0/mlflow/runs/update"): (self.mlflow.update_run, None),
            ("POST", "/api/2.0/mlflow/runs/set-tag"): (self.mlflow.set_tag, None),
            ("POST", "/api/2.0/mlflow/runs/log-batch"): (self.mlflow.log_batch, None),
            ("POST", "/api/2.0/mlflow/runs/log-metric"): (self.mlflow.log_metric, None),
            ("POST", "/api/2.0/mlflow/runs/log-parameter"): (self.mlflow.log_parameter, None),
        }

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> DatabricksEmulator:
        self._server = self._serve("127.0.0.1")
        return self

    def _serve(self, address: str) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer((address, 0), _handler_class(self))
        server.daemon_threads = True
        # A short poll interval: shutdown() waits for it, and every test stops an emulator.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                         name="databricks-emulator", daemon=True).start()
        return server

    @property
    def task_url(self) -> str:
        """The workspace as a task's container reaches it: through the docker bridge's gateway only."""
        gateway = RUNTIME.gateway()
        with self._faults_lock:
            if self._task_server is None:
                self._task_server = self._serve(gateway)
            host, port = self._task_server.server_address[:2]
        return f"http://{host}:{port}"

    def task_token(self, principal: str) -> str:
        """A token acting as ``principal`` while one task runs (revoke it when the task ends)."""
        token = "dkea" + secrets.token_hex(16)
        with self._faults_lock:
            self._task_tokens[token] = principal
        return token

    def revoke(self, token: str) -> None:
        with self._faults_lock:
            self._task_tokens.pop(token, None)

    @property
    def caller(self) -> str:
        """Who the request this server thread is answering comes from."""
        return self.mlflow.principal

    def stop(self) -> None:
        """Stop serving, stop and remove every task container, remove the emulator's files."""
        for server in (self._server, self._task_server):
            if server is not None:
                server.shutdown()
                server.server_close()
        self._server = self._task_server = None
        self.jobs.shutdown()
        if self.jobs.task_runs:  # tasks ran: containers were made
            self._remove_containers()
        shutil.rmtree(self.base, ignore_errors=True)

    def _remove_containers(self) -> None:
        """Any container of this emulator's still there (a task thread that did not end in time)."""
        client = RUNTIME.client()
        for container in client.containers.list(all=True, filters={"label": f"{TASK_LABEL}={self.id}"}):
            with contextlib.suppress(Exception):
                container.remove(force=True)

    def dbfs_file(self, path: str) -> bytes | None:
        """The bytes of a DBFS file ("/x", "dbfs:/x" or "/dbfs/x"), or None when there is none."""
        if path.startswith("dbfs:"):
            path = path[len("dbfs:"):]
        elif path.startswith("/dbfs/"):
            path = path[len("/dbfs"):]
        return self.dbfs.file(dbfs_path(path, "path", accept_dbfs_scheme=True))

    def volume_file(self, path: str) -> bytes | None:
        """The bytes of a file in a volume ("/Volumes/..."), or None when there is none."""
        return self.volumes.file(self.volumes.path(path))

    # fault injection: each arms the next request(s) to one path ("/api/2.0/dbfs/add-block"), or to
    # one method on it ("PUT /api/2.0/fs/files/Volumes/...": a HEAD to the same file is not touched)
    def fail_next(self, path: str, status: int, retry_after: float | None = None, times: int = 1) -> None:
        """Refuse the next ``times`` requests to ``path`` with ``status`` (not applied), as a busy or
        failing workspace does: 429 REQUEST_LIMIT_EXCEEDED, 503 TEMPORARILY_UNAVAILABLE, else
        INTERNAL_ERROR; ``retry_after`` (seconds) is sent as the Retry-After header."""
        self._arm(path, ("fail", status, retry_after), times)

    def drop_reply(self, path: str, times: int = 1) -> None:
        """Apply the next ``times`` requests to ``path``, then close the connection unanswered: the
        client cannot tell whether its request took effect."""
        self._arm(path, ("drop",), times)

    def html_next(self, path: str, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``path`` with 200 and an HTML login page (what an
        SSO proxy in front of a private-link workspace sends), without applying them."""
        self._arm(path, ("html",), times)

    def rewrite(self, path: str, change: Callable[[dict[str, Any]], dict[str, Any]] | None) -> None:
        """Pass every successful JSON answer for ``path`` through ``change`` (None: stop), e.g. to
        report states a newer Databricks may send."""
        with self._faults_lock:
            if change is None:
                self._rewrites.pop(path, None)
            else:
                self._rewrites[path] = change

    def _arm(self, path: str, fault: tuple[Any, ...], times: int) -> None:
        with self._faults_lock:
            self._faults.setdefault(path, []).extend([fault] * times)

    def _fault(self, path: str, method: str) -> tuple[Any, ...] | None:
        """The next fault armed for ``METHOD path``, else for ``path`` (any method)."""
        with self._faults_lock:
            for key in (f"{method} {urlsplit(path).path}", urlsplit(path).path):
                queue = self._faults.get(key)
                if queue:
                    return queue.pop(0)
            return None

    # request handling
    def serve(self, req: BaseHTTPRequestHandler, method: str) -> None:
        fault = self._fault(req.path, method)
        headers: dict[str, str] = {}
        if fault is not None and fault[0] == "html":
            req.rfile.read(int(req.headers.get("Content-Length") or 0))
            self.requests.append((method, req.path, 200))
            self._send(req, 200, LOGIN_PAGE, "text/html; charset=utf-8")
            return
        try:
            if fault is not None and fault[0] == "fail":
                req.rfile.read(int(req.headers.get("Content-Length") or 0))
                _, status, retry_after = fault
                if retry_after is not None:
                    headers["Retry-After"] = str(retry_after)
                code = {429: "REQUEST_LIMIT_EXCEEDED", 503: "TEMPORARILY_UNAVAILABLE"}.get(status, "INTERNAL_ERROR")
                raise ApiError(status, code, f"injected {status} for {urlsplit(req.path).path}")
            status, answer = 200, self._answer(req, method)
            change = self._rewrites.get(urlsplit(req.path).path)
            if change is not None and not isinstance(answer, Reply):
                answer = change(answer)
        except ApiError as e:
            status, answer = e.status, e.body or {"error_code": e.code, "message": e.message}
            if e.status == 403 and e.code == "403":  # the published body of a refused token: a number
                answer["error_code"] = 403
        except Exception:  # an emulator bug: recorded for the tests, answered as Databricks would
            self.errors.append(traceback.format_exc())
            status, answer = 500, {"error_code": "INTERNAL_ERROR", "message": "emulator error (see .errors)"}
        if fault is not None and fault[0] == "drop":
            self.requests.append((method, req.path, 0))  # 0: applied, never answered
            req.close_connection = True
            return
        if isinstance(answer, Reply):
            status = answer.status
            self.requests.append((method, req.path, status))
            self._send(req, status, answer.data, answer.kind, {**headers, **answer.headers}, head=method == "HEAD")
            return
        self.requests.append((method, req.path, status))
        self._send(req, status, json.dumps(answer).encode(), "application/json", headers, head=method == "HEAD")

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, data: bytes, kind: str,
              headers: Mapping[str, str] | None = None, head: bool = False) -> None:
        """The answer; a HEAD gets the headers alone (its Content-Length may describe the file)."""
        req.send_response(status)
        req.send_header("Content-Type", kind)
        headers = dict(headers or {})
        req.send_header("Content-Length", headers.pop("Content-Length", str(len(data))))
        for name, value in headers.items():
            req.send_header(name, value)
        req.end_headers()
        if not head and status != 204:
            req.wfile.write(data)

    def _answer(self, req: BaseHTTPRequestHandler, method: str) -> dict[str, Any] | Reply:
        raw = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        if req.headers.get("Authorization"):
            self.authorizations.append(req.headers["Authorization"])
        parts = urlsplit(req.path)
        public = {"/.well-known/databricks-config": self.oauth.host_metadata,
                  "/oidc/.well-known/oauth-authorization-server": self.oauth.discovery,
                  "/oidc/v1/token": self.oauth.token}.get(parts.path)
        if public is not None:  # discovery and the token endpoint take no bearer token
            return public(method, req.headers, raw)
        principal = self._authenticate(req.headers.get("Authorization"))
        for prefix, files in (("/api/2.0/fs/files/", self.volumes.files),
                              ("/api/2.0/fs/directories/", self.volumes.directories)):
            if parts.path.startswith(prefix):
                return files(method, parts.path[len(prefix) - 1:], self._query(parts.query, {"overwrite"}), raw)
        if parts.path.startswith("/api/2.0/workspace/"):
            endpoint = parts.path[len("/api/2.0/workspace/"):]
            query = self._query(parts.query, {"path", "format", "direct_download"} if method == "GET" else set())
            return self.workspace.handle(method, endpoint, query, self._body(raw) if method == "POST" else {},
                                         principal)
        if (method, parts.path) == ("GET", "/api/2.0/preview/scim/v2/Me"):
            return {"id": str(abs(hash(principal)) % 10**15), "userName": principal, "active": True,
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}
        self.mlflow.principal = principal
        route = self._routes.get((method, parts.path))
        if route is None:
            raise self._no_route(method, parts.path)
        handler, allowed = route
        query = self._query(parts.query, allowed or set())
        if allowed is None:
            return handler(self._body(raw))
        return handler(query)

    def _authenticate(self, header: str | None) -> str:
        """Who the bearer token belongs to: the PAT's user, or the service principal (its application ID)."""
        scheme, _, given = (header or "").partition(" ")
        if scheme != "Bearer" or not given.strip():
            raise ApiError(401, "UNAUTHENTICATED", "a valid bearer token is required (Authorization: Bearer <token>)")
        given = given.strip()
        with self._faults_lock:
            task_principal = self._task_tokens.get(given)
        if task_principal is not None:
            return task_principal
        if not (secrets.compare_digest(given, self.token) or self.oauth.valid(given)):
            # What Databricks answers for a wrong or expired token: 403, and a number as error_code.
            raise ApiError(403, "403", "Invalid access token.")
        return self.user_name if secrets.compare_digest(given, self.token) else self.client_id

    def _no_route(self, method: str, path: str) -> ApiError:
        # Databricks routes on method and path together: a wrong method finds no API either.
        jobs = re.fullmatch(r"/api/2\.[0-2]/jobs/(.+)", path)
        if jobs and jobs.group(1) in JOBS_ENDPOINTS and not any(p == path for _, p in self._routes):
            return ApiError(501, "NOT_IMPLEMENTED", f"{method} {path}: not implemented by this emulator")
        return ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    @staticmethod
    def _query(text: str, allowed: set[str]) -> dict[str, str]:
        values = parse_qs(text, keep_blank_values=True)
        unknown = sorted(set(values) - allowed)
        if unknown:  # strict: Databricks ignores unknown query parameters; a typo should not pass here
            raise invalid(f"unknown query parameter(s): {', '.join(unknown)}")
        if any(len(v) > 1 for v in values.values()):
            raise invalid("a query parameter is given more than once")
        return {k: v[0] for k, v in values.items()}

    @staticmethod
    def _body(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw or b"")
        except ValueError:
            raise ApiError(400, "MALFORMED_REQUEST", "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "MALFORMED_REQUEST", "the request body must be a JSON object")
        return body


def _handler_class(emulator: DatabricksEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "DatabricksEmulator/1.0"

        def do_GET(self) -> None:  # noqa: N802 - the http.server naming
            emulator.serve(self, "GET")

        def do_POST(self) -> None:  # noqa: N802
            emulator.serve(self, "POST")

        def do_PUT(self) -> None:  # noqa: N802
            emulator.serve(self, "PUT")

        def do_PATCH(self) -> None:  # noqa: N802
            emulator.serve(self, "PATCH")

        def do_DELETE(self) -> None:  # noqa: N802
            emulator.serve(self, "DELETE")

        def do_HEAD(self) -> None:  # noqa: N802
            emulator.serve(self, "HEAD")

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def databricks(databricks_runtime: str) -> Iterator[DatabricksEmulator]:
    """A started emulator with a random token; stopped (task containers removed) after the test.
    ``databricks_runtime`` (tests/conftest.py): the engine and the runtime image, or unavailable()."""
    emulator = DatabricksEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()
