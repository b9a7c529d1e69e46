"""s3:// path parameters are downloaded before the run (through a real S3 API: moto's server
mode on 127.0.0.1), mounted, and read by the project."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, unavailable, write_project
from dockrun.errors import ParameterError
from dockrun.project.inputs import download_inputs

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    try:
        import moto.server  # noqa: F401
    except ImportError:
        unavailable("moto[server] (in the test extra) is not installed")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    import boto3

    client = boto3.client("s3", endpoint_url=url, **{k.lower(): v for k, v in CREDS.items()
                                                     if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
    client.create_bucket(Bucket="data")
    client.put_object(Bucket="data", Key="train/rows.csv", Body=b"1\n2\n3\n")
    client.put_object(Bucket="data", Key="dir/a.txt", Body=b"A")
    client.put_object(Bucket="data", Key="dir/sub/b.txt", Body=b"B")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_env(s3: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for k, v in {**CREDS, "AWS_ENDPOINT_URL": s3}.items():
        monkeypatch.setenv(k, v)
    return s3


def test_a_key_that_leaves_the_storage_dir_is_refused(s3_env: str, tmp_path: Path) -> None:
    import boto3

    storage = tmp_path / "a" / "b" / "storage"
    # Keys an object store accepts and a careless download joins onto its folder: both would land
    # outside the storage dir (three levels up; at an absolute path), here still inside tmp_path.
    evil = {"up": "up/../../../escaped.txt", "abs": f"abs/{tmp_path}/escaped-abs.txt"}
    client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    for prefix, key in evil.items():
        client.put_object(Bucket="data", Key=f"{prefix}/ok.txt", Body=b"fine")
        client.put_object(Bucket="data", Key=key, Body=b"X")
    try:
        for prefix, key in evil.items():
            with pytest.raises(ParameterError, match=f"^parameter 'p': s3://data/{prefix}: refusing the remote "
                                                     f"name '{key}': it would be written outside"):
                download_inputs({"p": f"s3://data/{prefix}"}, storage)
        assert [p.name for p in tmp_path.rglob("*") if p.is_file() and "locks" not in p.parts] == []
    finally:
        for prefix, key in evil.items():
            client.delete_objects(Bucket="data", Delete={"Objects": [{"Key": f"{prefix}/ok.txt"}, {"Key": key}]})


def test_s3_download_is_reused_while_etag_and_size_hold(s3_env: str, tmp_path: Path) -> None:
    import boto3

    said: list[str] = []
    got = download_inputs({"p": "s3://data/dir"}, tmp_path, said.append)
    files = {p: p.stat().st_ino for p in Path(got["p"]).rglob("*") if p.is_file()}
    assert sorted(p.name for p in files) == ["a.txt", "b.txt"]
    download_inputs({"p": "s3://data/dir"}, tmp_path, said.append)
    assert said[-1] == "using the downloaded copy of s3://data/dir (unchanged)"
    assert {p: p.stat().st_ino for p in files} == files  # not one file rewritten
    boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1").put_object(
        Bucket="data", Key="dir/a.txt", Body=b"A2")
    try:
        download_inputs({"p": "s3://data/dir"}, tmp_path, said.append)
        assert said[-1] == "downloading s3://data/dir (1 of 2 files)"
        assert (Path(got["p"]) / "a.txt").read_bytes() == b"A2"
    finally:
        boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1").put_object(
            Bucket="data", Key="dir/a.txt", Body=b"A")


@pytest.mark.usefixtures("no_leaks")
def test_s3_file_and_prefix_are_downloaded_and_mounted(cli, s3: str, tmp_path: Path) -> None:
    project = write_project(tmp_path / "s3proj", {"MLproject": """
        name: s3proj
        entry_points:
          main:
            parameters: {rows: path, folder: path, raw: uri}
            command: "wc -l < {rows}; cat {folder}/a.txt {folder}/sub/b.txt; echo; echo {raw}"
    """})
    storage = tmp_path / "storage"
    env = {**CREDS, "AWS_ENDPOINT_URL": s3}
    r = cli("run", str(project), "-P", "rows=s3://data/train/rows.csv", "-P", "folder=s3://data/dir",
            "-P", "raw=s3://data/untouched", "--storage-dir", str(storage), env=env)
    assert r.code == 0, r.err
    assert r.out.splitlines() == ["3", "AB", "s3://data/untouched"]
    assert "downloading s3://data/train/rows.csv" in r.err
    downloaded = [p for p in storage.rglob("*") if p.is_file() and p.suffix not in (".json", ".lock")]
    assert sorted(p.name for p in downloaded) == ["a.txt", "b.txt", "rows.csv"]


@pytest.mark.usefixtures("no_leaks")
def test_missing_object_is_one_line_exit_2(cli, s3: str, tmp_path: Path) -> None:
    project = write_project(tmp_path / "s3proj", {"MLproject": "entry_points: {main: {parameters: {p: path}, "
                                                               "command: 'cat {p}'}}\n"})
    r = cli("run", str(project), "-P", "p=s3://data/nope.csv", env={**CREDS, "AWS_ENDPOINT_URL": s3})
    assert r.code == 2 and "parameter 'p': s3://data/nope.csv: no such object or prefix" in r.err
    assert r.err.strip().splitlines()[-1].startswith("dockrun: error:")


def test_s3_throttling_is_retried(s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """503 SlowDown (S3's "slow down, try again") answered to the first requests: the download
    still completes, and the retries are what made it."""
    import http.server
    import threading
    import urllib.error

    throttled: list[str] = []

    class Throttling(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if len(throttled) < 5:  # all of boto3's default attempts
                throttled.append(self.path)
                payload = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                           b"<Message>Please reduce your request rate.</Message></Error>")
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            request = urllib.request.Request(s3 + self.path, data=body or None, method=self.command,
                                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
            try:
                with urllib.request.urlopen(request, timeout=30) as upstream:
                    status, headers, payload = upstream.status, upstream.headers, upstream.read()
            except urllib.error.HTTPError as e:
                status, headers, payload = e.code, e.headers, e.read()
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_HEAD = _any

        def log_message(self, *args: object) -> None:
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        for k, v in {**CREDS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.server_address[1]}"}.items():
            monkeypatch.setenv(k, v)
        local = download_inputs({"rows": "s3://data/train/rows.csv"}, tmp_path / "storage")
    finally:
        proxy.shutdown()
    assert Path(local["rows"]).read_bytes() == b"1\n2\n3\n"
    assert len(throttled) == 5  # five refusals, and the download went on
