"""What runs on Databricks is what dockrun checked, whatever another workspace user writes between
the submit and the task's start (every user can write the DBFS root, every WRITE VOLUME holder any
folder of a volume). Against the emulator (tests/databricks_emulator.py), whose ``before_task``
hook runs just before the cluster reads the task's file: there the other user, a service
principal of the same workspace with a token of its own, swaps what it can reach."""
from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import write_project
from databricks_emulator import DatabricksEmulator, TaskRun, databricks  # noqa: F401 - the fixture

CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}
VOLUME = "/Volumes/main/ml/dockrun"
CHECKED = "the checked code ran"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "raced", {
        "MLproject": "name: raced\nentry_points:\n  main: \"python main.py\"\n",
        "main.py": f"print({CHECKED!r})\n",
    })


def run(cli, emu: DatabricksEmulator, project: Path, config: dict):  # noqa: ANN001, ANN201
    env = {name: "" for name in os.environ if name.startswith("DATABRICKS_")}
    env.update(DATABRICKS_HOST=emu.url, DATABRICKS_TOKEN=emu.token, DOCKRUN_DATABRICKS_POLL_S="0.2")
    return cli("run", str(project), "-b", "databricks", "-c", json.dumps(config), env=env)


class OtherUser:
    """Another principal of the workspace (the emulator's service principal), calling the API."""

    def __init__(self, emu: DatabricksEmulator):
        self.emu = emu
        form = b"grant_type=client_credentials&scope=all-apis"
        basic = base64.b64encode(f"{emu.client_id}:{emu.client_secret}".encode()).decode()
        req = urllib.request.Request(f"{emu.url}/oidc/v1/token", data=form, method="POST", headers={
            "Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            self.token = json.loads(resp.read())["access_token"]
        self.statuses: list[int] = []

    def call(self, method: str, path: str, data: bytes, kind: str = "application/json") -> int:
        req = urllib.request.Request(f"{self.emu.url}{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": kind})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status = resp.status
        except urllib.error.HTTPError as e:
            status = e.code
        self.statuses.append(status)
        return status

    def replace(self, where: str, data: bytes) -> int:
        """Put ``data`` at ``where`` (dbfs:/..., /Volumes/..., or a workspace path) if allowed."""
        if where.startswith("dbfs:/"):
            body = {"path": where[len("dbfs:"):], "contents": base64.b64encode(data).decode(), "overwrite": True}
            return self.call("POST", "/api/2.0/dbfs/put", json.dumps(body).encode())
        if where.startswith("/Volumes/"):
            return self.call("PUT", f"/api/2.0/fs/files{where}?overwrite=true", data, "application/octet-stream")
        body = {"path": where, "format": "AUTO", "content": base64.b64encode(data).decode(), "overwrite": True}
        return self.call("POST", "/api/2.0/workspace/import", json.dumps(body).encode())


def planted_archive(marker: Path) -> bytes:
    """A project archive with the same layout whose main.py leaves a mark."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        code = f"open({str(marker)!r}, 'w').write('swapped code ran')\n".encode()
        info = tarfile.TarInfo("main.py")
        info.size = len(code)
        tar.addfile(info, io.BytesIO(code))
    return raw.getvalue()


def task_parameters(task: TaskRun) -> tuple[str, str]:
    spt = task.spec["spark_python_task"]
    return spt["python_file"], spt["parameters"][0]


@pytest.mark.parametrize("config", [CLUSTER, {**CLUSTER, "volume": VOLUME}], ids=["dbfs root", "volume"])
def test_a_launcher_swapped_after_the_submit_does_not_run(cli, databricks, project: Path,  # noqa: F811
                                                          tmp_path: Path, config: dict) -> None:
    marker = tmp_path / "swapped-launcher-ran"
    other = OtherUser(databricks)
    databricks.before_task = lambda task: other.replace(
        task_parameters(task)[0], f"open({str(marker)!r}, 'w').write('swapped launcher ran')\n".encode())
    r = run(cli, databricks, project, config)
    assert other.statuses  # it tried
    assert not marker.exists(), "the other user's launcher ran as the submitting user"
    assert r.code == 0, r.err
    assert CHECKED in r.out
    assert other.statuses == [403]  # the launcher is in the submitter's workspace home


@pytest.mark.parametrize("config", [CLUSTER, {**CLUSTER, "volume": VOLUME}], ids=["dbfs root", "volume"])
def test_an_archive_swapped_after_the_submit_is_refused(cli, databricks, project: Path,  # noqa: F811
                                                        tmp_path: Path, config: dict) -> None:
    marker = tmp_path / "swapped-code-ran"
    other = OtherUser(databricks)
    databricks.before_task = lambda task: other.replace(task_parameters(task)[1], planted_archive(marker))
    r = run(cli, databricks, project, config)
    assert other.statuses in ([200], [204])  # anyone may write there: the launcher's check is what stops it
    assert r.code == 1
    assert "was changed after the run was submitted, or is corrupt (SHA-256" in r.out + r.err
    assert "nothing was run" in r.out + r.err
    assert not marker.exists() and CHECKED not in r.out


def test_an_archive_swapped_between_the_check_and_the_unpack_cannot_win(cli, databricks, project: Path,  # noqa: F811
                                                                        tmp_path: Path) -> None:
    # The other user swaps the archive right after the launcher has read it for its checksum: the
    # file under the archive's name is a pipe that serves the real bytes to the first reader and is
    # replaced by the planted archive as soon as that reader has it open. A launcher that checks
    # through one open and unpacks through another would unpack the planted one.
    marker = tmp_path / "swapped-code-ran"
    fed = threading.Event()
    feeders: list[threading.Thread] = []

    def swap_under_the_reader(task: TaskRun) -> None:
        archive = task_parameters(task)[1]
        stored = databricks.dbfs_root / archive[len("dbfs:/"):]
        real = stored.read_bytes()
        planted = stored.with_name("planted.tar.gz")
        planted.write_bytes(planted_archive(marker))
        stored.unlink()
        os.mkfifo(stored)

        def feed() -> None:
            with open(stored, "wb") as pipe:  # returns once the launcher has opened the archive
                os.replace(planted, stored)  # from now on the name is the planted archive
                pipe.write(real)
            fed.set()

        feeders.append(threading.Thread(target=feed, daemon=True))
        feeders[0].start()

    databricks.before_task = swap_under_the_reader
    r = run(cli, databricks, project, CLUSTER)
    assert fed.is_set(), r.out + r.err  # the launcher read the real bytes through the pipe
    assert not marker.exists(), "the archive unpacked was not the one checked"
    assert r.code == 0, r.err
    assert CHECKED in r.out
