"""The Databricks emulator itself, through plain HTTP (urllib): auth, routing, strict request checks,
DBFS semantics and limits, runs/submit validation, and real execution of spark_python_task runs."""
from __future__ import annotations

import base64
import http.client
import json
import os
import textwrap
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from databricks_emulator import ENVIRONMENTS, DatabricksEmulator, databricks  # noqa: F401 - the fixture

MB = 1 << 20
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}
NO_AUTH = ""


def call(emu: DatabricksEmulator, method: str, path: str, body: Any = None, token: str | None = None,
         raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """One request; (status, JSON answer). token=None sends the emulator's token, NO_AUTH sends none."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(emu.url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token != NO_AUTH:
        req.add_header("Authorization", f"Bearer {emu.token if token is None else token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def put(emu: DatabricksEmulator, path: str, data: bytes, **extra: Any) -> tuple[int, dict[str, Any]]:
    return call(emu, "POST", "/api/2.0/dbfs/put", {"path": path, "contents": b64(data), **extra})


def script(emu: DatabricksEmulator, source: str, path: str = "/jobs/main.py") -> str:
    """Upload a Python file; its dbfs:/ URI for spark_python_task."""
    assert put(emu, path, textwrap.dedent(source).encode(), overwrite=True)[0] == 200
    return "dbfs:" + path


def task(python_file: str = "dbfs:/jobs/main.py", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"task_key": "main", "new_cluster": dict(CLUSTER),
                            "spark_python_task": {"python_file": python_file}}
    spec.update(overrides)
    return {k: v for k, v in spec.items() if v is not None}


def submit(emu: DatabricksEmulator, *tasks: dict[str, Any], **top: Any) -> tuple[int, dict[str, Any]]:
    return call(emu, "POST", "/api/2.1/jobs/runs/submit", {"run_name": "test", "tasks": list(tasks), **top})


def get(emu: DatabricksEmulator, run_id: int) -> dict[str, Any]:
    status, run = call(emu, "GET", f"/api/2.1/jobs/runs/get?run_id={run_id}")
    assert status == 200, run
    return run


def wait(emu: DatabricksEmulator, run_id: int, life: str = "TERMINATED", timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = get(emu, run_id)
        if run["state"]["life_cycle_state"] == life or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def error(answer: tuple[int, dict[str, Any]]) -> tuple[int, str]:
    return answer[0], answer[1].get("error_code", "")


# ---- auth, routing, request shape -------------------------------------------------------------

def test_auth_is_required(databricks: DatabricksEmulator) -> None:  # noqa: F811 - the fixture
    path = "/api/2.0/dbfs/get-status?path=/"
    assert error(call(databricks, "GET", path, token=NO_AUTH)) == (401, "UNAUTHENTICATED")
    # A wrong token is 403 with the body Databricks sends (error_code is a number there).
    assert call(databricks, "GET", path, token="dapi-wrong") == (403, {"error_code": 403,
                                                                     "message": "Invalid access token."})
    assert error(call(databricks, "GET", "/api/2.0/nothing", token=NO_AUTH)) == (401, "UNAUTHENTICATED")
    assert call(databricks, "GET", path)[0] == 200
    assert databricks.requests[0] == ("GET", path, 401)


def test_unknown_endpoint_and_wrong_method(databricks: DatabricksEmulator) -> None:  # noqa: F811
    assert error(call(databricks, "GET", "/api/2.0/nothing")) == (404, "ENDPOINT_NOT_FOUND")
    assert error(call(databricks, "POST", "/api/2.0/dbfs/addblock", {})) == (404, "ENDPOINT_NOT_FOUND")
    status, answer = call(databricks, "GET", "/api/2.0/dbfs/put")
    assert (status, answer["error_code"]) == (404, "ENDPOINT_NOT_FOUND") and "GET" in answer["message"]
    assert error(call(databricks, "POST", "/api/2.0/dbfs/get-status", {"path": "/"})) == (404, "ENDPOINT_NOT_FOUND")
    assert error(call(databricks, "PUT", "/api/2.1/jobs/runs/submit", {})) == (404, "ENDPOINT_NOT_FOUND")
    # a real endpoint the emulator lacks says so, instead of pretending it does not exist
    assert error(call(databricks, "POST", "/api/2.1/jobs/run-now", {"job_id": 1})) == (501, "NOT_IMPLEMENTED")


def test_bodies_must_be_json_objects(databricks: DatabricksEmulator) -> None:  # noqa: F811
    for raw in (b"not json", b"[1, 2]", b""):
        assert error(call(databricks, "POST", "/api/2.0/dbfs/mkdirs", raw=raw)) == (400, "MALFORMED_REQUEST")


def test_unknown_missing_and_mistyped_fields_are_rejected(databricks: DatabricksEmulator) -> None:  # noqa: F811
    status, answer = put(databricks, "/a.txt", b"x", bogus=1)
    assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE") and "bogus" in answer["message"]
    status, answer = call(databricks, "POST", "/api/2.0/dbfs/put", {"contents": b64(b"x")})
    assert status == 400 and "missing required field: path" in answer["message"]
    status, answer = put(databricks, "/a.txt", b"x", overwrite="yes")
    assert status == 400 and "overwrite" in answer["message"] and "boolean" in answer["message"]
    assert error(call(databricks, "GET", "/api/2.0/dbfs/get-status?path=/&pth=/")) == (400, "INVALID_PARAMETER_VALUE")
    assert error(call(databricks, "POST", "/api/2.0/dbfs/close", {"handle": "1"})) == (400, "INVALID_PARAMETER_VALUE")
    assert databricks.dbfs_file("/a.txt") is None and databricks.errors == []


# ---- DBFS -------------------------------------------------------------------------------------

def test_dbfs_put_get_status_read_roundtrip(databricks: DatabricksEmulator) -> None:  # noqa: F811
    assert put(databricks, "/dockrun/x.txt", b"hello world") == (200, {})
    status, info = call(databricks, "GET", "/api/2.0/dbfs/get-status?path=/dockrun//x.txt")
    assert status == 200 and info["path"] == "/dockrun/x.txt" and info["file_size"] == 11
    assert info["is_dir"] is False and abs(info["modification_time"] - time.time() * 1000) < 60_000
    assert call(databricks, "GET", "/api/2.0/dbfs/get-status?path=/dockrun")[1]["is_dir"] is True
    status, read = call(databricks, "GET", "/api/2.0/dbfs/read?path=/dockrun/x.txt&offset=6&length=100")
    assert status == 200 and read == {"bytes_read": 5, "data": b64(b"world")}
    assert error(put(databricks, "/dockrun/x.txt", b"again")) == (400, "RESOURCE_ALREADY_EXISTS")
    assert put(databricks, "/dockrun/x.txt", b"again", overwrite=True)[0] == 200
    assert databricks.dbfs_file("dbfs:/dockrun/x.txt") == b"again" == databricks.dbfs_file("/dbfs/dockrun/x.txt")
    for query in ("path=/nope", "path=/dockrun/x.txt/below"):
        assert error(call(databricks, "GET", f"/api/2.0/dbfs/get-status?{query}")) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_dbfs_paths_limits_and_folders(databricks: DatabricksEmulator) -> None:  # noqa: F811
    put(databricks, "/d/f.txt", b"data")
    for bad in ("dbfs:/d/f.txt", "d/f.txt", "/d/../f.txt"):  # the DBFS API takes absolute paths only
        assert error(put(databricks, bad, b"x")) == (400, "INVALID_PARAMETER_VALUE")
    read = "/api/2.0/dbfs/read?path="
    assert error(call(databricks, "GET", f"{read}/d/f.txt&length={MB + 1}")) == (400, "MAX_READ_SIZE_EXCEEDED")
    assert error(call(databricks, "GET", f"{read}/d/f.txt&offset=-1")) == (400, "INVALID_PARAMETER_VALUE")
    assert error(call(databricks, "GET", f"{read}/d")) == (400, "INVALID_PARAMETER_VALUE")
    assert error(put(databricks, "/d/f.txt/under", b"x")) == (400, "RESOURCE_ALREADY_EXISTS")
    assert call(databricks, "POST", "/api/2.0/dbfs/mkdirs", {"path": "/d/e/f"}) == (200, {})
    names = [f["path"] for f in call(databricks, "GET", "/api/2.0/dbfs/list?path=/d")[1]["files"]]
    assert names == ["/d/e", "/d/f.txt"]
    assert error(call(databricks, "POST", "/api/2.0/dbfs/delete", {"path": "/d"})) == (400, "IO_ERROR")
    assert call(databricks, "POST", "/api/2.0/dbfs/delete", {"path": "/d", "recursive": True}) == (200, {})
    assert databricks.dbfs_file("/d/f.txt") is None


def test_put_larger_than_1mb_is_rejected(databricks: DatabricksEmulator) -> None:  # noqa: F811
    assert put(databricks, "/one", b"x" * MB)[0] == 200
    assert error(put(databricks, "/big", b"x" * (MB + 1))) == (400, "MAX_BLOCK_SIZE_EXCEEDED")
    assert databricks.dbfs_file("/big") is None


def test_streaming_upload_in_1mb_blocks(databricks: DatabricksEmulator) -> None:  # noqa: F811
    payload = os.urandom(MB * 5 // 2)
    status, created = call(databricks, "POST", "/api/2.0/dbfs/create", {"path": "/up/big.bin"})
    assert status == 200 and isinstance(created["handle"], int)
    handle = created["handle"]
    for i in range(0, len(payload), MB):
        assert call(databricks, "POST", "/api/2.0/dbfs/add-block",
                    {"handle": handle, "data": b64(payload[i:i + MB])}) == (200, {})
    # nothing shows until close
    assert error(call(databricks, "GET", "/api/2.0/dbfs/get-status?path=/up/big.bin"))[0] == 404
    too_big = {"handle": handle, "data": b64(b"x" * (MB + 1))}
    assert error(call(databricks, "POST", "/api/2.0/dbfs/add-block", too_big)) == (400, "MAX_BLOCK_SIZE_EXCEEDED")
    assert call(databricks, "POST", "/api/2.0/dbfs/close", {"handle": handle}) == (200, {})
    assert call(databricks, "GET", "/api/2.0/dbfs/get-status?path=/up/big.bin")[1]["file_size"] == len(payload)
    assert databricks.dbfs_file("/up/big.bin") == payload
    gone = call(databricks, "POST", "/api/2.0/dbfs/add-block", {"handle": handle, "data": b64(b"x")})
    assert error(gone) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert error(call(databricks, "POST", "/api/2.0/dbfs/close", {"handle": 12345})) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert error(call(databricks, "POST", "/api/2.0/dbfs/create", {"path": "/up/big.bin"})) == \
        (400, "RESOURCE_ALREADY_EXISTS")


# ---- injected faults --------------------------------------------------------------------------

def test_fail_next_refuses_without_applying_and_sends_retry_after(databricks: DatabricksEmulator) -> None:  # noqa: F811
    databricks.fail_next("/api/2.0/dbfs/put", 429, retry_after=3)
    databricks.fail_next("/api/2.0/dbfs/put", 503)
    req = urllib.request.Request(databricks.url + "/api/2.0/dbfs/put", method="POST", data=json.dumps(
        {"path": "/f", "contents": b64(b"1")}).encode(), headers={"Authorization": f"Bearer {databricks.token}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 429 and refused.value.headers["Retry-After"] == "3"
    assert json.loads(refused.value.read())["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert error(put(databricks, "/f", b"1")) == (503, "TEMPORARILY_UNAVAILABLE")
    assert databricks.dbfs_file("/f") is None  # neither was applied
    assert put(databricks, "/f", b"1") == (200, {})  # the faults are used up
    assert databricks.dbfs_file("/f") == b"1"


def test_drop_reply_applies_the_request_then_closes_the_connection(databricks: DatabricksEmulator) -> None:  # noqa: F811
    handle = call(databricks, "POST", "/api/2.0/dbfs/create", {"path": "/d.bin"})[1]["handle"]
    databricks.drop_reply("/api/2.0/dbfs/add-block")
    with pytest.raises((ConnectionError, urllib.error.URLError, http.client.HTTPException)):
        call(databricks, "POST", "/api/2.0/dbfs/add-block", {"handle": handle, "data": b64(b"abc")})
    assert call(databricks, "POST", "/api/2.0/dbfs/add-block", {"handle": handle, "data": b64(b"abc")})[0] == 200
    assert call(databricks, "POST", "/api/2.0/dbfs/close", {"handle": handle})[0] == 200
    assert databricks.dbfs_file("/d.bin") == b"abcabc"  # the dropped block was applied: appends are not idempotent
    assert ("POST", "/api/2.0/dbfs/add-block", 0) in databricks.requests


def test_html_next_answers_a_login_page(databricks: DatabricksEmulator) -> None:  # noqa: F811
    databricks.html_next("/api/2.0/dbfs/get-status")
    req = urllib.request.Request(databricks.url + "/api/2.0/dbfs/get-status?path=/",
                                 headers={"Authorization": f"Bearer {databricks.token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
        assert resp.read().startswith(b"<!DOCTYPE html>")
    assert call(databricks, "GET", "/api/2.0/dbfs/get-status?path=/")[0] == 200


# ---- runs/submit validation -------------------------------------------------------------------

def _without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


ONE_COMPUTE = "exactly one of new_cluster, existing_cluster_id or environment_key"
INVALID_SUBMITS = {
    "missing spark_version": ([task(new_cluster=_without(CLUSTER, "spark_version"))], "spark_version"),
    "no node type": ([task(new_cluster=_without(CLUSTER, "node_type_id"))], "node_type_id"),
    "both workers and autoscale": ([task(new_cluster={**CLUSTER, "autoscale": {"min_workers": 1, "max_workers": 2}})],
                                   "num_workers or autoscale"),
    "unknown cluster field": ([task(new_cluster={**CLUSTER, "gpus": 2})], "gpus"),
    "both clusters": ([task(existing_cluster_id="0101-abc")], ONE_COMPUTE),
    "no cluster": ([task(new_cluster=None)], ONE_COMPUTE),
    "cluster and environment": ([task(environment_key="e")], ONE_COMPUTE),
    "undeclared environment": ([task(new_cluster=None, environment_key="e")], "not in runs/submit.environments"),
    "unknown reference": ([task(spark_python_task={"python_file": "dbfs:/jobs/main.py",
                                                   "parameters": ["{{job.nmae}}"]})], "{{job.nmae}}"),
    "python_file missing": ([task("dbfs:/jobs/absent.py")], "does not exist"),
    "python_file not in the workspace": ([task("/Workspace/main.py")], "does not exist in the workspace"),
    "python_file in cloud storage": ([task("s3://bucket/main.py")], "only dbfs:/"),
    "library with two kinds": ([task(libraries=[{"pypi": {"package": "x"}, "whl": "dbfs:/x.whl"}])], "exactly one"),
    "unknown library kind": ([task(libraries=[{"conda": "numpy"}])], "conda"),
    "pypi without package": ([task(libraries=[{"pypi": {"version": "1"}}])], "version"),
    "bad task_key": ([task(task_key="my task")], "task_key"),
    "duplicate task_key": ([task(), task()], "unique"),
    "other task kind": ([task(spark_python_task=None, notebook_task={"notebook_path": "/x"})],
                        "not supported by this emulator"),
    "no tasks": ([], "at least one task"),
    "parameters not strings": ([task(spark_python_task={"python_file": "dbfs:/jobs/main.py", "parameters": [1]})],
                               "parameters[0]"),
}


@pytest.mark.parametrize("tasks, message", INVALID_SUBMITS.values(), ids=INVALID_SUBMITS.keys())
def test_submit_validation(databricks: DatabricksEmulator, tasks: list[Any], message: str) -> None:  # noqa: F811
    script(databricks, "print('hi')\n")
    status, answer = submit(databricks, *tasks)
    assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert message in answer["message"]
    assert databricks.submitted == []


def test_submit_top_level_checks(databricks: DatabricksEmulator) -> None:  # noqa: F811
    script(databricks, "print('hi')\n")
    assert error(submit(databricks, task(), new_cluster=CLUSTER)) == (400, "INVALID_PARAMETER_VALUE")  # 2.0 shape
    assert error(submit(databricks, task(), idempotency_token="t" * 65)) == (400, "INVALID_PARAMETER_VALUE")
    assert error(call(databricks, "POST", "/api/2.1/jobs/runs/submit", {"run_name": "x"})) == \
        (400, "INVALID_PARAMETER_VALUE")
    assert databricks.submitted == []


# ---- execution --------------------------------------------------------------------------------

CHECK_SCRIPT = """
    import os, sys
    fuse = "/dbfs"  # where clusters mount DBFS
    print("args", sys.argv[1:])
    print("input", open(os.path.join(fuse, "data/in.txt")).read())
    print("flavour", os.environ["FLAVOUR"])
    os.makedirs(os.path.join(fuse, "out"), exist_ok=True)
    open(os.path.join(fuse, "out/result.txt"), "w").write("done")
    print("to stderr", file=sys.stderr)
    import tabulate  # a cluster library, installed for the task (the test runner has none)
    print("python", sys.executable, tabulate.__name__)
    import subprocess
    subprocess.run(["echo", "from a child"])  # to the driver's descriptors, not to the task's output
"""


def test_successful_run_executes_the_python_file(databricks: DatabricksEmulator) -> None:  # noqa: F811
    put(databricks, "/data/in.txt", b"from dbfs")
    libraries = [{"pypi": {"package": "tabulate"}}, {"jar": "dbfs:/jars/x.jar"}]
    cluster = {**CLUSTER, "spark_env_vars": {"FLAVOUR": "vanilla"}}
    spt = {"python_file": script(databricks, CHECK_SCRIPT), "parameters": ["a b", "--x=1"]}
    status, answer = submit(databricks, task(new_cluster=cluster, spark_python_task=spt, libraries=libraries))
    assert status == 200 and set(answer) == {"run_id"}
    run_id = answer["run_id"]
    first = get(databricks, run_id)
    assert first["state"]["life_cycle_state"] != "TERMINATED" and "result_state" not in first["state"]
    assert first["run_page_url"].startswith(databricks.url) and first["run_name"] == "test"

    run = wait(databricks, run_id)
    assert run["state"]["result_state"] == "SUCCESS", run
    assert run["end_time"] >= run["start_time"] > 0
    [task_run] = run["tasks"]
    assert task_run["task_key"] == "main" and task_run["state"]["result_state"] == "SUCCESS"
    assert task_run["run_id"] != run_id
    assert databricks.submitted[0]["tasks"][0]["libraries"] == libraries
    assert databricks.dbfs_file("/out/result.txt") == b"done"

    status, output = call(databricks, "GET", f"/api/2.1/jobs/runs/get-output?run_id={task_run['run_id']}")
    assert status == 200 and output["logs_truncated"] is False and "error" not in output
    for line in ("args ['a b', '--x=1']", "input from dbfs", "flavour vanilla", "to stderr"):
        assert line in output["logs"]
    python = output["logs"].split("python ", 1)[1].split()[0]
    # the runtime's Python, in the task's container; the cluster library installed into it
    assert python == "/databricks/python3/bin/python" and "tabulate" in output["logs"]
    assert "from a child" not in output["logs"]
    assert run["status"] == {"state": "TERMINATED", "termination_details": {
        "code": "SUCCESS", "type": "SUCCESS", "message": ""}}
    assert output["metadata"]["run_id"] == task_run["run_id"]
    parent = call(databricks, "GET", f"/api/2.1/jobs/runs/get-output?run_id={run_id}")
    assert error(parent) == (400, "INVALID_PARAMETER_VALUE")
    assert databricks.errors == []


def test_failing_run(databricks: DatabricksEmulator) -> None:  # noqa: F811
    script(databricks, "import sys\nprint('about to fail')\nsys.exit(3)\n")
    run = wait(databricks, submit(databricks, task())[1]["run_id"])
    assert run["state"]["result_state"] == "FAILED" and run["state"]["state_message"]
    task_run = run["tasks"][0]
    assert task_run["state"]["result_state"] == "FAILED" and "3" in task_run["state"]["state_message"]
    output = call(databricks, "GET", f"/api/2.1/jobs/runs/get-output?run_id={task_run['run_id']}")[1]
    assert "about to fail" in output["logs"] and "3" in output["error"]


def test_cancel_of_a_sleeping_run(databricks: DatabricksEmulator) -> None:  # noqa: F811
    script(databricks, "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")
    run_id = submit(databricks, task())[1]["run_id"]
    assert wait(databricks, run_id, "RUNNING")["state"]["life_cycle_state"] == "RUNNING"
    databricks.kill_grace_s = 60  # a cancel that had to wait out the grace would not end in wait()'s time
    assert call(databricks, "POST", "/api/2.1/jobs/runs/cancel", {"run_id": run_id}) == (200, {})
    assert get(databricks, run_id)["state"]["life_cycle_state"] in ("TERMINATING", "TERMINATED")
    run = wait(databricks, run_id)
    # SIGTERM ended the task (the script has no handler): no SIGKILL after a grace was needed
    assert run["state"]["result_state"] == "CANCELED" and run["state"]["user_cancelled_or_timedout"] is True
    assert run["tasks"][0]["state"]["result_state"] == "CANCELED"
    assert call(databricks, "POST", "/api/2.1/jobs/runs/cancel", {"run_id": run_id}) == (200, {})  # no-op
    assert error(call(databricks, "POST", "/api/2.1/jobs/runs/cancel", {"run_id": 1})) == \
        (400, "INVALID_PARAMETER_VALUE")
    assert error(call(databricks, "POST", "/api/2.1/jobs/runs/cancel", {"run_id": str(run_id)})) == \
        (400, "INVALID_PARAMETER_VALUE")


def test_cancel_while_pending_never_starts_the_task() -> None:
    emu = DatabricksEmulator(pending_s=30).start()  # the cancel ends the PENDING phase at once
    try:
        script(emu, "import sys\nsys.exit(5)\n")
        run_id = submit(emu, task())[1]["run_id"]
        pending = get(emu, run_id)["state"]
        assert pending["life_cycle_state"] == "PENDING" and "result_state" not in pending
        assert call(emu, "POST", "/api/2.1/jobs/runs/cancel", {"run_id": run_id}) == (200, {})
        run = wait(emu, run_id, timeout=5)
        assert run["state"]["result_state"] == "CANCELED" and run["tasks"][0]["start_time"] == 0
    finally:
        emu.stop()


def test_task_timeout(databricks: DatabricksEmulator) -> None:  # noqa: F811
    script(databricks, "import time\ntime.sleep(60)\n")
    run = wait(databricks, submit(databricks, task(timeout_seconds=1))[1]["run_id"])
    assert run["state"]["result_state"] == "TIMEDOUT" and run["tasks"][0]["state"]["result_state"] == "TIMEDOUT"


def test_idempotency_token(databricks: DatabricksEmulator) -> None:  # noqa: F811
    script(databricks, "print('once')\n")
    first = submit(databricks, task(), idempotency_token="dockrun-abc")[1]["run_id"]
    assert submit(databricks, task(), idempotency_token="dockrun-abc")[1]["run_id"] == first
    assert len(databricks.submitted) == 1
    assert submit(databricks, task(), idempotency_token="dockrun-def")[1]["run_id"] != first
    wait(databricks, first)


def test_runs_get_checks_run_id(databricks: DatabricksEmulator) -> None:  # noqa: F811
    assert error(call(databricks, "GET", "/api/2.1/jobs/runs/get?run_id=42")) == (400, "INVALID_PARAMETER_VALUE")
    assert error(call(databricks, "GET", "/api/2.1/jobs/runs/get?run_id=abc")) == (400, "INVALID_PARAMETER_VALUE")
    assert error(call(databricks, "GET", "/api/2.1/jobs/runs/get")) == (400, "INVALID_PARAMETER_VALUE")


def test_logs_keep_the_tail_when_over_the_limit(databricks_runtime: str) -> None:
    emu = DatabricksEmulator(logs_limit=1000, pending_s=0).start()
    try:
        script(emu, "print('x' * 5000)\nprint('the end')\n")
        run = wait(emu, submit(emu, task())[1]["run_id"])
        output = call(emu, "GET", f"/api/2.1/jobs/runs/get-output?run_id={run['tasks'][0]['run_id']}")[1]
        assert output["logs_truncated"] is True and len(output["logs"]) == 1000
        assert output["logs"].endswith("the end\n")
    finally:
        emu.stop()


def test_stop_removes_running_tasks(databricks_runtime: str) -> None:
    emu = DatabricksEmulator(pending_s=0).start()
    try:
        script(emu, "import socket, time\nopen('/dbfs/host', 'w').write(socket.gethostname())\ntime.sleep(60)\n")
        run_id = submit(emu, task())[1]["run_id"]
        deadline = time.monotonic() + 30
        while not emu.dbfs_file("/host") and time.monotonic() < deadline:
            time.sleep(0.05)
        host = (emu.dbfs_file("/host") or b"").decode()
        assert host and get(emu, run_id)["state"]["life_cycle_state"] == "RUNNING"
        assert _containers(emu), "the task runs in a container of the emulator's"
    finally:
        emu.stop()
    assert not _containers(emu)


def _containers(emu: DatabricksEmulator) -> list[str]:
    import subprocess

    from databricks_emulator import TASK_LABEL

    r = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label={TASK_LABEL}={emu.id}"],
                       capture_output=True, text=True, check=True)
    return r.stdout.split()


# ---- Files API (Unity Catalog volumes), DBFS root disabled, access modes, OAuth, SCIM ---------

def raw(emu: DatabricksEmulator, method: str, path: str, data: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """One request with a raw body, the emulator's token unless ``headers`` say otherwise."""
    req = urllib.request.Request(emu.url + path, data=data, method=method,
                                 headers=headers if headers is not None else {"Authorization": f"Bearer {emu.token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_files_api_on_a_volume(databricks: DatabricksEmulator) -> None:  # noqa: F811
    path = "/api/2.0/fs/files/Volumes/main/ml/dockrun/me%40x.com/a.bin"
    assert raw(databricks, "HEAD", path)[0] == 404
    status, body, _ = raw(databricks, "PUT", path + "?overwrite=false", b"\x00" * 10)
    assert (status, body) == (204, b"")  # parent folders are created as needed
    status, body, headers = raw(databricks, "HEAD", path)
    assert (status, body, headers["Content-Length"]) == (200, b"", "10") and "Last-Modified" in headers
    status, body, _ = raw(databricks, "PUT", path + "?overwrite=false", b"again")
    assert status == 409 and json.loads(body)["error_code"] == "ALREADY_EXISTS"
    assert raw(databricks, "PUT", path, b"new")[0] == 204  # overwrite is true when not given
    assert raw(databricks, "GET", path)[:2] == (200, b"new")
    assert databricks.volume_file("/Volumes/main/ml/dockrun/me@x.com/a.bin") == b"new"
    assert raw(databricks, "DELETE", path)[0] == 204 and raw(databricks, "GET", path)[0] == 404
    status, body, _ = raw(databricks, "PUT", "/api/2.0/fs/files/Volumes/main/ml/nope/a", b"x")
    assert status == 404 and "main.ml.nope" in json.loads(body)["message"]
    status, body, _ = raw(databricks, "PUT", "/api/2.0/fs/files/Volumes/main/ml/dockrun/../x", b"x")
    assert status == 400
    assert raw(databricks, "PUT", path, b"x", headers={"Authorization": "Bearer wrong"})[0] == 403


def test_a_workspace_without_dbfs_root() -> None:
    emu = DatabricksEmulator(dbfs_root_disabled=True).start()
    try:
        status, answer = put(emu, "/dockrun/x", b"x", overwrite=True)
        assert (status, answer["error_code"]) == (403, "PERMISSION_DENIED")
        assert answer["message"].startswith("Public DBFS root is disabled. Access is denied on path: /dockrun/x")
    finally:
        emu.stop()


def test_standard_access_mode_refuses_code_from_the_dbfs_root(databricks: DatabricksEmulator) -> None:  # noqa: F811
    script(databricks, "print('should not run')\n")
    shared = {**CLUSTER, "data_security_mode": "USER_ISOLATION"}
    run = wait(databricks, submit(databricks, task(new_cluster=shared))[1]["run_id"])
    task_run = run["tasks"][0]
    assert task_run["state"]["result_state"] == "FAILED"
    assert "USER_ISOLATION (standard) access mode" in task_run["state"]["state_message"]
    job = b"print('from a volume')\n"
    assert raw(databricks, "PUT", "/api/2.0/fs/files/Volumes/main/ml/dockrun/job.py", job)[0] == 204
    spt = {"python_file": "/Volumes/main/ml/dockrun/job.py"}
    run = wait(databricks, submit(databricks, task(new_cluster=shared, spark_python_task=spt))[1]["run_id"])
    assert run["state"]["result_state"] == "SUCCESS"
    output = call(databricks, "GET", f"/api/2.1/jobs/runs/get-output?run_id={run['tasks'][0]['run_id']}")[1]
    assert "from a volume" in output["logs"]


def test_oauth_machine_to_machine(databricks: DatabricksEmulator) -> None:  # noqa: F811
    status, body, _ = raw(databricks, "GET", "/.well-known/databricks-config", headers={})
    assert status == 200 and json.loads(body)["oidc_endpoint"] == f"{databricks.url}/oidc"
    status, body, _ = raw(databricks, "GET", "/oidc/.well-known/oauth-authorization-server", headers={})
    assert json.loads(body)["token_endpoint"] == f"{databricks.url}/oidc/v1/token"
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def token(secret: str) -> tuple[int, dict[str, Any]]:
        basic = base64.b64encode(f"{databricks.client_id}:{secret}".encode()).decode()
        status, body, _ = raw(databricks, "POST", "/oidc/v1/token", b"grant_type=client_credentials&scope=all-apis",
                              {**form, "Authorization": f"Basic {basic}"})
        return status, json.loads(body)

    assert token("wrong") == (401, {"error": "invalid_client", "error_description": "Client authentication failed"})
    status, answer = token(databricks.client_secret)
    assert status == 200 and answer["token_type"] == "Bearer" and answer["expires_in"] > 0
    status, me = call(databricks, "GET", "/api/2.0/preview/scim/v2/Me", token=answer["access_token"])
    assert status == 200 and me["userName"] == databricks.client_id
    assert call(databricks, "GET", "/api/2.0/preview/scim/v2/Me")[1]["userName"] == databricks.user_name


def test_serverless_environments_and_references(databricks: DatabricksEmulator) -> None:  # noqa: F811
    assert raw(databricks, "PUT", "/api/2.0/fs/files/Volumes/main/ml/dockrun/args.py",
               b"import sys, tabulate; print('args', sys.argv[1:])\n")[0] == 204
    spt = {"python_file": "/Volumes/main/ml/dockrun/args.py", "parameters": ["{{job.run_id}}", "{{ task.name }}",
                                                                           "{{my.value}", "{{not.known}}"]}
    env = {"environment_key": "default", "spec": {"environment_version": "2", "dependencies": ["tabulate"]}}
    serverless = task(new_cluster=None, environment_key="default", spark_python_task=spt)
    status, answer = submit(databricks, {**serverless, "libraries": [{"pypi": {"package": "x"}}]}, environments=[env])
    assert status == 400 and "not supported on serverless" in answer["message"]
    for bad in ({"environment_key": "default", "spec": {"dependencies": ["x"]}},
                {"environment_key": "default", "spec": {"environment_version": "2", "pip": ["x"]}}):
        assert submit(databricks, serverless, environments=[bad])[0] == 400
    status, answer = submit(databricks, serverless, environments=[env])
    assert status == 200, answer
    run = wait(databricks, answer["run_id"])
    assert run["state"]["result_state"] == "SUCCESS", run
    output = call(databricks, "GET", f"/api/2.1/jobs/runs/get-output?run_id={run['tasks'][0]['run_id']}")[1]
    assert f"args ['{answer['run_id']}', 'main', '{{{{my.value}}', '{{{{not.known}}}}']" in output["logs"]
    dbfs_task = task(new_cluster=None, environment_key="default")  # serverless: no code from the DBFS root
    script(databricks, "print('hi')\n")
    run = wait(databricks, submit(databricks, dbfs_task, environments=[env])[1]["run_id"])
    assert run["state"]["result_state"] == "FAILED"


# ---- libraries really installed -------------------------------------------------------------


def test_a_library_that_does_not_install_fails_the_run_as_databricks_says(databricks: DatabricksEmulator) -> None:  # noqa: F811
    script(databricks, "open('ran', 'w')\n")
    missing = "dockrun-no-such-package-4711"
    run = wait(databricks, submit(databricks, task(libraries=[{"pypi": {"package": missing}}]))[1]["run_id"],
               life="INTERNAL_ERROR", timeout=120)
    assert run["state"]["result_state"] == "FAILED"
    message = run["state"]["state_message"]
    assert message.startswith("Library installation failed for library due to user error for pypi "
                              f'{{ package: "{missing}" }}')
    assert f"No matching distribution found for {missing}" in message
    details = run["status"]["termination_details"]
    assert details == {"code": "LIBRARY_INSTALLATION_ERROR", "type": "CLIENT_ERROR", "message": message}
    [task_run] = run["tasks"]
    assert task_run["state"]["life_cycle_state"] == "INTERNAL_ERROR" and task_run["start_time"] == 0
    output = call(databricks, "GET", f"/api/2.1/jobs/runs/get-output?run_id={task_run['run_id']}")[1]
    assert output["error"] == message and output["logs"] == ""
    assert not list(databricks.work.glob("task-*/driver/ran"))  # the file never ran
    # serverless: the environment's dependencies, the same way
    assert raw(databricks, "PUT", "/api/2.0/fs/files/Volumes/main/ml/dockrun/x.py", b"print(1)\n")[0] == 204
    env = {"environment_key": "e", "spec": {"environment_version": "2", "dependencies": [missing]}}
    serverless = task("/Volumes/main/ml/dockrun/x.py", new_cluster=None, environment_key="e")
    run = wait(databricks, submit(databricks, serverless, environments=[env])[1]["run_id"], life="INTERNAL_ERROR")
    assert run["status"]["termination_details"]["code"] == "LIBRARY_INSTALLATION_ERROR"
    assert f"environment dependency '{missing}'" in run["state"]["state_message"]


def test_each_set_of_libraries_is_installed_once_per_session(databricks: DatabricksEmulator) -> None:  # noqa: F811
    script(databricks, "import sys, tabulate; print(sys.executable)\n")
    pythons = []
    for libraries in ([{"pypi": {"package": "tabulate"}}], [{"pypi": {"package": " tabulate"}}]):
        run = wait(databricks, submit(databricks, task(libraries=libraries))[1]["run_id"], timeout=120)
        assert run["state"]["result_state"] == "SUCCESS", run
        if len(pythons) == 0:
            installs = ENVIRONMENTS.installs
        pythons.append(call(databricks, "GET", f"/api/2.1/jobs/runs/get-output?run_id={run['tasks'][0]['run_id']}")[1]
                       ["logs"].strip())
    assert pythons == ["/databricks/python3/bin/python"] * 2 and ENVIRONMENTS.installs == installs
    # no libraries: an environment of its own, without the test runner's packages
    script(databricks, "import pytest\n")
    run = wait(databricks, submit(databricks, task())[1]["run_id"])
    output = call(databricks, "GET", f"/api/2.1/jobs/runs/get-output?run_id={run['tasks'][0]['run_id']}")[1]
    assert run["state"]["result_state"] == "FAILED"
    assert output["error"] == "ModuleNotFoundError: No module named 'pytest'"
    assert output["error_trace"].startswith("Traceback (most recent call last):")
    assert "runpy" not in output["error_trace"]


def test_jobs_api_2_2_pages_the_tasks_of_runs_get(databricks: DatabricksEmulator) -> None:  # noqa: F811
    script(databricks, "print('hi')\n")
    databricks.page_size = 2  # 100 in Databricks; the same rule, fewer tasks
    tasks = [task(task_key=f"t{i}") for i in range(3)]
    status, answer = call(databricks, "POST", "/api/2.2/jobs/runs/submit",
                          {"run_name": "paged", "tasks": tasks, "queue": {"enabled": True}})
    assert status == 200, answer
    run_id = answer["run_id"]
    first = call(databricks, "GET", f"/api/2.2/jobs/runs/get?run_id={run_id}")[1]
    assert [t["task_key"] for t in first["tasks"]] == ["t0", "t1"] and first["next_page_token"]
    second = call(databricks, "GET", f"/api/2.2/jobs/runs/get?run_id={run_id}&page_token={first['next_page_token']}")[1]
    assert [t["task_key"] for t in second["tasks"]] == ["t2"] and "next_page_token" not in second
    assert len(get(databricks, run_id)["tasks"]) == 3  # 2.1 gives them all
    assert error(call(databricks, "GET", f"/api/2.2/jobs/runs/get?run_id={run_id}&page_token=%25%25")) == \
        (400, "INVALID_PARAMETER_VALUE")
    assert error(submit(databricks, task(), queue={"enabled": "yes"})) == (400, "INVALID_PARAMETER_VALUE")
    wait(databricks, run_id)
