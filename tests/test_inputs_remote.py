"""Remote path inputs from everywhere MLflow reads: http(s) (a real server on 127.0.0.1), dbfs:/
(the Databricks emulator), MLflow's artifact URIs (runs:/ against a sqlite store, when MLflow is
installed); reused when unchanged, never written outside the storage dir, mounted read-only."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import REPO, free_port, write_project
from databricks_emulator import DatabricksEmulator
from dockrun.errors import ConfigError, ParameterError
from dockrun.project.inputs import SCHEMES, download_inputs
from dockrun.project.inputs.local import Download, Entry, sync
from dockrun.project.params import DOWNLOADABLE

# One project for every e2e test here: the same tree is the same image, built once.
READER = {"MLproject": """
    name: reader
    entry_points:
      main:
        parameters: {data: path}
        command: "cat {data}; echo; (echo x >> {data}) 2>/dev/null && echo writable || echo read-only"
"""}


@dataclass
class Served:
    """Files a test server hands out, and what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    etags: bool = True  # False: a server without validators
    auth: str | None = None  # the Authorization header required, if any
    seen: list[tuple[str, int]] = field(default_factory=list)  # (path, status) per request
    headers: list[dict[str, str]] = field(default_factory=list)

    def full(self) -> int:
        """How many bodies were sent (200s): the transfers a reuse must avoid."""
        return sum(1 for _, status in self.seen if status == 200)


@pytest.fixture
def web() -> Iterator[tuple[str, Served]]:
    served = Served()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server naming
            path = self.path.split("?", 1)[0]
            served.headers.append(dict(self.headers))
            body = served.files.get(path)
            if served.auth and self.headers.get("Authorization") != served.auth:
                status = 401
            elif body is None:
                status = 404
            else:
                etag = f'"{hash(body) & 0xffffffff:x}"'
                status = 304 if served.etags and self.headers.get("If-None-Match") == etag else 200
            served.seen.append((path, status))
            self.send_response(status)
            if status == 200:
                if served.etags:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Test servers are on the loopback: a proxy from the environment must not be asked for them.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def lines() -> tuple[list[str], object]:
    said: list[str] = []
    return said, said.append


# ---- http(s) -------------------------------------------------------------------------------------

def test_http_file_is_downloaded_then_reused_while_its_etag_holds(web, tmp_path: Path) -> None:
    url, served = web
    served.files["/rows.csv"] = b"1\n2\n3\n"
    said, log = lines()
    got = download_inputs({"data": f"{url}/rows.csv"}, tmp_path, log)
    assert Path(got["data"]).read_bytes() == b"1\n2\n3\n" and Path(got["data"]).name == "rows.csv"
    again = download_inputs({"data": f"{url}/rows.csv"}, tmp_path, log)
    assert again == got and served.full() == 1 and served.seen[-1] == ("/rows.csv", 304)
    assert said[-1].endswith("(unchanged)")
    served.files["/rows.csv"] = b"4\n"
    download_inputs({"data": f"{url}/rows.csv"}, tmp_path, log)
    assert Path(got["data"]).read_bytes() == b"4\n" and served.full() == 2


def test_http_server_without_validators_is_downloaded_every_time(web, tmp_path: Path) -> None:
    url, served = web
    served.etags, served.files["/x"] = False, b"x"
    for _ in range(2):
        download_inputs({"data": f"{url}/x"}, tmp_path)
    assert served.full() == 2


def test_http_errors_name_the_parameter_and_hide_credentials(web, tmp_path: Path) -> None:
    url, served = web
    host = url[len("http://"):]
    with pytest.raises(ParameterError) as e:
        download_inputs({"data": f"http://me:s3cret@{host}/missing.csv?token=abc123"}, tmp_path)
    assert str(e.value) == (f"parameter 'data': http://***@{host}/missing.csv?***: the server answered "
                            "404 Not Found")
    closed = free_port()
    with pytest.raises(ParameterError, match=rf"^parameter 'data': http://127.0.0.1:{closed}/x\?\*\*\*: "
                                             r"cannot download \(.*refused"):
        download_inputs({"data": f"http://127.0.0.1:{closed}/x?sig=abc"}, tmp_path)
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "locks"])  # nothing half-made left behind


def test_http_userinfo_becomes_basic_auth(web, tmp_path: Path) -> None:
    url, served = web
    served.files["/private.csv"], served.auth = b"ok", "Basic bWU6czNjcmV0"  # me:s3cret
    got = download_inputs({"data": url.replace("http://", "http://me:s3cret@") + "/private.csv"}, tmp_path)
    assert Path(got["data"]).read_bytes() == b"ok"
    meta = next(tmp_path.glob("*.json")).read_text()
    assert "s3cret" not in meta and "***@" in meta


def test_https_honours_ssl_cert_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.txt").write_text("secure")

    class Quiet(__import__("http.server").server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # noqa: ANN002, ANN003
            super().__init__(*a, directory=str(tmp_path / "site"), **kw)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/a.txt"
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(ParameterError, match="certificate verify failed.*set SSL_CERT_FILE"):
            download_inputs({"data": url}, tmp_path / "s")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        got = download_inputs({"data": url}, tmp_path / "s")
        assert Path(got["data"]).read_text() == "secure"
    finally:
        server.shutdown()
        server.server_close()


# ---- dbfs:/ ----------------------------------------------------------------------------------------

@pytest.fixture
def workspace(monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabricksEmulator]:
    emulator = DatabricksEmulator().start()
    monkeypatch.setenv("DATABRICKS_HOST", emulator.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", emulator.token)
    try:
        yield emulator
    finally:
        emulator.stop()


def put(emulator: DatabricksEmulator, path: str, data: bytes) -> None:
    target = emulator.dbfs_root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def reads(emulator: DatabricksEmulator) -> int:
    return sum(1 for method, path, _ in emulator.requests if path.startswith("/api/2.0/dbfs/read"))


def test_dbfs_file_and_folder_in_1mb_chunks_reused_while_size_and_mtime_hold(workspace, tmp_path: Path) -> None:
    big = os.urandom((5 << 19) + 7)  # 2.5 MB: three reads
    put(workspace, "/data/big.bin", big)
    put(workspace, "/data/set/a.txt", b"A")
    put(workspace, "/data/set/sub/b.txt", b"B")
    said, log = lines()
    got = download_inputs({"f": "dbfs:/data/big.bin", "d": "dbfs:/data/set"}, tmp_path, log)
    assert Path(got["f"]).read_bytes() == big and reads(workspace) == 3 + 2
    assert (Path(got["d"]) / "a.txt").read_text() == "A" and (Path(got["d"]) / "sub" / "b.txt").read_text() == "B"
    download_inputs({"f": "dbfs:/data/big.bin", "d": "dbfs:/data/set"}, tmp_path, log)
    assert reads(workspace) == 5 and said[-1].endswith("(unchanged)")
    put(workspace, "/data/set/a.txt", b"AA")  # a new size
    (workspace.dbfs_root / "data/set/sub/b.txt").unlink()
    download_inputs({"d": "dbfs:/data/set"}, tmp_path, log)
    assert reads(workspace) == 6 and (Path(got["d"]) / "a.txt").read_text() == "AA"
    assert not (Path(got["d"]) / "sub").exists()  # gone remotely, gone here
    assert workspace.errors == []


def test_dbfs_errors_are_one_line_naming_the_parameter(workspace, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ParameterError, match="^parameter 'd': dbfs:/nope.csv: no such file or folder on DBFS$"):
        download_inputs({"d": "dbfs:/nope.csv"}, tmp_path)
    monkeypatch.delenv("DATABRICKS_TOKEN")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "none.cfg"))
    with pytest.raises(ConfigError, match="^parameter 'd': dbfs:/x: set DATABRICKS_HOST and DATABRICKS_TOKEN"):
        download_inputs({"d": "dbfs:/x"}, tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name != "locks"] == []


def test_a_remote_name_leaving_the_folder_is_refused_before_any_transfer(tmp_path: Path) -> None:
    # The DBFS listing (and any object store) is the remote's word: names are checked, not trusted.
    fetched: list[str] = []
    d = Download("dbfs:/x", "dbfs:/x", "parameter 'd': dbfs:/x", tmp_path, {}, lambda line: None)
    for key in ("x/../../etc/passwd", "x//etc/cron.d/x", "x/./y", "/abs"):
        entries = [Entry("x/ok", "x/ok", {"size": 1}), Entry(key, key, {"size": 1})]
        with pytest.raises(ParameterError, match=f"refusing the remote name '{key}'"):
            sync(d, "x", entries, lambda e, tmp: fetched.append(e.key), lambda files: None)
    assert fetched == []


# ---- MLflow's artifact URIs ------------------------------------------------------------------------

def test_runs_uri_through_mlflow(tmp_path: Path) -> None:
    import mlflow  # the test extra has it
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("inputs", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp)
    (tmp_path / "rows.csv").write_text("7\n8\n")
    client.log_artifact(run.info.run_id, str(tmp_path / "rows.csv"), "data")
    got = download_inputs({"data": f"runs:/{run.info.run_id}/data/rows.csv"}, tmp_path / "s",
                          tracking_uri=uri)
    assert Path(got["data"]).read_text() == "7\n8\n" and Path(got["data"]).name == "rows.csv"
    with pytest.raises(ParameterError, match="^parameter 'data': runs:/0123/none: MLflow could not download"):
        download_inputs({"data": "runs:/0123/none"}, tmp_path / "s", tracking_uri=uri)


def test_mlflow_schemes_without_the_extra_name_what_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['mlflow'] = None\n"  # as if MLflow were not installed
            "from dockrun.project.inputs import download_inputs\n"
            "from pathlib import Path\n"
            f"download_inputs({{'m': 'models:/churn/3', 'h': 'http://127.0.0.1:1/x'}}, Path({str(tmp_path)!r}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "ParameterError: parameter 'm': models:/churn/3: downloading models: URIs needs MLflow: " \
           "pip install 'dockrun[mlflow]'" in r.stderr
    assert list(tmp_path.iterdir()) == []  # checked before any transfer


def test_params_and_inputs_agree_on_what_is_downloadable() -> None:
    assert set(DOWNLOADABLE) == set(SCHEMES)


# ---- end to end: the real CLI ------------------------------------------------------------------------

pytestmark_e2e = pytest.mark.usefixtures("no_leaks")  # the engine: conftest fails in CI without it


@pytestmark_e2e
def test_cli_reads_an_http_input_mounted_read_only_and_reuses_it(cli, web, tmp_path: Path) -> None:
    url, served = web
    served.files["/x.csv"] = b"a,b\n1,2"
    project = write_project(tmp_path / "reader", READER)
    storage = tmp_path / "storage"
    for _ in range(2):
        r = cli("run", str(project), "-P", f"data={url}/x.csv?token=s3cret", "--storage-dir", str(storage),
                env={"NO_PROXY": "127.0.0.1"})
        assert r.code == 0, r.err
        assert r.out.splitlines() == ["a,b", "1,2", "read-only"]
    assert served.full() == 1 and "(unchanged)" in r.err
    assert "s3cret" not in r.err + r.out and f"{url}/x.csv?***" in r.err
    assert (next(storage.glob("*/x.csv"))).read_bytes() == b"a,b\n1,2"  # the run could not touch it


@pytestmark_e2e
def test_cli_reads_a_dbfs_input(cli, tmp_path: Path) -> None:
    emulator = DatabricksEmulator().start()
    try:
        put(emulator, "/mnt/in/x.csv", b"from,dbfs")
        project = write_project(tmp_path / "reader", READER)
        r = cli("run", str(project), "-P", "data=dbfs:/mnt/in/x.csv",
                env={"DATABRICKS_HOST": emulator.url, "DATABRICKS_TOKEN": emulator.token, "NO_PROXY": "127.0.0.1"})
        assert r.code == 0, r.err
        assert r.out.splitlines() == ["from,dbfs", "read-only"]
        assert "downloading dbfs:/mnt/in/x.csv" in r.err and emulator.token not in r.err
        bad = cli("run", str(project), "-P", "data=dbfs:/mnt/in/nope.csv",
                  env={"DATABRICKS_HOST": emulator.url, "DATABRICKS_TOKEN": emulator.token, "NO_PROXY": "127.0.0.1"})
        assert bad.code == 2
        assert bad.err.strip().splitlines()[-1] == ("dockrun: error: parameter 'data': dbfs:/mnt/in/nope.csv: "
                                                    "no such file or folder on DBFS")
    finally:
        emulator.stop()
