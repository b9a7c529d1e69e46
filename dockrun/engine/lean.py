"""A lean engine client for the warm path: the Docker Engine API over the local unix socket with
a few lines of HTTP/1.1 on a plain socket, no docker-py and no http.client.

Importing docker-py (requests, urllib3, and paramiko when installed) costs more than everything
else a warm run does in Python, and its client asks the engine for its version and pings it before
the first real call. A warm local run needs only a few calls: inspect an image, create, attach,
start, wait, remove (as `docker run` does). ``LeanDocker`` makes those itself, and builds: a
code-only change builds only the code layer, and docker-py's import, version check and ping were
about 0.1 s of the 0.8 s such a rerun took over a warm one (bench/build_times.py --code-only). It
is a ``Docker`` for everything else: pulls, pushes and copies go through docker-py, imported on
first use. ``connect`` picks it only for an engine on a local unix socket (``DOCKER_HOST=unix://...`` or
docker's default with no context), decided from settings alone; any other engine (tcp, ssh, a
context) gets docker-py's ``Docker`` as before.

http.client is not used because it imports email's parser and ssl (20 ms, a tenth of a warm run's
own cost) to read headers this client needs two of; each call is one request on its own
connection, ``Connection: close``, so a response is read to its length, its chunks, or EOF.
"""
from __future__ import annotations

import codecs
import json
import os
import struct
from _socket import AF_UNIX, SOCK_STREAM
from _socket import socket as RawSocket  # socket's C half: its Python half costs 2 ms (enums)
from collections.abc import Iterator, Mapping
from typing import IO, Any, Callable
from urllib.parse import quote, urlencode

from ..errors import BuildError, ConfigError, ExecutionError
from .address import docker_config_file, local_socket
from .client import ContainerSpec, Docker, _fail, follow_build

TIMEOUT_S = 120  # as docker-py's client, for every call but the ones that wait on the container
# -A options (docker-py names) the lean create sends itself; any other goes through docker-py's.
_HOST_OPTIONS = {"network_mode": "NetworkMode"}
# docker config.json keys that make docker-py's build send more than the lean one (credentials, headers)
_SENT_BY_DOCKER_PY = ("auths", "credsStore", "credHelpers", "HttpHeaders")


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
        except (OSError, EngineError) as e:
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
        data = b"" if body is None else json.dumps(body).encode()
        status, payload = _exchange(self.path, method, path, data, timeout)
        if status >= 400 and status not in ok:
            raise EngineError(status, _message(payload, status))
        return status, payload

    def _json(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> tuple[int, Any]:
        status, payload = self._call(method, path, body, ok=ok)
        return status, json.loads(payload) if payload.strip() else None

    def runtimes(self) -> dict[str, Any]:
        _, info = self._json("GET", "/info")
        return dict((info or {}).get("Runtimes") or {})

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

    # ---- builds ---------------------------------------------------------------------------
    def build(self, context: IO[bytes], tag: str, buildargs: dict[str, str], labels: Mapping[str, str],
              log: Callable[[str], None]) -> str:
        """As ``Docker.build``: the request docker-py sends (POST /build, the tar context as the body,
        the proxies of docker's config.json as build args), its output to ``log`` and its errors
        through the same ``follow_build``. A docker config with registry credentials (docker-py sends
        them with every build, for a FROM it must pull) or extra HTTP headers goes through docker-py's."""
        config = _docker_config(self._environ)
        if config is None:
            return super().build(context, tag, buildargs, labels, log)
        args = dict(buildargs)
        for name, value in _proxy_args(config, self._environ.get("DOCKER_HOST") or None).items():
            args.setdefault(name, value)
        query = {"t": tag, "q": False, "nocache": False, "rm": True, "forcerm": True, "pull": False}
        if args:
            query["buildargs"] = json.dumps(args)
        if labels:
            query["labels"] = json.dumps(dict(labels))
        chunks = _post_stream(self.path, "/build?" + urlencode(query), context)
        try:
            image_id = follow_build(_json_messages(chunks), tag, log)
        except EngineError as e:
            raise BuildError(f"building {tag} failed: {e}") from None
        finally:
            chunks.close()  # now, not when the error's traceback goes: a build stopped early is cancelled
        return image_id or self.image_id(tag) or _fail(tag)

    # ---- build containers (images/cached_build.py), as Docker's but over the socket ----------
    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        try:
            self._json("POST", "/volumes/create", {"Name": name, "Labels": dict(labels)})
        except EngineError as e:
            raise BuildError(f"cannot create the volume {name}: {e}") from None

    def image_config(self, ref: str) -> dict[str, Any]:
        info = self._inspect_image(ref)
        if info is None:
            raise BuildError(f"image {ref} is not on the engine")
        return info.get("Config") or {}

    def _build_call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except (EngineError, OSError) as e:
            raise BuildError(f"{what} failed: {_reason(e)}") from None

    def _create_build(self, body: dict[str, Any], name: str) -> str:
        return self._json("POST", "/containers/create?" + urlencode({"name": name}), body)[1]["Id"]

    def _put_inputs(self, cid: str, data: bytes) -> None:
        status, payload = _exchange(self.path, "PUT", f"/containers/{_q(cid)}/archive?path=/tmp/dockrun/in",
                                    data, TIMEOUT_S)
        if status >= 400:
            raise EngineError(status, _message(payload, status))

    def _put_files(self, cid: str, path: str, files: IO[bytes]) -> None:
        for _ in _post_stream(self.path, f"/containers/{_q(cid)}/archive?" + urlencode({"path": path}), files, "PUT"):
            pass  # an error status raises; a success has nothing to say

    def _start_and_follow(self, cid: str) -> Iterator[bytes]:
        frames = self.stream_output(LeanContainer(self, cid, {"Config": {"Tty": False}}))  # attached before start
        try:
            self._call("POST", f"/containers/{_q(cid)}/start")
        except BaseException:
            frames.close()
            raise
        return (out or err or b"" for out, err in frames)

    def _wait_exit(self, cid: str) -> int:
        _, payload = self._call("POST", f"/containers/{_q(cid)}/wait", timeout=None)
        return int(json.loads(payload).get("StatusCode", 1))

    def commit(self, container_id: str, ref: str, config: Mapping[str, Any]) -> str:
        repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        query = urlencode({"container": container_id, "repo": repo, "tag": tag})
        try:
            return self._json("POST", f"/commit?{query}", dict(config))[1]["Id"]
        except EngineError as e:
            raise BuildError(f"committing {ref} failed: {e}") from None

    def remove_build_container(self, container_id: str) -> None:
        try:
            self._call("DELETE", f"/containers/{_q(container_id)}?v=1&force=1")
        except (EngineError, OSError):
            pass

    def discard_build_container(self, container_id: str) -> None:
        """Ask for the removal and go: deleting a container's copy of an environment takes seconds
        on a busy engine, and the engine finishes a removal whether or not its caller waits (the
        request is sent whole before this returns)."""
        data = (f"DELETE /containers/{_q(container_id)}?v=1&force=1 HTTP/1.1\r\nHost: localhost\r\n"
                "Content-Length: 0\r\n\r\n").encode()
        sock = _unix_socket()
        try:
            sock.settimeout(TIMEOUT_S)
            sock.connect(self.path)
            sock.sendall(data)  # whole in the socket's buffer: the engine reads it after the close too
        except OSError:
            self.remove_build_container(container_id)
        finally:
            sock.close()

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
        sock = _unix_socket()
        try:
            sock.settimeout(TIMEOUT_S)
            sock.connect(self.path)
            sock.sendall((f"POST /containers/{_q(container.id)}/attach?logs=0&stdout=1&stderr=1&stream=1 "
                          "HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: Upgrade\r\n"
                          "Upgrade: tcp\r\n\r\n").encode())
            head, rest = _read_head(sock)
            status, _ = _parse_head(head)
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
        except (EngineError, OSError):
            pass

    def remove(self, container: Any) -> None:
        try:
            self._call("DELETE", f"/containers/{_q(container.id)}?v=False&link=False&force=True")
        except (EngineError, OSError):
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


def _unix_socket() -> RawSocket:
    return RawSocket(AF_UNIX, SOCK_STREAM)


def _exchange(path: str, method: str, url: str, body: bytes, timeout: float | None) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a new connection to the socket at ``path``: (status, body)."""
    head = f"{method} {url} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    if body:
        head += "Content-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    sock = _unix_socket()
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(head.encode() + body)
        raw, rest = _read_head(sock)
        status, headers = _parse_head(raw)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return status, b""
        return status, _read_body(sock, rest, headers)
    finally:
        sock.close()


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise EngineError(0, f"the engine answered something that is not HTTP: {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _chunked(headers: Mapping[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


def _read_body(sock: RawSocket, data: bytes, headers: Mapping[str, str]) -> bytes:
    """The whole body after the head (``data``: what came with it): chunked, of its length, or
    until the engine closes."""
    if _chunked(headers):
        return b"".join(_chunks(sock, data))
    length = headers.get("content-length")
    return _read_to(sock, data, int(length) if length is not None else None)


def _read_to(sock: RawSocket, data: bytes, length: int | None) -> bytes:
    """The body: ``length`` bytes, or everything until the engine closes (no length given)."""
    buf = bytearray(data)
    while length is None or len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            if length is not None:
                raise EngineError(0, "the engine closed the connection in the middle of an answer")
            break
        buf += chunk
    return bytes(buf if length is None else buf[:length])


def _chunks(sock: RawSocket, data: bytes) -> Iterator[bytes]:
    """A chunked body's chunks, as they come."""
    buf = bytearray(data)

    def fill(n: int) -> None:  # until buf holds n bytes
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EngineError(0, "the engine closed the connection in the middle of an answer")
            buf.extend(chunk)

    while True:
        while b"\r\n" not in buf:
            fill(len(buf) + 1)
        line, _, _ = bytes(buf).partition(b"\r\n")
        del buf[:len(line) + 2]
        try:
            size = int(line.split(b";", 1)[0].strip() or b"x", 16)
        except ValueError:
            raise EngineError(0, "the engine sent a malformed chunked answer") from None
        if size == 0:
            return  # trailers, if any, are not needed
        fill(size + 2)
        yield bytes(buf[:size])
        del buf[:size + 2]


def _post_stream(path: str, url: str, body: IO[bytes], method: str = "POST") -> Iterator[bytes]:
    """POST (or PUT) ``body`` (a tar file, sent as it is read) and stream the answer: its chunks, or its
    whole body if it is not chunked. An error status raises EngineError with the engine's
    message. Nothing times out once connected, as docker-py's build (a step may be silent long)."""
    body.flush()  # sent from its file descriptor: nothing may be left in the buffer
    start = body.tell()
    size = body.seek(0, os.SEEK_END) - start
    body.seek(start)
    head = (f"{method} {url} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Content-Type: application/tar\r\nContent-Length: {size}\r\n\r\n")
    import socket  # its sendfile (the C socket has none)

    sock = socket.socket(AF_UNIX, SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT_S)
        sock.connect(path)
        sock.settimeout(None)
        sock.sendall(head.encode())
        try:
            sock.sendfile(body, start, size)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the engine refused before reading it all: its answer says why
        raw, rest = _read_head(sock)
        status, headers = _parse_head(raw)
        if status >= 400:
            raise EngineError(status, _message(_read_body(sock, rest, headers), status))
        if _chunked(headers):
            yield from _chunks(sock, rest)
        else:
            yield _read_body(sock, rest, headers)
    finally:
        sock.close()


def _json_messages(chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a progress stream, however the chunks split them (as docker-py's
    json_stream: one after another, whitespace between)."""
    decoder, text = json.JSONDecoder(), codecs.getincrementaldecoder("utf-8")("replace")
    buffered = ""
    for chunk in chunks:
        buffered += text.decode(chunk)
        while True:
            buffered = buffered.lstrip()
            try:
                message, end = decoder.raw_decode(buffered)
            except ValueError:
                break
            buffered = buffered[end:]
            if isinstance(message, dict):
                yield message
    buffered = (buffered + text.decode(b"", final=True)).strip()
    if buffered:
        raise EngineError(0, f"the engine sent a progress message that is not JSON: {buffered[:60]!r}")


def _docker_config(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """docker's config.json, found as docker-py finds it (DOCKER_CONFIG, ~/.docker/config.json,
    ~/.dockercfg); {} if there is none. None if docker-py would send more with a build than the
    lean client does: registry credentials (``auths``, ``credsStore``, ``credHelpers``, or an
    auth-only legacy file), ``HttpHeaders``, or a file that is not JSON (legacy credentials)."""
    found = docker_config_file(environ)
    if found is None:
        return {}
    try:
        with open(found, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or any(config.get(k) for k in _SENT_BY_DOCKER_PY):
        return None
    if any(isinstance(v, dict) and ("auth" in v or "identitytoken" in v) for v in config.values()):
        return None
    return config


def _proxy_args(config: Mapping[str, Any], docker_host: str | None) -> dict[str, str]:
    """The build args docker-py adds from config.json's ``proxies`` (the engine's own entry, else
    ``default``); the caller's build args win."""
    proxies = config.get("proxies") or {}
    entry = proxies.get(docker_host) if docker_host in proxies else proxies.get("default")
    args: dict[str, str] = {}
    if not isinstance(entry, dict):
        return args
    for key, name in (("httpProxy", "http_proxy"), ("httpsProxy", "https_proxy"), ("ftpProxy", "ftp_proxy"),
                      ("noProxy", "no_proxy")):
        if entry.get(key):
            args[name] = args[name.upper()] = entry[key]
    return args


def _read_head(sock: RawSocket) -> tuple[bytes, bytes]:
    """The response's status line and headers, and whatever of the stream came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise EngineError(0, "the engine closed the connection before it answered")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _frames(sock: RawSocket, buffered: bytes, tty: bool) -> Iterator[tuple[bytes | None, bytes | None]]:
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


