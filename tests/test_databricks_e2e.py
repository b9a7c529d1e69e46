"""Remote mode end to end against the strict local Databricks emulator (tests/databricks_emulator.py):
upload, submit, follow, logs, failure, cancel, records, and refusals before any request."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_project
from databricks_emulator import DatabricksEmulator, databricks  # noqa: F401 - the fixture
from dockrun.databricks_api.client import DatabricksClient
from dockrun.databricks_api.workspace import Workspace
from dockrun.errors import RemoteError

PROJECT = {
    "MLproject": """
        name: remote
        python_env: python_env.yaml
        entry_points:
          main:
            parameters: {alpha: float}
            command: "python train.py {alpha}"
          fail: "python -c 'print(\\"about to fail\\"); raise SystemExit(3)'"
          sleep: "sleep 120"
    """,
    # Installed for the task by the emulator as a cluster library (the test runner does not have it).
    "python_env.yaml": "python: '3.11'\ndependencies: [tabulate]\n",
    "train.py": """
        import os, sys, tabulate
        alpha = float(sys.argv[1])
        print(f"alpha: {alpha}", tabulate.__name__)
        with open(os.path.join(os.environ["DOCKRUN_OUTPUT_DIR"], "metrics.csv"), "w") as f:
            f.write(f"alpha,w,loss\\n{alpha},1,0\\n")
    """,
}
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}


@pytest.fixture
def remote_env(databricks, home: Path) -> dict[str, str]:  # noqa: F811 - the fixture, imported
    return {"DATABRICKS_HOST": databricks.url, "DATABRICKS_TOKEN": databricks.token,
            "DOCKRUN_DATABRICKS_POLL_S": "0.2", "DOCKRUN_DATABRICKS_RETRY_S": "20"}


def _cluster_file(tmp_path: Path) -> str:
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(CLUSTER))
    return str(path)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "remote", PROJECT)


def test_run_on_databricks(cli, databricks, remote_env, tmp_path: Path, project: Path) -> None:  # noqa: F811
    r = cli("run", str(project), "-b", "databricks", "-c", _cluster_file(tmp_path), "-P", "alpha=0.3",
            env=remote_env)
    assert r.code == 0, r.err
    assert "alpha: 0.3" in r.out and "submitted Databricks run" in r.err
    body = databricks.submitted[-1]
    task = body["tasks"][0]
    assert task["new_cluster"] == CLUSTER
    assert task["libraries"] == [{"pypi": {"package": "tabulate"}}]
    archive = task["spark_python_task"]["parameters"][0]
    mine = f"dbfs:/dockrun/{databricks.user_name}"  # each user's own folder in the DBFS root
    assert archive.startswith(f"{mine}/projects/") and databricks.dbfs_file(archive)
    # The launcher is in the caller's workspace home, where no other user can change it.
    assert task["spark_python_task"]["python_file"].startswith(f"/Users/{databricks.user_name}/.dockrun/launcher/")
    run_id = task["spark_python_task"]["parameters"][2]
    record = json.loads(cli("runs", "show", run_id, env=remote_env).out)
    assert record["backend"] == "databricks" and record["status"] == "FINISHED" and record["remote_run_id"]
    assert record["outputs"] == f"{mine}/runs/{run_id}/outputs"
    assert databricks.dbfs_file(f"{mine}/runs/{run_id}/outputs/metrics.csv").startswith(b"alpha,w,loss")
    # The same code again: nothing uploaded a second time.
    uploads = sum(1 for m, p, _ in databricks.requests if p.startswith("/api/2.0/dbfs/put"))
    assert cli("run", str(project), "-b", "databricks", "-c", _cluster_file(tmp_path), "-P", "alpha=1",
               env=remote_env).code == 0
    assert sum(1 for m, p, _ in databricks.requests if p.startswith("/api/2.0/dbfs/put")) == uploads


def test_a_git_uri_runs_on_databricks(cli, databricks, remote_env, tmp_path: Path, project: Path) -> None:  # noqa: F811
    import subprocess

    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=project, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    r = cli("run", f"file://{project}", "-v", "main", "-b", "databricks", "-c", _cluster_file(tmp_path), "-P",
            "alpha=0.7", env=remote_env)
    assert r.code == 0, r.err
    assert "alpha: 0.7" in r.out
    run_id = databricks.submitted[-1]["tasks"][0]["spark_python_task"]["parameters"][2]
    assert json.loads(cli("runs", "show", run_id, env=remote_env).out)["commit_sha"] == commit


def test_failing_remote_run(cli, databricks, remote_env, tmp_path: Path, project: Path) -> None:  # noqa: F811
    r = cli("run", str(project), "-e", "fail", "-b", "databricks", "-c",
            _cluster_file(tmp_path), env=remote_env)
    assert r.code == 1 and "about to fail" in r.out
    assert r.err.strip().splitlines()[-1].startswith("dockrun: error: run ")


def test_detached_then_cancel(cli, databricks, remote_env, tmp_path: Path, project: Path) -> None:  # noqa: F811
    r = cli("run", str(project), "-e", "sleep", "-b", "databricks", "-c",
            _cluster_file(tmp_path), "--detach", env=remote_env)
    assert r.code == 0, r.err
    run_id = r.out.strip()
    c = cli("runs", "cancel", run_id, env=remote_env)
    assert c.code == 0 and c.out.strip() == f"{run_id} KILLED"


def test_ctrl_c_cancels_the_remote_run(databricks, remote_env, home: Path, tmp_path: Path,  # noqa: F811
                                       project: Path) -> None:
    env = {**os.environ, **remote_env, "DOCKRUN_HOME": str(home)}

    def child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, "-m", "dockrun.cli", "run", str(project), "-e",
                             "sleep", "-b", "databricks", "-c", _cluster_file(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=child,
                            start_new_session=True)
    # SIGINT once the run is the workspace's: its record names the remote run the CLI will cancel.
    from dockrun.store.records import RunStore

    deadline = time.monotonic() + 60
    while not (home / "runs.db").exists() or not any(r.remote_run_id for r in RunStore(home).list()):
        assert time.monotonic() < deadline and proc.poll() is None, "the run was never submitted"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert any(p.startswith("/api/2.2/jobs/runs/cancel") for _, p, _ in databricks.requests)
    # What was done, for this backend: no container was removed here.
    assert re.fullmatch(r"dockrun: error: interrupted; run \w+ was cancelled in the Databricks workspace",
                        err.strip().splitlines()[-1]), err


def test_refusals_before_any_request(cli, databricks, remote_env, tmp_path: Path) -> None:  # noqa: F811
    project = write_project(tmp_path / "p", {"MLproject": "entry_points: {main: {parameters: {d: path}, "
                                                          "command: 'cat {d}'}}\n"})
    before = len(databricks.requests)
    r = cli("run", str(project), "-b", "databricks", "-c", _cluster_file(tmp_path), "-P", f"d={tmp_path}/x",
            env=remote_env)
    assert r.code == 2 and "does not exist on Databricks" in r.err
    r = cli("run", str(project), "-b", "databricks", "-c", '{"num_workers": 1}', "-P", "d=dbfs:/x",
            env=remote_env)
    assert r.code == 2 and "spark_version is required" in r.err
    r = cli("run", str(project), "-b", "databricks", "-P", "d=dbfs:/x", env=remote_env)
    assert r.code == 2 and "needs --backend-config" in r.err
    assert len(databricks.requests) == before
    bad = cli("run", str(project), "-b", "databricks", "-c", _cluster_file(tmp_path), "-P", "d=dbfs:/x",
              env={**remote_env, "DATABRICKS_TOKEN": "wrong"})
    assert bad.code == 2 and "Databricks answered 403: Invalid access token." in bad.err and "wrong" not in bad.err


# ---- faults a real workspace shows ------------------------------------------------------------

BIG = {"MLproject": "name: big\nentry_points:\n  main: \"python check.py\"\n",
       "check.py": "import hashlib; print('blob', hashlib.sha256(open('blob.bin', 'rb').read()).hexdigest())\n"}


def _big_project(tmp_path: Path) -> tuple[Path, str]:
    """A project whose archive needs several add-block calls (random bytes do not compress)."""
    root = write_project(tmp_path / "big", BIG)
    blob = os.urandom((5 << 20) // 2)
    (root / "blob.bin").write_bytes(blob)
    return root, hashlib.sha256(blob).hexdigest()


def _archive(databricks: DatabricksEmulator) -> tuple[str, bytes]:  # noqa: F811
    name = databricks.submitted[-1]["tasks"][0]["spark_python_task"]["parameters"][0]
    return name, databricks.dbfs_file(name) or b""


def test_a_dropped_add_block_reply_still_gives_the_task_intact_code(cli, databricks, remote_env,  # noqa: F811
                                                                   tmp_path: Path) -> None:
    root, want = _big_project(tmp_path)
    databricks.drop_reply("/api/2.0/dbfs/add-block")  # applied, reply lost: a blind resend appends twice
    r = cli("run", str(root), "-b", "databricks", "-c", _cluster_file(tmp_path), env=remote_env)
    assert r.code == 0, r.out + r.err
    assert f"blob {want}" in r.out
    name, data = _archive(databricks)
    assert name == f"dbfs:/dockrun/{databricks.user_name}/projects/{hashlib.sha256(data).hexdigest()}.tar.gz"
    assert not [p for p in (databricks.dbfs_root / "dockrun" / databricks.user_name / "projects").iterdir()
                if ".part-" in p.name]


def test_a_corrupt_archive_under_its_name_is_replaced_or_refused(cli, databricks, remote_env,  # noqa: F811
                                                                 tmp_path: Path, project: Path) -> None:
    args = ("run", str(project), "-b", "databricks", "-c", _cluster_file(tmp_path), "-P", "alpha=1")
    assert cli(*args, env=remote_env).code == 0
    name, data = _archive(databricks)
    stored = databricks.dbfs_root / name[len("dbfs:/"):]
    stored.write_bytes(data + data[:100])  # what a twice-applied block leaves: too long
    r = cli(*args, env=remote_env)
    assert r.code == 0 and "uploading the project" in r.err and stored.read_bytes() == data
    stored.write_bytes(data[::-1])  # the right size, the wrong bytes: the launcher's checksum
    r = cli(*args, env=remote_env)
    assert r.code == 1 and "is corrupt (SHA-256" in r.out and "alpha" not in r.out


def test_429_with_retry_after_is_waited_out(cli, databricks, remote_env, tmp_path: Path,  # noqa: F811
                                            project: Path) -> None:
    databricks.fail_next("/api/2.0/dbfs/put", 429, retry_after=3)  # the upload waits as asked, then goes on
    # More refusals than a fixed number of attempts would outlast: the time budget decides.
    databricks.fail_next("/api/2.2/jobs/runs/submit", 429, retry_after=1, times=4)
    start = time.monotonic()
    r = cli("run", str(project), "-b", "databricks", "-c", _cluster_file(tmp_path), "-P", "alpha=2",
            env=remote_env)
    assert r.code == 0, r.err
    assert "alpha: 2.0" in r.out and time.monotonic() - start >= 7
    assert [s for _, p, s in databricks.requests if p == "/api/2.0/dbfs/put"][:2] == [429, 200]
    statuses = [s for _, p, s in databricks.requests if p == "/api/2.2/jobs/runs/submit"]
    assert statuses == [429, 429, 429, 429, 200] and len(databricks.submitted) == 1


def test_a_login_page_instead_of_json_is_one_line(cli, databricks, remote_env, tmp_path: Path,  # noqa: F811
                                                  project: Path) -> None:
    databricks.html_next("/api/2.0/dbfs/get-status")
    r = cli("run", str(project), "-b", "databricks", "-c", _cluster_file(tmp_path), "-P", "alpha=1",
            env=remote_env)
    assert r.code == 1 and "Traceback" not in r.err and databricks.token not in r.err
    last = r.err.strip().splitlines()[-1]
    assert last.startswith(f"dockrun: error: Databricks {databricks.url}: ") and "text/html" in last
    assert not databricks.submitted


def test_an_unknown_life_cycle_state_is_not_an_end(cli, databricks, remote_env, tmp_path: Path,  # noqa: F811
                                                   project: Path) -> None:
    def newer(answer: dict) -> dict:  # a state this dockrun has never heard of, while the run runs
        for state in [answer.get("state", {})] + [t.get("state", {}) for t in answer.get("tasks", [])]:
            if state.get("life_cycle_state") in ("PENDING", "RUNNING", "TERMINATING"):
                state["life_cycle_state"] = "SOME_FUTURE_STATE"
        return answer

    databricks.rewrite("/api/2.2/jobs/runs/get", newer)
    r = cli("run", str(project), "-b", "databricks", "-c", _cluster_file(tmp_path), "-P", "alpha=0.5",
            env=remote_env)
    assert r.code == 0, r.err
    assert "alpha: 0.5" in r.out


def test_a_long_wait_is_said_and_the_budget_is_kept(databricks, monkeypatch) -> None:  # noqa: F811
    lines: list[str] = []
    client = DatabricksClient(Workspace(databricks.url, databricks.token), lines.append)
    databricks.fail_next("/api/2.0/dbfs/get-status", 503, retry_after=2)
    assert client.size("/nothing") is None
    assert len(lines) == 1 and "503 TEMPORARILY_UNAVAILABLE; waiting 2 s" in lines[0]
    monkeypatch.setenv("DOCKRUN_DATABRICKS_RETRY_S", "1")
    databricks.fail_next("/api/2.0/dbfs/get-status", 429, retry_after=30)
    before = len(databricks.requests)
    with pytest.raises(RemoteError, match="429 REQUEST_LIMIT_EXCEEDED"):
        client.size("/nothing")
    # A wait past the budget is not begun: one request, refused, and no "waiting 30 s" line (a client
    # that slept it out would have said so first, or asked again after).
    assert [s for _, p, s in databricks.requests[before:]] == [429] and len(lines) == 1
    assert databricks.token not in " ".join(lines)
