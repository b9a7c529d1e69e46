"""The Databricks emulator is strict where the documented API is: these requests must be refused
as Databricks refuses them, or the remote-mode tests would prove less than they claim."""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from dbx_emulator import databricks  # noqa: F401 - the fixture

CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}


def call(emu, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(emu.url + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"Bearer {token or emu.token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def put(emu, path: str, data: bytes, **extra) -> tuple[int, dict]:
    return call(emu, "POST", "/api/2.0/dbfs/put", {"path": path, "contents": base64.b64encode(data).decode(), **extra})


def test_auth_method_and_unknown_endpoint(databricks) -> None:  # noqa: F811
    assert call(databricks, "GET", "/api/2.0/dbfs/get-status?path=/x", token="nope")[0] == 401
    assert call(databricks, "GET", "/api/2.0/dbfs/put")[0] == 405
    assert call(databricks, "GET", "/api/2.0/nothing")[1]["error_code"] == "ENDPOINT_NOT_FOUND"


def test_dbfs_limits_and_roundtrip(databricks) -> None:  # noqa: F811
    assert put(databricks, "/a/b.txt", b"hello") == (200, {})
    assert put(databricks, "/a/b.txt", b"again")[1]["error_code"] == "RESOURCE_ALREADY_EXISTS"
    assert put(databricks, "/a/big", b"x" * ((1 << 20) + 1))[1]["error_code"] == "MAX_BLOCK_SIZE_EXCEEDED"
    assert put(databricks, "/a/b.txt", b"x", bogus=1)[1]["error_code"] == "INVALID_PARAMETER_VALUE"
    status, info = call(databricks, "GET", "/api/2.0/dbfs/get-status?path=/a/b.txt")
    assert status == 200 and info["file_size"] == 5
    assert call(databricks, "GET", "/api/2.0/dbfs/get-status?path=/nope")[1]["error_code"] == \
        "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize("task, message", [
    ({"task_key": "t", "new_cluster": {"node_type_id": "x", "num_workers": 1},
      "spark_python_task": {"python_file": "dbfs:/l.py"}}, "spark_version"),
    ({"task_key": "t", "new_cluster": CLUSTER, "existing_cluster_id": "c",
      "spark_python_task": {"python_file": "dbfs:/l.py"}}, "exactly one of new_cluster"),
    ({"task_key": "t", "new_cluster": CLUSTER, "spark_python_task": {"python_file": "dbfs:/missing.py"}},
     "does not exist"),
    ({"task_key": "t", "new_cluster": CLUSTER, "spark_python_task": {"python_file": "dbfs:/l.py"},
      "libraries": [{"pypi": {"package": "a"}, "whl": "b"}]}, "libraries[0]"),
    ({"task_key": "bad key!", "new_cluster": CLUSTER, "spark_python_task": {"python_file": "dbfs:/l.py"}},
     "task_key"),
])
def test_submit_validation(databricks, task: dict, message: str) -> None:  # noqa: F811
    put(databricks, "/l.py", b"print('hi')\n")
    status, answer = call(databricks, "POST", "/api/2.1/jobs/runs/submit", {"tasks": [task]})
    assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE" and message in answer["message"]
    assert databricks.submitted == []


def test_idempotency_token(databricks) -> None:  # noqa: F811
    put(databricks, "/l.py", b"print('hi')\n")
    body = {"tasks": [{"task_key": "t", "new_cluster": CLUSTER, "spark_python_task": {"python_file": "dbfs:/l.py"}}],
            "idempotency_token": "abc"}
    first = call(databricks, "POST", "/api/2.1/jobs/runs/submit", body)[1]["run_id"]
    assert call(databricks, "POST", "/api/2.1/jobs/runs/submit", body)[1]["run_id"] == first
    assert len(databricks.submitted) == 1
