"""s3:// path parameters are downloaded before the run (through a real S3 API: moto's server
mode on 127.0.0.1), mounted, and read by the project."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, write_project

pytestmark = pytest.mark.usefixtures("no_leaks")

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
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
    assert sorted(p.name for p in storage.rglob("*") if p.is_file()) == ["a.txt", "b.txt", "rows.csv"]


def test_missing_object_is_one_line_exit_2(cli, s3: str, tmp_path: Path) -> None:
    project = write_project(tmp_path / "s3proj", {"MLproject": "entry_points: {main: {parameters: {p: path}, "
                                                               "command: 'cat {p}'}}\n"})
    r = cli("run", str(project), "-P", "p=s3://data/nope.csv", env={**CREDS, "AWS_ENDPOINT_URL": s3})
    assert r.code == 2 and "parameter 'p': s3://data/nope.csv: no such object or prefix" in r.err
    assert r.err.strip().splitlines()[-1].startswith("dockrun: error:")
