"""Remote mode's pure parts: workspace and cluster config, rendering for the cluster, the submit
body, the project archive."""
from __future__ import annotations

import ast
import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from conftest import write_project
from dockrun.backends.databricks import launcher
from dockrun.backends.databricks.backend import LAUNCHER, ON_CLUSTER
from dockrun.backends.databricks.config import Cluster, check_docker_env, cluster_from_config
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
    task = LauncherTask("r1", "proj", "dbfs:/l.py", "dbfs:/p.tar.gz", "python t.py", "dbfs:/dockrun/runs/r1/outputs",
                        "ab12")
    body = submit_body(task, Cluster(SPEC, None), env, [{"pypi": {"package": "a==1"}}])
    task = body["tasks"][0]
    assert body["idempotency_token"] == "r1" and task["task_key"] == "dockrun"
    assert body["queue"] == {"enabled": True}  # queued, not skipped, when the workspace is busy
    assert task["new_cluster"]["docker_image"] == {"url": "org/img:1"}
    assert task["spark_python_task"] == {"python_file": "dbfs:/l.py", "parameters": [
        "dbfs:/p.tar.gz", "python t.py", "r1", "dbfs:/dockrun/runs/r1/outputs", "ab12"]}
    assert task["libraries"] == [{"pypi": {"package": "a==1"}}]
    existing = submit_body(LauncherTask("r2", "p", "l", "a", "c", "o"), Cluster(None, "c-1"),
                           EnvSpec("system", "b"), [])
    assert existing["tasks"][0]["existing_cluster_id"] == "c-1" and "libraries" not in existing["tasks"][0]


def test_serverless_config_and_body() -> None:
    volume = "/Volumes/main/ml/dockrun"
    cluster = cluster_from_config({"serverless": True, "volume": volume, "dependencies": ["rich>=13"]})
    assert cluster.serverless == {"environment_version": "2", "dependencies": ("rich>=13",)}
    task = LauncherTask("r1", "p", f"{volume}/l.py", f"{volume}/a.tar.gz", "python t.py", f"{volume}/o", "ab")
    body = submit_body(task, cluster, EnvSpec("uv", "b"), [{"pypi": {"package": "pyyaml"}}])
    assert body["environments"] == [{"environment_key": "dockrun", "spec": {
        "environment_version": "2", "dependencies": ["pyyaml", "rich>=13"]}}]
    assert body["tasks"][0]["environment_key"] == "dockrun"
    assert not body["tasks"][0].keys() & {"new_cluster", "existing_cluster_id", "libraries"}
    assert cluster_from_config({"serverless": True, "volume": volume, "environment_version": 3}).serverless == {
        "environment_version": "3", "dependencies": ()}
    for bad, msg in [({"serverless": True}, "serverless compute runs no code from the DBFS root"),
                     ({"serverless": True, "volume": volume, "libraries": []}, "has no libraries"),
                     ({"serverless": True, "volume": volume, "new_cluster": SPEC}, "has no new_cluster"),
                     ({"serverless": "yes", "volume": volume}, "serverless: expected true"),
                     ({"serverless": True, "volume": volume, "environment_version": "two"}, "environment_version"),
                     ({"serverless": True, "volume": volume, "dependencies": "rich"}, "dependencies: expected a list"),
                     ({**SPEC, "dependencies": ["x"]}, "add \"serverless\": true")]:
        with pytest.raises(ConfigError, match=msg):
            cluster_from_config(bad)


def test_commands_with_double_braces_are_not_left_for_databricks_to_substitute() -> None:
    for command in ("python t.py '{{job.run_id}}'", "echo }}", launcher.ENCODED + "x", "plain {one} brace"):
        sent = launcher.encode_command(command)
        assert "{{" not in sent and "}}" not in sent and launcher.decode_command(sent) == command
    assert launcher.encode_command("python t.py 0.5") == "python t.py 0.5"  # readable in the run's page
    task = LauncherTask("r1", "p", "dbfs:/l.py", "dbfs:/a", "echo {{run_id}}", "dbfs:/o", "ab")
    assert "{{" not in json.dumps(submit_body(task, Cluster(SPEC, None), EnvSpec("system", "b"), []))


def test_mlflow_form_keeps_dockrun_fields_out_of_the_cluster_spec() -> None:
    cluster = cluster_from_config({**SPEC, "libraries": [{"pypi": {"package": "x"}}], "timeout_seconds": 60})
    assert cluster.new_cluster == SPEC and cluster.timeout_seconds == 60 and len(cluster.libraries) == 1


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
    with pytest.raises(ConfigError, match=r"set host and token in the \[team\] profile"):
        workspace({**env, "DATABRICKS_CONFIG_PROFILE": "team"})  # a host without a token: never DEFAULT's
    with pytest.raises(ConfigError, match=r"profile 'missing' is not in .*cfg"):
        workspace({**env, "DATABRICKS_CONFIG_PROFILE": "missing"})
    # The environment's host with DEFAULT's token would send it to another workspace: the file is
    # read only when the environment names neither host nor credentials (the SDK's rule).
    with pytest.raises(ConfigError, match="set DATABRICKS_HOST and DATABRICKS_TOKEN"):
        workspace({**env, "DATABRICKS_HOST": "https://other.example"})


def test_the_default_profile_can_be_named_in_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.write_text("[__settings__]\ndefault_profile = dev\n\n[dev]\nhost = https://dev.example\ntoken = d\n")
    assert workspace({"DATABRICKS_CONFIG_FILE": str(cfg)}).host == "https://dev.example"


def test_without_the_sdk_oauth_settings_ask_for_the_extra(tmp_path: Path) -> None:
    env = {"DATABRICKS_HOST": "https://w.example", "DATABRICKS_CLIENT_ID": "sp", "DATABRICKS_CLIENT_SECRET": "s3"}
    with pytest.raises(ConfigError, match=r"DATABRICKS_CLIENT_ID needs the Databricks SDK .*"
                                          r"pip install 'dockrun\[databricks\]'") as e:
        workspace(env)
    assert "s3" not in str(e.value)
    cfg = tmp_path / "cfg"
    cfg.write_text("[ci]\nhost = https://w.example\nclient_id = sp\nclient_secret = s3\n")
    with pytest.raises(ConfigError, match="client_id in the profile needs the Databricks SDK"):
        workspace({"DATABRICKS_CONFIG_FILE": str(cfg), "DATABRICKS_CONFIG_PROFILE": "ci"})


# ---- the launcher's unpacking (it runs on the cluster: any Python from 3.8, standard library only) -----

def _tar(path: Path, members: list[tuple[str, bytes | str, bytes]]) -> str:
    """(kind, name, data or link target) -> a tar.gz at ``path``."""
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                             "fifo": tarfile.FIFOTYPE}[kind]
                info.linkname = data.decode()
                tar.addfile(info)
    return str(path)


def test_the_launcher_is_python_3_8_and_standard_library_only() -> None:
    tree = ast.parse(LAUNCHER.read_text(), feature_version=(3, 8))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"base64", "codecs", "hashlib", "io", "os", "shutil", "signal", "subprocess", "sys", "tarfile",
                        "tempfile"}


def test_the_launcher_unpacks_a_project_with_inner_links(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "ok.tar.gz", [("dir", "src", b""), ("file", "src/a.py", b"print(1)"),
                                            ("sym", "link.py", b"src/a.py"), ("sym", "src/up", b".."),
                                            ("hard", "copy.py", b"src/a.py")])
    work = tmp_path / "work"
    work.mkdir()
    launcher.unpack(archive, str(work))
    assert (work / "link.py").read_bytes() == b"print(1)" == (work / "copy.py").read_bytes()
    assert os.readlink(work / "src/up") == ".."


@pytest.mark.parametrize("members", [
    [("file", "/etc/evil", b"x")],
    [("file", "../evil", b"x")],
    [("file", "a/../../evil", b"x")],
    [("sym", "out", b"/etc")],
    [("sym", "out", b"../../..")],
    [("sym", "here", b"."), ("sym", "here/out", b"../x")],  # written through a link, it would leave
    [("dir", "d", b""), ("sym", "d/a", b"../b"), ("sym", "b", b"../outside")],
    [("hard", "h", b"../../etc/passwd")],
    [("fifo", "pipe", b"")],
    [("file", "twice", b"1"), ("file", "twice", b"2")],
], ids=["absolute", "dotdot", "inner dotdot", "absolute link", "link out", "link through link", "link chain",
        "hard link out", "fifo", "duplicate"])
def test_the_launcher_refuses_members_outside_the_project(tmp_path: Path, members) -> None:  # noqa: ANN001
    archive = _tar(tmp_path / "bad.tar.gz", members)
    work = tmp_path / "sandbox" / "work"
    work.mkdir(parents=True)
    with pytest.raises(launcher.Refused):
        launcher.unpack(archive, str(work))
    assert sorted(p.name for p in (tmp_path / "sandbox").iterdir()) == ["work"]  # nothing written beside it


def test_docker_env_runs_only_with_container_services_named() -> None:
    plain = cluster_from_config(SPEC)
    with pytest.raises(ConfigError, match="docker_env runs on Databricks only with Databricks Container Services"):
        check_docker_env(plain, "docker")
    check_docker_env(plain, "uv")
    opted = cluster_from_config({**SPEC, "container_services": True})  # mlflow's form: kept out of the spec
    assert opted.container_services and "container_services" not in opted.new_cluster
    check_docker_env(opted, "docker")
    with pytest.raises(ConfigError, match="needs a new_cluster: an existing cluster runs the image it was started"):
        check_docker_env(cluster_from_config({"existing_cluster_id": "c-1", "container_services": True}), "docker")
    with pytest.raises(ConfigError, match="container_services: expected true or false, got 'yes'"):
        cluster_from_config({**SPEC, "container_services": "yes"})


def test_the_launcher_puts_the_tasks_python_first_and_relays_one_stream(tmp_path: Path) -> None:
    env = launcher.child_env("r1", "/out", ["MLFLOW_RUN_ID=abc", "EMPTY="],
                             environ={"PATH": "/usr/bin:/opt/py/bin:/bin"}, executable="/opt/py/bin/python")
    assert env["PATH"] == "/opt/py/bin:/usr/bin:/bin"  # first, and only once
    assert (env["MLFLOW_RUN_ID"], env["EMPTY"], env["DOCKRUN_RUN_ID"], env["DOCKRUN_OUTPUT_DIR"]) == \
        ("abc", "", "r1", "/out")
    with pytest.raises(launcher.Refused, match="is not NAME=VALUE"):
        launcher.child_env("r1", "/out", ["no-equals"], environ={})
    out = io.StringIO()
    code = launcher.run_command("echo one; echo two >&2; printf 'caf\\xc3'; exit 5", str(tmp_path),
                                {"PATH": os.environ["PATH"]}, out)
    assert code == 5 and out.getvalue() == "one\ntwo\ncaf\ufffd"  # in order, bad bytes replaced
    assert launcher.run_command("kill -TERM $$", str(tmp_path), {"PATH": os.environ["PATH"]}, io.StringIO()) == 143
