"""Code in a Unity Catalog volume (the Files API), workspaces whose DBFS root is disabled, and
access modes, end to end against the emulator (tests/databricks_emulator.py)."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import write_project
from databricks_emulator import DatabricksEmulator, databricks  # noqa: F401 - the fixture
from dockrun.backends.databricks.config import cluster_from_config
from dockrun.errors import ConfigError

VOLUME = "/Volumes/main/ml/dockrun"
PROJECT = {"MLproject": "name: vol\nentry_points:\n  main: \"python -c 'print(6 * 7)' && echo done > "
                        "$DOCKRUN_OUTPUT_DIR/result.txt\"\n"}
SPEC = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}
SHARED = {**SPEC, "data_security_mode": "USER_ISOLATION"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "vol", PROJECT)


@pytest.fixture
def no_dbfs_root(databricks_runtime: str) -> Iterator[DatabricksEmulator]:
    """A workspace created with the DBFS root disabled (the default for new workspaces)."""
    emulator = DatabricksEmulator(dbfs_root_disabled=True).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _env(emu: DatabricksEmulator, tmp_path: Path, oauth: bool = False) -> dict[str, str]:
    env = {name: "" for name in os.environ if name.startswith("DATABRICKS_")}
    env.update(DATABRICKS_HOST=emu.url, DATABRICKS_CONFIG_FILE=str(tmp_path / "none"),
               DOCKRUN_DATABRICKS_POLL_S="0.2", DOCKRUN_DATABRICKS_RETRY_S="10")
    if oauth:
        env.update(DATABRICKS_CLIENT_ID=emu.client_id, DATABRICKS_CLIENT_SECRET=emu.client_secret)
    else:
        env.update(DATABRICKS_TOKEN=emu.token)
    return env


def _run(cli, project: Path, config: dict, env: dict[str, str]):  # noqa: ANN001, ANN202
    return cli("run", str(project), "-b", "databricks", "-c", json.dumps(config), env=env)


def _dbfs_calls(emu: DatabricksEmulator) -> list[str]:
    return [p for _, p, _ in emu.requests if p.startswith("/api/2.0/dbfs/")]


def test_a_shared_access_cluster_runs_code_from_a_volume(cli, databricks, tmp_path: Path,  # noqa: F811
                                                         project: Path) -> None:
    r = _run(cli, project, {"new_cluster": SHARED, "volume": VOLUME}, _env(databricks, tmp_path))
    assert r.code == 0, r.err
    assert "42" in r.out
    task = databricks.submitted[-1]["tasks"][0]
    launcher, (archive, _, run_id, outputs, digest) = (task["spark_python_task"]["python_file"],
                                                       task["spark_python_task"]["parameters"])
    mine = f"{VOLUME}/{databricks.user_name}"  # each user's own folder in the volume
    home = f"/Users/{databricks.user_name}/.dockrun/launcher/"  # the launcher: in the workspace home
    assert launcher.startswith(home) and archive == f"{mine}/projects/{digest}.tar.gz"
    assert databricks.volume_file(archive) and task["new_cluster"] == SHARED
    assert outputs == f"{mine}/runs/{run_id}/outputs"
    assert databricks.volume_file(f"{outputs}/result.txt") == b"done\n"
    assert json.loads(cli("runs", "show", run_id).out)["outputs"] == outputs
    assert not _dbfs_calls(databricks) and not any(databricks.dbfs_root.iterdir())
    # The same code again: found by size, not uploaded a second time.
    puts = [p for m, p, _ in databricks.requests if m == "PUT"]
    assert _run(cli, project, {"new_cluster": SHARED, "volume": VOLUME}, _env(databricks, tmp_path)).code == 0
    assert [p for m, p, _ in databricks.requests if m == "PUT"] == puts


def test_a_service_principal_gets_its_own_folder(cli, databricks, tmp_path: Path,  # noqa: F811
                                                 project: Path) -> None:
    r = _run(cli, project, {**SPEC, "volume": VOLUME + "/"}, _env(databricks, tmp_path, oauth=True))
    assert r.code == 0, r.err
    archive = databricks.submitted[-1]["tasks"][0]["spark_python_task"]["parameters"][0]
    assert archive.startswith(f"{VOLUME}/{databricks.client_id}/projects/")


def test_without_a_volume_a_shared_cluster_is_refused_before_any_request(cli, databricks,  # noqa: F811
                                                                         tmp_path: Path, project: Path) -> None:
    r = _run(cli, project, SHARED, _env(databricks, tmp_path))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert "data_security_mode USER_ISOLATION" in r.err and '"volume": "/Volumes/' in r.err
    assert not databricks.requests


def test_a_workspace_without_dbfs_root_asks_for_a_volume(cli, no_dbfs_root, tmp_path: Path,
                                                         project: Path) -> None:
    env = _env(no_dbfs_root, tmp_path)
    r = _run(cli, project, SPEC, env)
    assert r.code == 2 and "Traceback" not in r.err, r.err
    line = r.err.strip().splitlines()[-1]
    assert "does not allow files in the DBFS root" in line and '"volume": "/Volumes/<catalog>' in line
    assert not no_dbfs_root.submitted and "vol" not in cli("runs", "list", env=env).out  # nothing left behind
    r = _run(cli, project, {**SPEC, "volume": VOLUME}, env)
    assert r.code == 0, r.err
    assert "42" in r.out


def test_the_volume_field_is_checked() -> None:
    assert cluster_from_config({**SPEC, "volume": VOLUME}).volume == VOLUME  # mlflow's form, plus the volume
    assert cluster_from_config({"existing_cluster_id": "c", "volume": VOLUME + "/code"}).volume == VOLUME + "/code"
    for bad in ("dbfs:/dockrun", "/Volumes/main/ml", "/Volumes/main/ml/../x", 3, "/Volumes/a/b/c d"):
        with pytest.raises(ConfigError, match="volume: expected a Unity Catalog volume path"):
            cluster_from_config({**SPEC, "volume": bad})
    with pytest.raises(ConfigError, match="DATA_SECURITY_MODE_STANDARD .* name a Unity Catalog volume"):
        cluster_from_config({**SPEC, "data_security_mode": "DATA_SECURITY_MODE_STANDARD"})
    assert cluster_from_config({**SPEC, "data_security_mode": "SINGLE_USER"}).volume is None  # DBFS is fine there


# ---- serverless jobs compute, and commands Databricks must not rewrite -------------------------

SERVERLESS = {"serverless": True, "volume": VOLUME}


def test_serverless_compute_gets_the_environment_as_dependencies(cli, databricks, tmp_path: Path) -> None:  # noqa: F811
    project = write_project(tmp_path / "sl", {
        "MLproject": "name: sl\npython_env: python_env.yaml\nentry_points:\n  main: \"python -c 'import yaml; "
                     "print(yaml.safe_dump({{1: 2}}))'\"\n",
        "python_env.yaml": "python: '3.11'\ndependencies: [PyYAML]\n"})
    r = _run(cli, project, {**SERVERLESS, "dependencies": ["six>=1.16"]}, _env(databricks, tmp_path))
    assert r.code == 0, r.err
    assert "1: 2" in r.out
    body = databricks.submitted[-1]
    assert body["environments"] == [{"environment_key": "dockrun", "spec": {
        "environment_version": "2", "dependencies": ["pyyaml", "six>=1.16"]}}]
    task = body["tasks"][0]
    assert task["environment_key"] == "dockrun" and not task.keys() & {"new_cluster", "libraries"}
    assert task["spark_python_task"]["python_file"].startswith(f"/Users/{databricks.user_name}/.dockrun/launcher/")
    assert task["spark_python_task"]["parameters"][0].startswith(f"{VOLUME}/{databricks.user_name}/")


def test_serverless_refuses_a_docker_env_before_any_request(cli, databricks, tmp_path: Path) -> None:  # noqa: F811
    project = write_project(tmp_path / "dk", {"MLproject": "name: dk\ndocker_env:\n  image: python:3.11\n"
                                                           "entry_points:\n  main: \"echo hi\"\n"})
    r = _run(cli, project, SERVERLESS, _env(databricks, tmp_path))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert "serverless compute runs no container image" in r.err
    assert not databricks.requests and "dk" not in cli("runs", "list").out


@pytest.fixture(scope="session")
def dcs_image(databricks_runtime: str) -> str:
    """A Databricks Container Services image of a user's: the runtime's layout and a file of its own
    (built once; the engine's cache keeps it for later sessions)."""
    import hashlib
    import io

    import docker
    from databricks_emulator import RUNTIME

    text = f"FROM {RUNTIME.tag}\nRUN echo 'from the custom image' > /etc/dcs-marker\n"
    tag = f"dockrun-test-dcs:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    docker.from_env().images.build(fileobj=io.BytesIO(text.encode()), tag=tag, rm=True, forcerm=True, pull=False)
    return tag


def _docker_env_project(tmp_path: Path, image: str) -> Path:
    return write_project(tmp_path / "dk", {"MLproject": f"name: dk\ndocker_env:\n  image: {image}\n"
                                                        "entry_points:\n  main: \"cat /etc/dcs-marker\"\n"})


def test_a_docker_env_needs_container_services_named(cli, databricks, tmp_path: Path,  # noqa: F811
                                                      dcs_image: str) -> None:
    project = _docker_env_project(tmp_path, dcs_image)
    r = _run(cli, project, SPEC, _env(databricks, tmp_path))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert "docker_env runs on Databricks only with Databricks Container Services" in r.err
    assert not databricks.requests
    r = _run(cli, project, {**SPEC, "container_services": True}, _env(databricks, tmp_path))
    assert r.code == 0, r.err
    assert databricks.submitted[-1]["tasks"][0]["new_cluster"] == {**SPEC, "docker_image": {"url": dcs_image}}
    assert "from the custom image" in r.out  # the task ran in that image


@pytest.mark.parametrize("image, reason", [
    ("org/dbr:1", "DOCKER_IMAGE_PULL_FAILURE"),  # not on this engine, and no registry here has it
    (os.environ.get("DOCKRUN_BASE_IMAGE") or "dockrun-base:bookworm", "DOCKER_CONTAINER_CREATION_EXCEPTION"),
], ids=["cannot be pulled", "no /databricks/python3"])
def test_an_image_the_cluster_cannot_run_fails_the_run(cli, databricks, tmp_path: Path,  # noqa: F811
                                                       image: str, reason: str) -> None:
    r = _run(cli, _docker_env_project(tmp_path, image), {**SPEC, "container_services": True},
             _env(databricks, tmp_path))
    assert r.code == 1 and "from the custom image" not in r.out, r.out + r.err
    last = r.err.strip().splitlines()[-1]
    assert last.startswith("dockrun: error: run ") and "FAILED: CLUSTER_ERROR: Cluster " in last, last
    assert f"{reason}(CLIENT_ERROR)" in last and image in last
    run_id = databricks.submitted[-1]["tasks"][0]["spark_python_task"]["parameters"][2]
    record = json.loads(cli("runs", "show", run_id).out)
    assert record["status"] == "FAILED" and record["reason"].startswith("CLUSTER_ERROR: ")


def test_a_docker_image_is_pulled_only_from_the_tests_registry(cli, databricks, tmp_path: Path,  # noqa: F811
                                                                dcs_image: str, registry) -> None:
    """An image the engine lacks is pulled as a cluster pulls it, here from a registry on 127.0.0.1
    (the emulator pulls from nowhere else); a tag the registry lacks fails the run as a pull failure."""
    import contextlib

    import docker

    client = docker.from_env()
    remote = f"{registry.address}/dockrun-dcs:{dcs_image.rsplit(':', 1)[1]}"
    client.images.get(dcs_image).tag(remote)
    try:
        for line in client.images.push(remote, stream=True, decode=True):
            assert "error" not in line, line
        client.images.remove(remote)  # only the registry has it now
        config = {**SPEC, "container_services": True}
        r = _run(cli, _docker_env_project(tmp_path / "pulled", remote), config, _env(databricks, tmp_path))
        assert r.code == 0, r.err
        assert "from the custom image" in r.out and client.images.get(remote)
        absent = f"{registry.address}/dockrun-dcs:absent"
        r = _run(cli, _docker_env_project(tmp_path / "absent", absent), config, _env(databricks, tmp_path))
        assert r.code == 1 and "DOCKER_IMAGE_PULL_FAILURE(CLIENT_ERROR)" in r.err and absent in r.err, r.err
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(remote)


def test_double_braces_reach_the_command_as_typed(cli, databricks, tmp_path: Path) -> None:  # noqa: F811
    project = write_project(tmp_path / "br", {
        "MLproject": "name: br\nentry_points:\n  main:\n    parameters: {text: string}\n"
                     "    command: \"python -c 'import sys; print(\\\"got\\\", sys.argv[1])' {text}\"\n"})
    r = cli("run", str(project), "-b", "databricks", "-c", json.dumps(SPEC), "-P", "text=id {{job.run_id}} }}",
            env=_env(databricks, tmp_path))
    assert r.code == 0, r.err
    assert "got id {{job.run_id}} }}" in r.out
    assert "{{" not in json.dumps(databricks.submitted[-1]["tasks"][0]["spark_python_task"]["parameters"])


def test_a_lost_or_refused_volume_upload_is_redone_whole(cli, databricks, tmp_path: Path,  # noqa: F811
                                                         project: Path) -> None:
    import hashlib
    from urllib.parse import quote

    from dockrun.backends.databricks.submit import project_archive

    blob = project_archive(project)
    name = f"{VOLUME}/{databricks.user_name}/projects/{hashlib.sha256(blob).hexdigest()}.tar.gz"
    path = "/api/2.0/fs/files" + quote(name, safe="/")
    databricks.drop_reply(f"PUT {path}")  # written, but the reply is lost
    databricks.fail_next(f"PUT {path}", 503, retry_after=1)  # then refused once
    r = _run(cli, project, {**SPEC, "volume": VOLUME}, _env(databricks, tmp_path))
    assert r.code == 0, r.err
    assert "42" in r.out
    assert [s for m, p, s in databricks.requests if m == "PUT" and p.startswith(path)] == [0, 503, 204]
    assert databricks.volume_file(name) == blob


def test_an_existing_shared_cluster(cli, databricks, tmp_path: Path, project: Path) -> None:  # noqa: F811
    databricks.clusters["0101-shared"] = "USER_ISOLATION"
    env = _env(databricks, tmp_path)
    r = _run(cli, project, {"existing_cluster_id": "0101-shared", "volume": VOLUME}, env)
    assert r.code == 0, r.err
    assert "42" in r.out
    # Without a volume dockrun cannot know the cluster's mode: the run fails, saying why.
    r = _run(cli, project, {"existing_cluster_id": "0101-shared"}, env)
    assert r.code == 1 and "access mode" in r.out + r.err and "Traceback" not in r.err


# ---- where code goes on the DBFS root, and the launcher checked by content ----------------------

def test_on_the_dbfs_root_each_user_has_a_folder_too(cli, databricks, tmp_path: Path,  # noqa: F811
                                                     project: Path) -> None:
    r = _run(cli, project, SPEC, _env(databricks, tmp_path))
    assert r.code == 0, r.err
    task = databricks.submitted[-1]["tasks"][0]
    launcher, (archive, _, run_id, outputs, digest) = (task["spark_python_task"]["python_file"],
                                                       task["spark_python_task"]["parameters"])
    mine = f"dbfs:/dockrun/{databricks.user_name}"
    home = f"/Users/{databricks.user_name}/.dockrun/launcher/"
    assert launcher.startswith(home) and archive == f"{mine}/projects/{digest}.tar.gz"
    assert outputs == f"{mine}/runs/{run_id}/outputs" and databricks.dbfs_file(f"{outputs}/result.txt") == b"done\n"
    r = _run(cli, project, SPEC, _env(databricks, tmp_path, oauth=True))  # a service principal: a folder of its own
    assert r.code == 0, r.err
    archive = databricks.submitted[-1]["tasks"][0]["spark_python_task"]["parameters"][0]
    assert archive == f"dbfs:/dockrun/{databricks.client_id}/projects/{digest}.tar.gz"
    assert sorted(p.name for p in (databricks.dbfs_root / "dockrun").iterdir()) == sorted(
        [databricks.user_name, databricks.client_id])


def test_user_folder_names_are_one_safe_path_component() -> None:
    from dockrun.backends.databricks.backend import user_folder

    assert user_folder("someone@example.com") == "someone@example.com"
    assert user_folder("a1b2-c3d4") == "a1b2-c3d4"  # a service principal's application ID
    assert user_folder("Dom\\jo /x") == "Dom_jo__x"
    for name in ("", ".", ".."):
        assert user_folder(name) == "unknown"


@pytest.mark.parametrize("volume", [None, VOLUME], ids=["dbfs root", "volume"])
def test_a_launcher_replaced_by_other_code_of_the_same_size_is_put_back(cli, databricks, tmp_path: Path,  # noqa: F811
                                                                        project: Path, volume: str | None) -> None:
    import hashlib

    from dockrun.backends.databricks.backend import LAUNCHER

    config = {**SPEC, "volume": volume} if volume else SPEC
    assert _run(cli, project, config, _env(databricks, tmp_path)).code == 0
    launcher = databricks.submitted[-1]["tasks"][0]["spark_python_task"]["python_file"]
    text = LAUNCHER.read_bytes()
    assert launcher == f"/Users/{databricks.user_name}/.dockrun/launcher/{hashlib.sha256(text).hexdigest()}.py"
    assert databricks.workspace.file(launcher) == text
    # Other code of the same size under the launcher's name (only the user or an admin could put it
    # in the user's home; checked by content all the same).
    evil = b"print('not the launcher')\n"
    databricks.workspace.files[launcher] = evil + b"#" * (len(text) - len(evil) - 1) + b"\n"
    before = len(databricks.requests)
    r = _run(cli, project, config, _env(databricks, tmp_path))
    assert r.code == 0, r.err
    assert "42" in r.out and "not the launcher" not in r.out  # the real launcher ran the command
    assert databricks.workspace.file(launcher) == text and f"uploaded the launcher to {launcher}" in r.err

    def written(start: int) -> list[str]:
        return [p for m, p, _ in databricks.requests[start:] if m == "PUT" or p.startswith(
            ("/api/2.0/dbfs/put", "/api/2.0/workspace/import"))]

    assert written(before) == ["/api/2.0/workspace/import"]  # the launcher only: the archive is still right
    # Right as it is: read back, nothing written.
    before = len(databricks.requests)
    r = _run(cli, project, config, _env(databricks, tmp_path))
    assert r.code == 0 and "uploaded the launcher" not in r.err, r.err
    assert not written(before)


def test_files_are_read_back_whole(databricks) -> None:  # noqa: F811
    from dockrun.databricks_api.client import DatabricksClient
    from dockrun.databricks_api.workspace import Workspace

    client = DatabricksClient(Workspace(databricks.url, databricks.token), log=lambda line: None)
    big = os.urandom((1 << 20) * 2 + 123)  # DBFS reads are 1 MB at most
    client.upload("dbfs:/dockrun/x/big.bin", big)
    assert client.read("dbfs:/dockrun/x/big.bin") == big
    client.upload("dbfs:/dockrun/x/mb.bin", big[: 1 << 20])  # exactly one block: the next read is empty
    assert client.read("dbfs:/dockrun/x/mb.bin") == big[: 1 << 20]
    client.upload(f"{VOLUME}/x/small.py", b"print(1)\n")
    assert client.read(f"{VOLUME}/x/small.py") == b"print(1)\n"
    assert client.read("dbfs:/dockrun/x/none") is None and client.read(f"{VOLUME}/x/none") is None
    assert client.ensure(f"{VOLUME}/x/small.py", b"print(2)\n") and client.read(f"{VOLUME}/x/small.py") == b"print(2)\n"
    assert not client.ensure(f"{VOLUME}/x/small.py", b"print(2)\n")
