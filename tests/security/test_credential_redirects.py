"""A credential goes only to the origin (scheme, host, port) it was given for, through the real CLI:
an MLflow tracking server or a Databricks workspace on 127.0.0.1 answers with a redirect to another
host (127.0.0.2), which records every header it gets and must never see the token, the tracking
URI's password or the workspace's token; the Databricks path is checked with the SDK's auth and
without the SDK. A redirect within the same origin keeps the credential, and the run works."""
from __future__ import annotations

import base64
import http.server
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import write_project
from databricks_emulator import DatabricksEmulator, databricks  # noqa: F401 - the fixture

TOKEN = "s3cr3t-token-4711"
PASSWORD = "s3cr3t-pw-0815"
PROJECT = {"MLproject": "name: creds\nentry_points:\n  main:\n    command: \"python -c 'print(41 + 1)'\"\n"}
CLUSTER = json.dumps({"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1})
Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Server:
    """An HTTP server on ``host``: every request (method, path, headers) recorded, then answered by
    ``answer``."""

    host: str
    answer: Callable[[Server, str, str, dict[str, str], bytes], Reply]
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Server:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                server.seen.append((self.command, self.path, headers))
                status, reply_headers, data = server.answer(server, self.command, self.path, headers, body)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(data)), **reply_headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _any

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def leaked(self, *secrets: str) -> list[str]:
        """Every header that carried a credential or any of ``secrets``."""
        return [f"{method} {path} {name}: {value}" for method, path, headers in self.seen
                for name, value in headers.items()
                if name.lower() == "authorization" or any(s in value for s in secrets)]


def not_here(server: Server, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
    return 404, {"Content-Type": "application/json"}, b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "x"}'


def redirect_to(target: Callable[[], str], code: int) -> Callable[..., Reply]:
    def answer(server: Server, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        return code, {"Location": target() + path}, b""

    return answer


@pytest.fixture
def elsewhere() -> Iterator[Server]:
    """Another host: 127.0.0.2, where nothing of the user's may arrive."""
    server = Server("127.0.0.2", not_here).start()
    yield server
    server.stop()


@pytest.fixture
def fronts() -> Iterator[Callable[[Callable[..., Reply]], Server]]:
    started: list[Server] = []

    def start(answer: Callable[..., Reply]) -> Server:
        started.append(Server("127.0.0.1", answer).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "creds", PROJECT)


def _no_user_settings(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Only what the test names: none of the machine's MLflow or Databricks settings."""
    for name in os.environ:
        if name.startswith(("DATABRICKS_", "ARM_", "MLFLOW_")):
            extra.setdefault(name, "")
    return {"DATABRICKS_CONFIG_FILE": str(tmp_path / "databrickscfg"), "DOCKRUN_DATABRICKS_RETRY_S": "2",
            "DOCKRUN_DATABRICKS_POLL_S": "0.2", **extra}


@pytest.fixture
def no_sdk(tmp_path: Path) -> dict[str, str]:
    """An interpreter without the `databricks` extra: a plain `databricks` package first on the path
    hides the SDK's namespace package."""
    shadow = tmp_path / "no-sdk"
    (shadow / "databricks").mkdir(parents=True)
    (shadow / "databricks" / "__init__.py").write_text("")
    return {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}


# --- MLflow tracking ------------------------------------------------------------------------------

@pytest.mark.parametrize("code,how", [
    (302, "token"),  # runs/create, a POST: urllib follows a 302 with a GET
    (307, "token"),  # with --experiment-name the first call is a GET, which a 307 keeps
    (302, "userinfo"),
    (307, "userinfo"),
    (302, "databricks"),  # a workspace's hosted MLflow: its host and token
])
def test_tracking_credentials_never_follow_a_redirect_to_another_host(
        cli, tmp_path: Path, project: Path, elsewhere: Server, fronts, code: int, how: str) -> None:
    front = fronts(redirect_to(lambda: elsewhere.url, code))
    if how == "token":
        env = _no_user_settings(tmp_path, MLFLOW_TRACKING_URI=front.url, MLFLOW_TRACKING_TOKEN=TOKEN)
    elif how == "databricks":
        env = _no_user_settings(tmp_path, MLFLOW_TRACKING_URI="databricks", DATABRICKS_HOST=front.url,
                                DATABRICKS_TOKEN=TOKEN)
    else:
        env = _no_user_settings(tmp_path, MLFLOW_TRACKING_URI=f"http://alice:{PASSWORD}@127.0.0.1:{front.port}")
    args = ["--experiment-name", "exp"] if code == 307 else []
    r = cli("run", str(project), *args, env=env)
    assert r.code == 2, r.err  # the other host's 404 is the answer
    assert front.seen and front.leaked()  # the server it was given for got the credential ...
    assert elsewhere.seen, "the redirect was not followed"  # ... and the other host was asked
    assert elsewhere.leaked(TOKEN, PASSWORD, base64.b64encode(f"alice:{PASSWORD}".encode()).decode()) == []
    assert TOKEN not in r.err + r.out and PASSWORD not in r.err + r.out


def fake_mlflow(server: Server, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
    """Just enough of MLflow's REST API for a run; GETs first move within the server (a 307)."""
    if method == "GET" and not path.startswith("/moved/"):
        return 307, {"Location": f"{server.url}/moved{path}"}, b""
    if headers.get("Authorization") != f"Bearer {TOKEN}":
        return 401, {}, b""
    call = path.removeprefix("/moved").split("?")[0].removeprefix("/api/2.0/mlflow/")
    reply = {"experiments/get-by-name": {"experiment": {"experiment_id": "7"}},
             "runs/create": {"run": {"info": {"run_id": "r" * 32, "experiment_id": "7"}}}}.get(call, {})
    return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()


def test_a_redirect_within_the_tracking_server_keeps_the_token(cli, tmp_path: Path, project: Path, fronts) -> None:
    front = fronts(fake_mlflow)
    env = _no_user_settings(tmp_path, MLFLOW_TRACKING_URI=front.url, MLFLOW_TRACKING_TOKEN=TOKEN)
    r = cli("run", str(project), "--experiment-name", "exp", env=env)
    assert r.code == 0, r.err
    assert "42" in r.out
    moved = [(m, p, h) for m, p, h in front.seen if p.startswith("/moved/")]
    assert moved and all(h.get("Authorization") == f"Bearer {TOKEN}" for _, _, h in moved)
    assert any(p.endswith("runs/update") for _, p, _ in front.seen)  # the run's end reached MLflow


# --- Databricks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [302, 307])
@pytest.mark.parametrize("sdk", [True, False])
def test_the_workspace_token_never_follows_a_redirect_to_another_host(
        cli, tmp_path: Path, project: Path, elsewhere: Server, fronts, no_sdk: dict[str, str],
        code: int, sdk: bool) -> None:
    front = fronts(redirect_to(lambda: elsewhere.url, code))
    env = _no_user_settings(tmp_path, DATABRICKS_HOST=front.url, DATABRICKS_TOKEN=TOKEN, **({} if sdk else no_sdk))
    r = cli("run", str(project), "-b", "databricks", "-c", CLUSTER, env=env)
    assert r.code != 0 and "Traceback" not in r.err, r.err
    assert front.seen and front.leaked()
    assert elsewhere.seen, "the redirect was not followed"
    assert elsewhere.leaked(TOKEN) == []


def proxy_to(upstream: Callable[[], str]) -> Callable[..., Reply]:
    """A front for the emulator: GETs move within the front (a 307), everything else is passed on."""
    def answer(server: Server, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if method == "GET" and not path.startswith("/moved/"):
            return 307, {"Location": f"{server.url}/moved{path}"}, b""
        passed = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
        req = urllib.request.Request(upstream() + path.removeprefix("/moved"), data=body if body else None,
                                     method=method, headers=passed)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, {"Content-Type": resp.headers.get("Content-Type", "")}, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, {"Content-Type": e.headers.get("Content-Type", "")}, e.read()

    return answer


@pytest.mark.parametrize("sdk", [True, False])
def test_a_redirect_within_the_workspace_keeps_the_token(
        cli, tmp_path: Path, project: Path, fronts, databricks: DatabricksEmulator,  # noqa: F811
        no_sdk: dict[str, str], sdk: bool) -> None:
    front = fronts(proxy_to(lambda: databricks.url))
    env = _no_user_settings(tmp_path, DATABRICKS_HOST=front.url, DATABRICKS_TOKEN=databricks.token,
                            **({} if sdk else no_sdk))
    r = cli("run", str(project), "-b", "databricks", "-c", CLUSTER, env=env)
    assert r.code == 0, r.err
    assert "42" in r.out
    moved = [h for _, p, h in front.seen if p.startswith("/moved/api/")]
    assert moved and all(h.get("Authorization") == f"Bearer {databricks.token}" for h in moved)


# --- archives and http inputs (they had the credential dropped on every redirect, the same host's too) --

def archive_bytes() -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in PROJECT.items():
            info = tarfile.TarInfo(f"creds/{name}")
            info.size = len(text.encode())
            tf.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def files_for_alice(files: dict[str, bytes], elsewhere: Server) -> Callable[..., Reply]:
    """/NAME moves within the server (302 to /moved/NAME), where alice's Basic credentials are asked;
    /away/NAME moves to the other host."""
    alice = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()

    def answer(server: Server, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if path.startswith("/away/"):
            return 302, {"Location": elsewhere.url + path.removeprefix("/away")}, b""
        if not path.startswith("/moved/"):
            return 302, {"Location": f"{server.url}/moved{path}"}, b""
        if headers.get("Authorization") != alice:
            return 401, {"WWW-Authenticate": 'Basic realm="files"'}, b""
        return 200, {}, files[path.removeprefix("/moved/")]

    return answer


def test_archive_credentials_stay_within_their_origin(cli, tmp_path: Path, elsewhere: Server, fronts) -> None:
    front = fronts(files_for_alice({"creds.tar.gz": archive_bytes()}, elsewhere))
    r = cli("run", f"http://alice:{PASSWORD}@127.0.0.1:{front.port}/creds.tar.gz")
    assert r.code == 0, r.err
    assert "42" in r.out
    r = cli("run", f"http://alice:{PASSWORD}@127.0.0.1:{front.port}/away/creds.tar.gz")
    assert r.code == 2 and "HTTP 404" in r.err, r.err
    assert elsewhere.seen and elsewhere.leaked(PASSWORD) == []
    assert PASSWORD not in r.err


def test_http_input_credentials_stay_within_their_origin(cli, tmp_path: Path, elsewhere: Server, fronts) -> None:
    project = write_project(tmp_path / "reader", {"MLproject": (
        "name: reader\nentry_points:\n  main:\n    parameters: {data: path}\n"
        "    command: \"python -c 'import sys; print(open(sys.argv[1]).read())' {data}\"\n")})
    front = fronts(files_for_alice({"data.txt": b"the data itself"}, elsewhere))
    r = cli("run", str(project), "-P", f"data=http://alice:{PASSWORD}@127.0.0.1:{front.port}/data.txt")
    assert r.code == 0, r.err
    assert "the data itself" in r.out
    r = cli("run", str(project), "-P", f"data=http://alice:{PASSWORD}@127.0.0.1:{front.port}/away/data.txt")
    assert r.code == 2 and "404" in r.err, r.err
    assert elsewhere.seen and elsewhere.leaked(PASSWORD) == []
    assert PASSWORD not in r.err


def test_every_http_call_of_dockrun_goes_through_the_one_helper() -> None:
    """A new call site with urllib's own urlopen would bring the leak back: there is none."""
    import ast

    package = Path(__file__).resolve().parents[2] / "dockrun"
    callers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "urlopen", "build_opener"):
                callers.add(str(path.relative_to(package)))
    assert callers == {"httpauth.py"}
