"""A lean engine client for the warm path: the Docker Engine API over the local unix socket with
the standard library (http.client), no docker-py.

Importing docker-py (requests, urllib3, and paramiko when installed) costs more than everything
else a warm run does in Python, and its client asks the engine for its version and pings it before
the first real call. A warm local run needs only a few calls: inspect an image, create, attach,
start, wait, remove (as `docker run` does). ``LeanDocker`` makes those itself and is a ``Docker``
for everything else: builds, pulls, pushes and copies go through docker-py, imported on first use.
``connect`` picks it only for an engine on a local unix socket (``DOCKER_HOST=unix://...`` or
docker's default with no context), decided from settings alone; any other engine (tcp, ssh, a
context) gets docker-py's ``Docker`` as before.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import struct
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from ..errors import ConfigError, ExecutionError
from .address import local_socket
from .client import ContainerSpec, Docker

TIMEOUT_S = 120  # as docker-py's client, for every call but the ones that wait on the container
# -A options (docker-py names) the lean create sends itself; any other goes through docker-py's.
_HOST_OPTIONS = {"network_mode": "NetworkMode"}


class EngineError(ExecutionError):
    """The engine answered a call with an error (status and its one-line message)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def connect(environ: Mapping[str, str] | None = None, ping: bool = True) -> Docker:
    """The engine client for these settings: the lean one on a local unix socket, docker-py's
    otherwise. Either raises ConfigError if the engine cannot be reached; without ``ping`` (a
    supervisor, whose driver has just used the engine) the lean one finds out at its first call."""
    environ = os.environ if environ is None else environ
    path = local_socket(environ)
    return LeanDocker(path, environ, ping) if path else Docker(environ=environ)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class LeanDocker(Docker):
    """``Docker`` with the warm path's calls made over the unix socket directly; every other
    method is ``Docker``'s, on a docker-py client made on first use."""

    remote = False  # a local socket's engine sees this machine's files

    def __init__(self, path: str, environ: Mapping[str, str] | None = None, ping: bool = True):  # no super(): lazy
        self.path = path
        self._environ = dict(os.environ if environ is None else environ)
        self._docker_py: Any = None
        if not ping:
            return
        try:
            self._call("GET", "/_ping")
        except (OSError, http.client.HTTPException, EngineError) as e:
            raise ConfigError(f"cannot reach the Docker engine (DOCKER_HOST): {_reason(e)}") from None

    @property
    def client(self) -> Any:  # docker-py, for what the lean client does not do itself
        if self._docker_py is None:
            self._docker_py = Docker(environ=self._environ).client
        return self._docker_py

    # ---- the calls ------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, timeout: float | None = TIMEOUT_S,
              ok: tuple[int, ...] = ()) -> tuple[int, bytes]:
        """One request on its own connection (calls may come from several threads: a cancel
        stops the container while the stream is read); the status and body. An error status not
        in ``ok`` raises EngineError with the engine's message."""
        conn = _UnixConnection(self.path, timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        if resp.status >= 400 and resp.status not in ok:
            raise EngineError(resp.status, _message(payload, resp.status))
        return resp.status, payload

    def _json(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> tuple[int, Any]:
        status, payload = self._call(method, path, body, ok=ok)
        return status, json.loads(payload) if payload.strip() else None

    # ---- images ---------------------------------------------------------------------------
    def _inspect_image(self, ref: str) -> dict[str, Any] | None:
        status, info = self._json("GET", f"/images/{_q(ref)}/json", ok=(404,))
        return None if status == 404 else info

    def image_id(self, ref: str) -> str | None:
        info = self._inspect_image(ref)
        return info["Id"] if info else None

    def _image_info(self, ref: str) -> dict[str, Any] | None:  # for Docker.image_digest
        try:
            return self._inspect_image(ref)
        except EngineError:
            return {}

    # ---- containers -----------------------------------------------------------------------
    def create(self, spec: ContainerSpec) -> Any:
        """As ``Docker.create`` (the same request docker-py sends); options it does not know go
        through docker-py's create."""
        if set(spec.options) - set(_HOST_OPTIONS) or spec.options.get("detach", True) is False:
            return super().create(spec)
        host: dict[str, Any] = {"NetworkMode": spec.options.get("network_mode") or "default", "Init": True,
                                "Mounts": [{"Target": c, "Source": h, "Type": "bind", "ReadOnly": m == "ro"}
                                           for h, c, m in spec.mounts]}
        body = {
            "Hostname": None, "Domainname": None, "ExposedPorts": None, "User": spec.user, "Tty": False,
            "OpenStdin": False, "StdinOnce": False, "AttachStdin": False, "AttachStdout": False,
            "AttachStderr": False, "Env": [f"{k}={v}" for k, v in spec.environment.items()] or None,
            "Cmd": list(spec.command), "Image": spec.image, "Volumes": None, "NetworkDisabled": False,
            "Entrypoint": None, "WorkingDir": spec.working_dir, "HostConfig": host, "NetworkingConfig": None,
            "MacAddress": None, "Labels": dict(spec.labels), "StopSignal": None, "Healthcheck": None,
            "StopTimeout": None, "Runtime": None,
        }
        try:
            _, created = self._json("POST", "/containers/create?" + urlencode({"name": spec.name}), body)
        except EngineError as e:
            raise ConfigError(f"cannot create the run's container: {e}") from None
        return LeanContainer(self, created["Id"])

    def get_container(self, name_or_id: str) -> LeanContainer | None:
        status, attrs = self._json("GET", f"/containers/{_q(name_or_id)}/json", ok=(404,))
        return None if status == 404 else LeanContainer(self, attrs["Id"], attrs)

    def stream_output(self, container: Any) -> Iterator[tuple[bytes | None, bytes | None]]:
        """As ``Docker.stream_output``: attached before start, no replay; (stdout, stderr) chunks.
        The engine answers once it has subscribed the stream, so this returns after that."""
        tty = bool((getattr(container, "attrs", None) or {}).get("Config", {}).get("Tty"))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(TIMEOUT_S)
            sock.connect(self.path)
            sock.sendall((f"POST /containers/{_q(container.id)}/attach?logs=0&stdout=1&stderr=1&stream=1 "
                          "HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: Upgrade\r\n"
                          "Upgrade: tcp\r\n\r\n").encode())
            head, rest = _read_head(sock)
            status = int(head.split(b" ", 2)[1])
            if status not in (101, 200):
                raise EngineError(status, _message(rest, status))
            sock.settimeout(None)  # the stream lasts as long as the container
        except BaseException:
            sock.close()
            raise
        return _frames(sock, rest, tty)

    def stop(self, container: Any, timeout: int = 10) -> None:
        """SIGTERM, ``timeout`` seconds of grace, SIGKILL. Quiet if it is already gone."""
        try:
            self._call("POST", f"/containers/{_q(container.id)}/stop?t={int(timeout)}", timeout=TIMEOUT_S + timeout)
        except (EngineError, OSError, http.client.HTTPException):
            pass

    def remove(self, container: Any) -> None:
        try:
            self._call("DELETE", f"/containers/{_q(container.id)}?v=False&link=False&force=True")
        except (EngineError, OSError, http.client.HTTPException):
            pass


class LeanContainer:
    """The part of docker-py's Container that runs use: id, attrs, start, wait, logs, stop, remove."""

    def __init__(self, engine: LeanDocker, container_id: str, attrs: dict[str, Any] | None = None):
        self._engine = engine
        self.id = container_id
        self._attrs = attrs

    @property
    def attrs(self) -> dict[str, Any]:
        if self._attrs is None:
            self.reload()
        return self._attrs or {}

    def reload(self) -> None:
        _, self._attrs = self._engine._json("GET", f"/containers/{_q(self.id)}/json")

    def start(self) -> None:
        self._engine._call("POST", f"/containers/{_q(self.id)}/start")

    def wait(self) -> dict[str, Any]:
        _, payload = self._engine._call("POST", f"/containers/{_q(self.id)}/wait", timeout=None)
        return json.loads(payload)

    def logs(self, stdout: bool = True, stderr: bool = True) -> bytes:
        query = urlencode({"stderr": int(stderr), "stdout": int(stdout), "timestamps": 0, "follow": 0, "tail": "all"})
        _, payload = self._engine._call("GET", f"/containers/{_q(self.id)}/logs?{query}")
        if (self.attrs.get("Config") or {}).get("Tty"):
            return payload
        return b"".join(chunk for pair in _demux(payload) for chunk in pair if chunk)

    def stop(self, timeout: int = 10) -> None:
        self._engine.stop(self, timeout)

    def remove(self, force: bool = True) -> None:
        self._engine.remove(self)

    def __repr__(self) -> str:
        return f"<LeanContainer: {self.id[:12]}>"


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The response's status line and headers, and whatever of the stream came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise EngineError(0, "the engine closed the connection while attaching")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _frames(sock: socket.socket, buffered: bytes, tty: bool) -> Iterator[tuple[bytes | None, bytes | None]]:
    """The attach stream as docker-py's demux gives it: (stdout, None) or (None, stderr) per
    frame; a TTY's stream is not multiplexed, so all of it is stdout."""
    buf = bytearray(buffered)
    try:
        while True:
            if tty:
                if buf:
                    yield bytes(buf), None
                    buf.clear()
            else:
                while len(buf) >= 8:
                    kind, size = buf[0], struct.unpack(">I", buf[4:8])[0]
                    if len(buf) < 8 + size:
                        break
                    data = bytes(buf[8:8 + size])
                    del buf[:8 + size]
                    yield (None, data) if kind == 2 else (data, None)
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
    finally:
        sock.close()


def _demux(payload: bytes) -> Iterator[tuple[bytes | None, bytes | None]]:
    i = 0
    while i + 8 <= len(payload):
        kind, size = payload[i], struct.unpack(">I", payload[i + 4:i + 8])[0]
        data = payload[i + 8:i + 8 + size]
        i += 8 + size
        yield (None, data) if kind == 2 else (data, None)


def _q(part: str) -> str:
    return quote(part, safe="/:")  # as docker-py quotes names in paths


def _message(payload: bytes, status: int) -> str:
    """The engine's error message on one line (it answers {"message": ...})."""
    try:
        text = str(json.loads(payload).get("message") or "")
    except (ValueError, AttributeError):
        text = payload.decode("utf-8", "replace")
    text = text.strip()
    return text.splitlines()[0] if text else f"the engine answered {status}"


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


