"""Remote mode's pure parts: workspace and cluster config, rendering for the cluster, the submit
body, the project archive."""
from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from conftest import write_project
from dockrun.backends.databricks.backend import ON_CLUSTER
from dockrun.backends.databricks.config import Cluster, cluster_from_config
from dockrun.backends.databricks.submit import LauncherTask, project_archive, submit_body
from dockrun.databricks_api.workspace import workspace
from dockrun.errors import ConfigError, ParameterError
from dockrun.images.environment import EnvSpec
from dockrun.project.params import render_command
from dockrun.project.spec import EntryPoint, Parameter

SPEC = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}


def test_workspace_from_env_or_config_file(tmp_path: Path) -> None:
    assert workspace({"DATABRICKS_HOST": "adb-1.azuredatabricks.net", "DATABRICKS_TOKEN": "t"}).host == \
        "https://adb-1.azuredatabricks.net"
    cfg = tmp_path / "cfg"
    cfg.write_text("[DEFAULT]\nhost = https://x.cloud.databricks.com/\ntoken = dapi123\n")
    ws = workspace({}, cfg)
    assert (ws.host, ws.token) == ("https://x.cloud.databricks.com", "dapi123")
    with pytest.raises(ConfigError, match="set DATABRICKS_HOST and DATABRICKS_TOKEN"):
        workspace({}, tmp_path / "missing")


def test_cluster_config_forms_and_errors() -> None:
    assert cluster_from_config(SPEC).new_cluster == SPEC  # mlflow run's form: the spec itself
    assert cluster_from_config({"new_cluster": SPEC, "libraries": [{"pypi": {"package": "x"}}]}).libraries
    assert cluster_from_config('{"existing_cluster_id": "0123-abc"}').existing_cluster_id == "0123-abc"
    for bad, msg in [([], "expected a JSON object"), ({"spark_version": "x", "num_workers": 1}, "node_type_id"),
                     ({"node_type_id": "a", "num_workers": 1}, "spark_version is required"),
                     ({"new_cluster": SPEC, "existing_cluster_id": "x"}, "not both"),
                     ({"new_cluster": SPEC, "extra": 1}, "unknown field"), ("{nope", "not valid JSON")]:
        with pytest.raises(ConfigError, match=msg):
            cluster_from_config(bad)


def remote_command(ep: EntryPoint, given: dict[str, str]):  # noqa: ANN201
    return render_command(ep, given, placement=ON_CLUSTER)


def test_remote_rendering_maps_dbfs_and_refuses_host_paths() -> None:
    ep = EntryPoint("main", "python t.py {data} {alpha} {d}", (Parameter("data", "path"), Parameter("alpha", "float"),
                                                                Parameter("d", "path", "data/x.csv")))
    r = remote_command(ep, {"data": "dbfs:/ml/train.csv", "alpha": "0.5"})
    assert r.command == "python t.py /dbfs/ml/train.csv 0.5 data/x.csv" and r.mounts == ()
    assert remote_command(ep, {"data": "s3://b/k", "alpha": "1"}).command.startswith("python t.py s3://b/k")
    with pytest.raises(ParameterError, match="does not exist on Databricks"):
        remote_command(ep, {"data": "/home/me/x.csv", "alpha": "1"})
    with pytest.raises(ParameterError, match="expected a float"):
        remote_command(ep, {"data": "dbfs:/x", "alpha": "abc"})


def test_submit_body() -> None:
    env = EnvSpec(kind="docker", base_image="org/img:1")
    task = LauncherTask("r1", "proj", "dbfs:/l.py", "dbfs:/p.tar.gz", "python t.py", "dbfs:/dockrun/runs/r1/outputs")
    body = submit_body(task, Cluster(SPEC, None), env, [{"pypi": {"package": "a==1"}}])
    task = body["tasks"][0]
    assert body["idempotency_token"] == "r1" and task["task_key"] == "dockrun"
    assert task["new_cluster"]["docker_image"] == {"url": "org/img:1"}
    assert task["spark_python_task"] == {"python_file": "dbfs:/l.py", "parameters": [
        "dbfs:/p.tar.gz", "python t.py", "r1", "dbfs:/dockrun/runs/r1/outputs"]}
    assert task["libraries"] == [{"pypi": {"package": "a==1"}}]
    existing = submit_body(LauncherTask("r2", "p", "l", "a", "c", "o"), Cluster(None, "c-1"),
                           EnvSpec("system", "b"), [])
    assert existing["tasks"][0]["existing_cluster_id"] == "c-1" and "libraries" not in existing["tasks"][0]


def test_project_archive_is_deterministic_and_honours_dockerignore(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"MLproject": "name: p\n", "a.py": "1", ".dockerignore": "*.log\n",
                                          "x.log": "no", ".git/config": "secret"})
    blob = project_archive(root)
    assert blob == project_archive(root)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        assert sorted(tar.getnames()) == [".dockerignore", "MLproject", "a.py"]


def test_a_named_profile_never_borrows_another_profiles_token(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.write_text("[DEFAULT]\nhost = https://default.example\ntoken = dflt\n\n[team]\nhost = https://team.example\n")
    env = {"DATABRICKS_CONFIG_FILE": str(cfg)}
    assert workspace(env).token == "dflt"
    for profile in ("team", "missing"):  # a host without a token, or no such profile: never DEFAULT's
        with pytest.raises(ConfigError, match="set DATABRICKS_HOST and DATABRICKS_TOKEN"):
            workspace({**env, "DATABRICKS_CONFIG_PROFILE": profile})
