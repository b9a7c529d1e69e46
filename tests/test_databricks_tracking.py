"""Tracking in remote mode: a run on Databricks is logged into its workspace's MLflow (the emulator
serves MLflow's REST API as a workspace does), with the tags a local run gets; the task logs into it
from inside its container with MLflow's own client (mlflow-skinny, a cluster library), told only
MLFLOW_TRACKING_URI=databricks and the run: no credential of the caller's travels, the runtime's own
are used."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conftest import write_project
from databricks_emulator import DatabricksEmulator, databricks  # noqa: F401 - the fixture

# MLflow's client for the task, as a cluster library (installed once per test session by the emulator).
CLUSTER = json.dumps({"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1,
                      "libraries": [{"pypi": {"package": "mlflow-skinny"}}]})
EXPERIMENT = "/Users/someone@example.com/dockrun"
PROJECT = {"MLproject": """
    name: tracked
    entry_points:
      main:
        parameters: {alpha: {type: float, default: 0.5}}
        command: "echo run=$MLFLOW_RUN_ID exp=$MLFLOW_EXPERIMENT_ID uri=$MLFLOW_TRACKING_URI alpha={alpha}
                  && python log.py {alpha}"
      fail: "exit 4"
""", "log.py": """
    import os, sys
    if os.environ.get("MLFLOW_RUN_ID"):  # tracked: log as a training script would
        import mlflow
        mlflow.log_metric("alpha", float(sys.argv[1]))
        print("logged into", mlflow.get_tracking_uri())
"""}


def _env(emu: DatabricksEmulator, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {name: "" for name in os.environ if name.startswith(("DATABRICKS_", "MLFLOW_"))}
    env.update(DATABRICKS_HOST=emu.url, DATABRICKS_TOKEN=emu.token, DATABRICKS_CONFIG_FILE=str(tmp_path / "cfg"),
               DOCKRUN_DATABRICKS_POLL_S="0.2", DOCKRUN_DATABRICKS_RETRY_S="10")
    env.update(extra)
    return env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "tracked", PROJECT)


def _run(cli, project: Path, env: dict[str, str], *args: str):  # noqa: ANN001, ANN202
    return cli("run", str(project), "-b", "databricks", "-c", CLUSTER, *args, env=env)


def _mlflow_calls(emu: DatabricksEmulator) -> list[str]:
    return [p for _, p, _ in emu.requests if p.startswith("/api/2.0/mlflow/")]


def test_a_remote_run_is_tracked_in_the_workspace(cli, databricks, tmp_path: Path, project: Path) -> None:  # noqa: F811
    r = _run(cli, project, _env(databricks, tmp_path), "--experiment-name", EXPERIMENT, "--run-name", "first",
             "-P", "alpha=0.25")
    assert r.code == 0, r.err
    [experiment] = databricks.mlflow.experiments.values()
    assert experiment["name"] == EXPERIMENT
    [(mlflow_run_id, run)] = databricks.mlflow.runs.items()
    info, data = run["info"], run["data"]
    assert info["experiment_id"] == experiment["experiment_id"] and info["run_name"] == "first"
    assert info["status"] == "FINISHED" and info["end_time"] >= info["start_time"]
    assert info["user_id"] == databricks.user_name
    # the task logged into that run with MLflow's client, told nothing but where
    assert f"run={mlflow_run_id} exp={experiment['experiment_id']} uri=databricks alpha=0.25" in r.out
    assert "logged into databricks" in r.out
    assert [(m["key"], m["value"]) for m in data["metrics"]] == [("alpha", 0.25)]
    assert ("POST", "/api/2.0/mlflow/runs/log-metric", 200) in databricks.requests
    tags = data["tags"]
    assert tags["mlflow.project.backend"] == "databricks" and tags["mlflow.source.type"] == "PROJECT"
    assert tags["mlflow.source.name"] == str(project) and tags["mlflow.project.entryPoint"] == "main"
    assert tags["mlflow.project.env"] == "local" and tags["mlflow.runName"] == "first"
    assert not [k for k in tags if k.startswith("mlflow.docker.")]  # no image on a cluster
    body = databricks.submitted[-1]
    run_id = body["tasks"][0]["spark_python_task"]["parameters"][2]
    assert tags["dockrun.run-id"] == run_id
    remote = json.loads(cli("runs", "show", run_id).out)
    assert tags["mlflow.databricks.runURL"] == remote["remote_url"]
    assert tags["mlflow.databricks.shellJobRunID"] == remote["remote_run_id"]
    assert data["params"] == {"alpha": "0.25"}
    assert (remote["mlflow_run_id"], remote["experiment_id"]) == (mlflow_run_id, experiment["experiment_id"])
    assert remote["tracking_uri"] == "databricks"
    assert databricks.token not in json.dumps(databricks.submitted)  # the caller's token never goes to the task
    # the same experiment again, by ID, and a failing run: FAILED in MLflow too
    r = _run(cli, project, _env(databricks, tmp_path), "-e", "fail", "--experiment-id", experiment["experiment_id"],
             "--tracking-uri", "databricks")
    assert r.code == 1
    assert len(databricks.mlflow.experiments) == 1
    failed = [run for key, run in databricks.mlflow.runs.items() if key != mlflow_run_id]
    assert [run["info"]["status"] for run in failed] == ["FAILED"]


def test_an_mlflow_tracking_uri_for_databricks_in_the_environment_tracks(cli, databricks, tmp_path: Path,  # noqa: F811
                                                                         project: Path) -> None:
    env = _env(databricks, tmp_path, MLFLOW_TRACKING_URI="databricks", MLFLOW_EXPERIMENT_NAME=EXPERIMENT)
    r = _run(cli, project, env)
    assert r.code == 0, r.err
    assert [run["info"]["status"] for run in databricks.mlflow.runs.values()] == ["FINISHED"]


def test_another_tracking_server_in_the_environment_is_left_aside_with_a_line(cli, databricks, tmp_path: Path,  # noqa: F811
                                                                               project: Path) -> None:
    r = _run(cli, project, _env(databricks, tmp_path, MLFLOW_TRACKING_URI="http://127.0.0.1:9"))
    assert r.code == 0, r.err
    assert "MLFLOW_TRACKING_URI set, but not for a Databricks workspace: this run is not tracked" in r.err
    assert "run= " in r.out and not _mlflow_calls(databricks)


@pytest.mark.parametrize("args, message", [
    (("--tracking-uri", "http://user:secret@127.0.0.1:9"), "--tracking-uri http://user:***@127.0.0.1:9: a run on "
                                                            "Databricks is tracked in its workspace's MLflow"),
    (("--run-name", "alone"), "tracking on Databricks needs --experiment-name"),
    (("--experiment-name", "relative"), "--experiment-name 'relative': Databricks names experiments by workspace "
                                        "path: expected an absolute path such as /Users/<you>/relative"),
    (("-A", "gpus=all", "--experiment-name", EXPERIMENT), "-A/--docker-args: not supported by backend databricks"),
])
def test_tracking_refusals_come_before_any_request(cli, databricks, tmp_path: Path, project: Path,  # noqa: F811
                                                   args: tuple[str, ...], message: str) -> None:
    r = _run(cli, project, _env(databricks, tmp_path), *args)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err
    assert r.err.startswith(f"dockrun: error: {message}") and "secret" not in r.err
    assert not databricks.requests


def test_a_profile_of_another_workspace_is_refused(cli, databricks, tmp_path: Path, project: Path) -> None:  # noqa: F811
    other = DatabricksEmulator().start()
    try:
        cfg = tmp_path / "cfg"
        cfg.write_text(f"[other]\nhost = {other.url}\ntoken = {other.token}\n")
        r = _run(cli, project, _env(databricks, tmp_path), "--tracking-uri", "databricks://other",
                 "--experiment-name", EXPERIMENT)
        assert r.code == 2 and "a run on Databricks is tracked in the workspace it runs in" in r.err
        assert not databricks.submitted and not _mlflow_calls(databricks) and not other.requests
        assert other.token not in " ".join(databricks.authorizations)
    finally:
        other.stop()


def test_a_service_principal_tracks_with_its_oauth_token(cli, databricks, tmp_path: Path,  # noqa: F811
                                                         project: Path) -> None:
    env = _env(databricks, tmp_path, DATABRICKS_TOKEN="", DATABRICKS_CLIENT_ID=databricks.client_id,
               DATABRICKS_CLIENT_SECRET=databricks.client_secret)
    r = _run(cli, project, env, "--experiment-name", EXPERIMENT)
    assert r.code == 0, r.err
    [run] = databricks.mlflow.runs.values()
    assert run["info"]["user_id"] == databricks.client_id and run["info"]["status"] == "FINISHED"
    assert databricks.client_secret not in json.dumps(databricks.submitted) + r.out + r.err


def test_run_id_logs_into_an_existing_mlflow_run(cli, databricks, tmp_path: Path, project: Path) -> None:  # noqa: F811
    databricks.mlflow.principal = databricks.user_name
    experiment_id = databricks.mlflow.create_experiment({"name": EXPERIMENT})["experiment_id"]
    existing = databricks.mlflow.create_run({"experiment_id": experiment_id, "run_name": "made elsewhere",
                                             "tags": [{"key": "mlflow.source.name", "value": "notebook"}]})
    run_id = existing["run"]["info"]["run_id"]
    r = _run(cli, project, _env(databricks, tmp_path), "--run-id", run_id)
    assert r.code == 0, r.err
    assert f"run={run_id} exp={experiment_id} uri=databricks" in r.out
    [run] = databricks.mlflow.runs.values()
    tags = run["data"]["tags"]
    # as `mlflow run --run-id`: only the tags of how it ran; the creator's stay
    assert tags["mlflow.project.backend"] == "databricks" and tags["mlflow.source.name"] == "notebook"
    assert run["info"]["status"] == "FINISHED"


def test_a_profile_with_a_service_principal_tracks_with_its_oauth_token(cli, databricks, tmp_path: Path,  # noqa: F811
                                                                        project: Path) -> None:
    (tmp_path / "cfg").write_text(f"[ci]\nhost = {databricks.url}\nclient_id = {databricks.client_id}\n"
                                  f"client_secret = {databricks.client_secret}\n")
    env = _env(databricks, tmp_path, DATABRICKS_HOST="", DATABRICKS_TOKEN="", DATABRICKS_CONFIG_PROFILE="ci")
    r = _run(cli, project, env, "--tracking-uri", "databricks://ci", "--experiment-name", EXPERIMENT)
    assert r.code == 0, r.err
    [run] = databricks.mlflow.runs.values()
    assert run["info"]["user_id"] == databricks.client_id and run["info"]["status"] == "FINISHED"
    assert run["data"]["tags"]["mlflow.databricks.runURL"]  # tagged after the submit, with the same token
    assert databricks.client_secret not in json.dumps(databricks.submitted) + r.out + r.err


def test_a_named_profile_gets_a_token_for_itself_alone(databricks, tmp_path: Path,  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """[ci] is a service principal of workspace A; DEFAULT and the environment hold workspace B's
    host and token, which must neither fill [ci]'s gaps nor receive anything."""
    from dockrun.errors import ConfigError
    from dockrun.tracking.databricks import workspace_credentials

    other = DatabricksEmulator().start()
    try:
        cfg = tmp_path / "cfg"
        cfg.write_text(f"[DEFAULT]\nhost = {other.url}\ntoken = {other.token}\n\n"
                       f"[ci]\nhost = {databricks.url}\nclient_id = {databricks.client_id}\n"
                       f"client_secret = {databricks.client_secret}\n\n[empty]\nhost = {databricks.url}\n")
        environ = {"DATABRICKS_HOST": other.url, "DATABRICKS_TOKEN": other.token, "DATABRICKS_CONFIG_FILE": str(cfg)}
        for name in [n for n in os.environ if n.startswith(("DATABRICKS_", "ARM_"))]:
            monkeypatch.delenv(name)
        for name, value in environ.items():  # the SDK reads the process environment itself
            monkeypatch.setenv(name, value)
        ws = workspace_credentials("databricks://ci", environ)
        assert ws.host == databricks.url and ws.token.startswith("eyJ") and ws.auth_type == "oauth-m2m"
        assert databricks.oauth.valid(ws.token)
        for profile, message in (("empty", "a [empty] profile with host and token"),
                                 ("staging", "profile 'staging' is not in")):
            with pytest.raises(ConfigError, match=re.escape(message)):
                workspace_credentials(f"databricks://{profile}", environ)
        assert not other.requests
        assert "/oidc/v1/token" in [p for _, p, _ in databricks.requests]
        assert all(other.token not in a for a in databricks.authorizations)
    finally:
        other.stop()
