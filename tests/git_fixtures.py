"""Git test helpers: tiny real repositories, and a smart-HTTP Git server with basic auth.

The server is ``git http-backend`` (CGI) behind ``http.server`` on 127.0.0.1 with a free port, in a
thread of the test process. It checks the user name and password of every request, as a real
forge does, so the tests exercise the same askpass round trip that talks to GitHub.
"""
from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

# git for building fixtures: no user or system config, fixed identity, file:// submodules allowed.
_FIXTURE_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
}
_CREDENTIAL_VARS = ("DOCKRUN_GIT_USERNAME", "DOCKRUN_GIT_PASSWORD",
                    "MLFLOW_GIT_USERNAME", "MLFLOW_GIT_PASSWORD")
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **_FIXTURE_ENV}
    proc = subprocess.run(["git", "-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main", *args],
                          cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit(work: Path, files: dict[str, str], message: str = "change") -> str:
    write_files(work, files)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


@dataclass
class RemoteRepo:
    """A bare repository (the remote) and the work clone that feeds it."""

    bare: Path
    work: Path
    url: str
    commits: dict[str, str] = field(default_factory=dict)  # label -> full SHA

    def push_commit(self, label: str, files: dict[str, str], branch: str = "main") -> str:
        git("checkout", "-q", branch, cwd=self.work)
        self.commits[label] = commit(self.work, files, label)
        git("push", "-q", str(self.bare), branch, cwd=self.work)
        return self.commits[label]


def new_remote(base: Path, name: str, files: dict[str, str], url: str | None = None) -> RemoteRepo:
    """A remote with one commit on main (label "first"). ``url`` defaults to its file:// URL."""
    work = base / f"{name}-work"
    git("init", "-q", str(work))
    first = commit(work, files, "first")
    bare = base / f"{name}.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    git("remote", "add", "origin", str(bare), cwd=work)
    return RemoteRepo(bare, work, url or bare.as_uri(), {"first": first})


def add_submodule(remote: RemoteRepo, sub_url: str, path: str, label: str) -> str:
    git("checkout", "-q", "main", cwd=remote.work)
    git("submodule", "add", "-q", sub_url, path, cwd=remote.work)
    remote.commits[label] = commit(remote.work, {}, label)
    git("push", "-q", str(remote.bare), "main", cwd=remote.work)
    return remote.commits[label]


def build_project_remote(base: Path) -> RemoteRepo:
    """main: first (tag v1 annotated, tag light) -> second (adds submodule lib, which has a
    submodule inner); feature: second -> feature. The project has a subdirectory project sub/."""
    inner = new_remote(base, "inner", {"inner.txt": "inner\n"})
    lib = new_remote(base, "lib", {"lib.txt": "lib\n"})
    add_submodule(lib, inner.url, "inner", "with-inner")
    proj = new_remote(base, "proj", {
        "MLproject": "name: demo\nentry_points:\n  main:\n    command: python train.py\n",
        "train.py": "print('first')\n",
        "sub/MLproject": "name: subproject\nentry_points:\n  main:\n    command: python run.py\n",
        "sub/run.py": "print('sub')\n",
    })
    git("tag", "-a", "v1", "-m", "release 1", cwd=proj.work)
    git("tag", "light", cwd=proj.work)
    write_files(proj.work, {"train.py": "print('second')\n"})
    add_submodule(proj, lib.url, "lib", "second")
    git("checkout", "-q", "-b", "feature", cwd=proj.work)
    proj.commits["feature"] = commit(proj.work, {"feature.txt": "feature\n"}, "feature")
    git("checkout", "-q", "main", cwd=proj.work)
    git("push", "-q", "--tags", str(proj.bare), "main", "feature", cwd=proj.work)
    return proj


# --- smart HTTP ---------------------------------------------------------------------------------

class _GitHandler(BaseHTTPRequestHandler):
    server: _GitHTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return (user, password) == (self.server.username, self.server.password)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()  # CRLF after each chunk
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        body = self._body()
        authorized = self._authorized()
        self.server.log.append((self.command, self.path, authorized))
        if self.command == "POST" and self.server.held.is_set():
            self.server.released.wait(30)  # a stalled transfer, for interrupting a client mid-way
        fault = self.server.faults[0] if self.server.faults else None
        if fault == "500":
            self.server.faults.pop(0)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not authorized:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {**os.environ, **_FIXTURE_ENV,
               "GIT_PROJECT_ROOT": str(self.server.root), "GIT_HTTP_EXPORT_ALL": "1",
               "REQUEST_METHOD": self.command, "PATH_INFO": unquote(path), "QUERY_STRING": query,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "REMOTE_USER": self.server.username, "REMOTE_ADDR": "127.0.0.1"}
        for header, var in (("Content-Encoding", "HTTP_CONTENT_ENCODING"), ("Git-Protocol", "GIT_PROTOCOL")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        is_pack = self.command == "POST" and b"PACK" in out  # the response carries the pack
        if fault == "drop" and is_pack:
            self.server.faults.pop(0)
            self._relay_cgi(out, cut=True)
            return
        self._relay_cgi(out)

    def _relay_cgi(self, out: bytes, cut: bool = False) -> None:
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, payload = out.partition(sep)
        headers = [line.split(":", 1) for line in head.decode().splitlines() if ":" in line]
        status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in ("status", "content-length"):
                self.send_header(key, value.strip())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if cut:  # the connection drops half-way through the pack
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(payload)


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, username: str, password: str):
        super().__init__(("127.0.0.1", 0), _GitHandler)
        self.root, self.username, self.password = root, username, password
        self.log: list[tuple[str, str, bool]] = []  # (method, path, authorized) of every request
        self.held, self.released = threading.Event(), threading.Event()
        self.faults: list[str] = []  # "500": answer the next request so; "drop": cut the next transfer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up (as the interrupted one does) is no server error


@dataclass
class GitHttpServer:
    """Serves the bare repositories under ``root`` at http://127.0.0.1:<port>/<name>.git."""

    root: Path
    username: str
    password: str
    port: int = 0
    _server: _GitHTTPServer | None = field(default=None, repr=False)

    def start(self) -> GitHttpServer:
        self._server = _GitHTTPServer(self.root, self.username, self.password)
        self.port = self._server.server_address[1]
        # A short poll interval makes stop() quick.
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    @property
    def log(self) -> list[tuple[str, str, bool]]:
        return self._server.log if self._server else []

    def git_commands_since(self, mark: int) -> int:
        """How many git commands talked to the server after ``len(log) == mark``: each one starts
        with one authorized GET of info/refs."""
        return sum(1 for method, path, ok in self.log[mark:]
                   if ok and method == "GET" and "/info/refs" in path)

    def hold_transfers(self) -> None:
        """From now on, every POST (where the packs flow) hangs until stop()."""
        assert self._server is not None
        self._server.held.set()

    def fail_next(self, fault: str) -> None:
        """"500": the next request gets a server error; "drop": the next pack transfer is cut."""
        assert self._server is not None
        self._server.faults.append(fault)

    def url(self, name: str, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Close the port: from now on any attempt to reach the server is refused."""
        if self._server is not None:
            self._server.released.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def serve_remote(server: GitHttpServer, base: Path, name: str, files: dict[str, str]) -> RemoteRepo:
    """A remote whose bare repository the server publishes as ``<name>.git``."""
    remote = new_remote(base, name, files)
    published = server.root / f"{name}.git"
    shutil.move(str(remote.bare), published)
    return RemoteRepo(published, remote.work, server.url(f"{name}.git"), remote.commits)


def free_port() -> int:
    """A port nothing listens on (bound, then released): connections to it are refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_ssh(path: Path) -> Path:
    """An ``ssh`` for GIT_SSH_COMMAND that runs the remote command (git-upload-pack '<path>')
    locally: the ssh transport without an sshd, and proof that GIT_SSH_COMMAND is honoured."""
    path.write_text('#!/bin/sh\necho "$@" >> "$0.log"\nfor last; do :; done\nexec sh -c "$last"\n')
    path.chmod(0o755)
    return path


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``needle`` (symlinks not followed)."""
    hits = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink() and needle.encode() in path.read_bytes():
                hits.append(path)
    return hits


def temp_leftovers(home: Path) -> list[Path]:
    cache = home / "git"
    return [p for sub in ("mirrors", "trees") for p in (cache / sub).glob(".tmp-*")]


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture
def git_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated DOCKRUN_HOME, and a git that sees no user config, credentials or proxies (so
    nothing goes anywhere but 127.0.0.1). The fixture remotes' submodules are file:// ones, which
    git (and so dockrun) refuses unless the user allows them: this user's git config does."""
    home = tmp_path / "dockrun-home"
    monkeypatch.setenv("DOCKRUN_HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    user_config = tmp_path / "user.gitconfig"
    user_config.write_text('[protocol "file"]\n\tallow = always\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(user_config))
    for var in _CREDENTIAL_VARS + _PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return home


@pytest.fixture(scope="module")
def project_remote(tmp_path_factory: pytest.TempPathFactory) -> RemoteRepo:
    """Read-only file:// remote with branches, tags, a subdirectory project and nested submodules."""
    return build_project_remote(tmp_path_factory.mktemp("remotes"))


@pytest.fixture
def git_http_server(tmp_path: Path) -> Iterator[GitHttpServer]:
    root = tmp_path / "served"
    root.mkdir()
    server = GitHttpServer(root, "alice", "pw-" + secrets.token_hex(12)).start()
    yield server
    server.stop()
