"""MLflow tracking against a real `mlflow server` on 127.0.0.1 (run from an image of the conda-uv
example with the full MLflow, whose server the example's mlflow-skinny lacks, with the host's
network): the run is created, parameterised, reachable from the container although the URI says
127.0.0.1, and ends with the run's status."""
from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

from conftest import REPO, free_port

pytestmark = pytest.mark.usefixtures("no_leaks")
EXAMPLE = str(REPO / "examples" / "conda-uv")


def _get(url: str, path: str, **query: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}", timeout=10) as r:
        return json.loads(r.read())


def test_tracked_run_with_localhost_uri(cli, mlflow_server: str) -> None:
    r = cli("run", EXAMPLE, "--env-manager", "uv", "-P", "C=0.5", "--tracking-uri", mlflow_server,
            "--experiment-name", "dockrun-e2e", "--run-name", "first", timeout=900)
    assert r.code == 0, r.err[-2000:]
    mlflow_run_id = r.out.split("logged to MLflow run ")[1].split()[0]
    run = _get(mlflow_server, "runs/get", run_id=mlflow_run_id)["run"]
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == "first"
    data = run["data"]
    assert {"key": "C", "value": "0.5"} in data["params"]
    assert any(m["key"] == "accuracy" and abs(m["value"] - 0.9778) < 1e-3 for m in data["metrics"])
    tags = {t["key"]: t["value"] for t in data["tags"]}
    assert tags["mlflow.project.backend"] == "local" and tags["mlflow.project.entryPoint"] == "main"
    assert tags["mlflow.source.type"] == "PROJECT" and tags["mlflow.docker.image.id"].startswith("sha256:")
    experiment = _get(mlflow_server, "experiments/get-by-name", experiment_name="dockrun-e2e")["experiment"]
    assert run["info"]["experiment_id"] == experiment["experiment_id"]
    record = json.loads(cli("runs", "show", tags["dockrun.run-id"]).out)
    assert record["mlflow_run_id"] == mlflow_run_id and record["tracking_uri"] == mlflow_server


def test_failed_tracked_run_is_failed_in_mlflow(cli, mlflow_server: str) -> None:
    r = cli("run", EXAMPLE, "--env-manager", "uv", "-P", "C=-1", "--tracking-uri", mlflow_server, timeout=900)
    assert r.code == 1
    run_id = r.err.split("dockrun: error: run ")[1].split()[0]
    record = json.loads(cli("runs", "show", run_id).out)
    run = _get(mlflow_server, "runs/get", run_id=record["mlflow_run_id"])["run"]
    assert run["info"]["status"] == "FAILED" and run["info"]["experiment_id"] == "0"


def test_tracking_errors_are_one_line(cli) -> None:
    r = cli("run", EXAMPLE, "--tracking-uri", "postgresql://u:hunter2@db/x")
    assert r.code == 2 and "expected http(s)://HOST" in r.err and "hunter2" not in r.err
    r = cli("run", EXAMPLE, "--experiment-name", "x", "--experiment-id", "1")
    assert r.code == 2 and "not both" in r.err
    built = cli("build", EXAMPLE, "--env-manager", "uv", timeout=900)  # the image is there: no build lines
    assert built.code == 0, built.err[-2000:]
    r = cli("run", EXAMPLE, "--env-manager", "uv", "--tracking-uri", f"http://127.0.0.1:{free_port()}")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err[-2000:]
    assert r.err.startswith("dockrun: error: ") and "cannot reach the MLflow tracking server" in r.err


def test_run_id_logs_into_an_existing_mlflow_run(cli, mlflow_server: str) -> None:
    """`--run-id` as in `mlflow run`: no new MLflow run, the given one gets the metrics and the end;
    `--build-image` is accepted as in `mlflow run` (dockrun always builds the code in)."""
    req = urllib.request.Request(f"{mlflow_server}/api/2.0/mlflow/runs/create", method="POST",
                                 data=json.dumps({"experiment_id": "0"}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        existing = json.loads(r.read())["run"]["info"]["run_id"]
    r = cli("run", EXAMPLE, "--env-manager", "uv", "--build-image", "-P", "C=2", "--tracking-uri", mlflow_server,
            "--run-id", existing, timeout=900)
    assert r.code == 0, r.err[-2000:]
    assert f"logged to MLflow run {existing}" in r.out
    run = _get(mlflow_server, "runs/get", run_id=existing)["run"]
    assert run["info"]["status"] == "FINISHED" and any(m["key"] == "accuracy" for m in run["data"]["metrics"])


def test_a_tracked_sweep_tables_the_metrics_each_run_logged_to_mlflow(cli, mlflow_server: str, tmp_path) -> None:
    """The sweep's table shows what each run logged to MLflow, read back from the server (this copy
    of the example logs `logged_accuracy` to MLflow only and writes no metrics file), sorted by it."""
    import shutil

    project = tmp_path / "conda-uv"
    shutil.copytree(EXAMPLE, project)
    train = (project / "train.py").read_text()
    train = train.replace('os.environ.get("DOCKRUN_OUTPUT_DIR", ".")', '"/tmp"')
    (project / "train.py").write_text(train.replace('log_metric("accuracy"', 'log_metric("logged_accuracy"'))
    r = cli("sweep", str(project), "--env-manager", "uv", "-P", "C=0.01,1.0", "--parallel", "2",
            "--experiment-name", "dockrun-sweep", "--sort", "-logged_accuracy",
            env={"MLFLOW_TRACKING_URI": mlflow_server}, timeout=900)
    assert r.code == 0, r.err[-2000:]
    lines = r.out.strip().splitlines()
    header, rows = lines[1].split(), [line.split() for line in lines[2:]]
    assert header[-1] == "logged_accuracy" and [row[1] for row in rows] == ["FINISHED", "FINISHED"], r.out
    logged = []
    for row in rows:
        record = json.loads(cli("runs", "show", row[0]).out)
        run = _get(mlflow_server, "runs/get", run_id=record["mlflow_run_id"])["run"]
        logged.append(next(m["value"] for m in run["data"]["metrics"] if m["key"] == "logged_accuracy"))
    assert [float(row[-1]) for row in rows] == [float(f"{v:.6g}") for v in logged]
    assert logged == sorted(logged, reverse=True) and logged[0] != logged[1], logged
