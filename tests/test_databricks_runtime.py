"""The launcher on a runtime, end to end against the emulator, which runs a task as Databricks does:
in a container of a runtime-like image (or the cluster's docker_image), by its /databricks/python3
with the task's libraries installed into it, DBFS at /dbfs and volumes at /Volumes, with only what
that Python writes to sys.stdout/sys.stderr as the task's output (runs/get-output's ``logs``, the
last 5 MB of it), and an uncaught exception as ``error_trace``."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import write_project
from databricks_emulator import DatabricksEmulator, databricks  # noqa: F401 - the fixture
from dockrun.backends.databricks.backend import LAUNCHER

CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}
PROJECT = {
    "MLproject": """
        name: rt
        python_env: python_env.yaml
        entry_points:
          main: "echo from bash; python show.py; echo to stderr >&2"
          fail: "echo about to fail; exit 3"
          killed: "echo before the signal; kill -9 $$"
          chatty: "python -c 'import sys; [print(\\"line\\", i) for i in range(3000)]'"
    """,
    "python_env.yaml": "python: '3.11'\ndependencies: [tabulate]\n",
    "show.py": "import sys, tabulate\nprint('python', sys.executable)\nprint(tabulate.tabulate([['x', 1]]))\n",
}


def _env(emu: DatabricksEmulator) -> dict[str, str]:
    return {"DATABRICKS_HOST": emu.url, "DATABRICKS_TOKEN": emu.token, "DATABRICKS_CONFIG_FILE": "/nonexistent",
            "DOCKRUN_DATABRICKS_POLL_S": "0.2", "DOCKRUN_DATABRICKS_RETRY_S": "20"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "rt", PROJECT)


def _run(cli, emu: DatabricksEmulator, project: Path, *args: str):  # noqa: ANN001, ANN202
    return cli("run", str(project), "-b", "databricks", "-c", json.dumps(CLUSTER), *args, env=_env(emu))


def _record(cli, emu: DatabricksEmulator) -> dict:  # noqa: ANN001
    run_id = emu.submitted[-1]["tasks"][0]["spark_python_task"]["parameters"][2]
    return json.loads(cli("runs", "show", run_id, env=_env(emu)).out)


def test_the_commands_output_reaches_the_task_output_and_its_python_is_the_tasks(
        cli, databricks, project: Path) -> None:  # noqa: F811
    assert importlib.util.find_spec("tabulate") is None  # so only the task's environment can have it
    r = _run(cli, databricks, project)
    assert r.code == 0, r.out + r.err
    # bash's and a child Python's output, relayed through the task's Python into its logs
    assert "from bash" in r.out and "to stderr" in r.out and "-  -" in r.out
    python = r.out.split("python ", 1)[1].split()[0]
    # `python` in the command is the task's (where its cluster libraries are: tabulate above), in its container
    assert python == "/databricks/python3/bin/python"
    assert _record(cli, databricks)["exit_code"] == 0


def test_a_failing_command_fails_the_run_with_its_exit_code(cli, databricks, project: Path) -> None:  # noqa: F811
    r = _run(cli, databricks, project, "-e", "fail")
    assert r.code == 1 and "about to fail" in r.out
    assert r.err.strip().splitlines()[-1].startswith("dockrun: error: run ")
    assert "command exited with status 3" in r.err.strip().splitlines()[-1]
    record = _record(cli, databricks)
    assert (record["status"], record["exit_code"], record["reason"]) == ("FAILED", 3, "command exited with status 3")
    r = _run(cli, databricks, project, "-e", "killed")  # a signal, as a shell says it: 128 + 9
    assert r.code == 1 and "before the signal" in r.out and _record(cli, databricks)["exit_code"] == 137


@pytest.fixture
def small_logs(databricks_runtime: str) -> Iterator[DatabricksEmulator]:
    """A workspace whose runs/get-output keeps 4 KB instead of 5 MB (the same rule, cheaper to reach)."""
    emulator = DatabricksEmulator(logs_limit=4096).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def test_truncated_logs_are_said(cli, small_logs: DatabricksEmulator, project: Path) -> None:
    r = _run(cli, small_logs, project, "-e", "chatty")
    assert r.code == 0, r.err
    assert r.out.endswith("line 2999\n") and "line 0\n" not in r.out
    assert "Databricks keeps only the last 5 MB of a task's output" in r.err
    r = _run(cli, small_logs, project)
    assert r.code == 0 and "keeps only" not in r.err


def test_a_crashing_launcher_shows_its_error_trace(cli, databricks, project: Path) -> None:  # noqa: F811
    # What a task that raises looks like: a launcher that breaks (here: replaced in the workspace by
    # the user's own hand once the run is submitted, after dockrun checked it).
    name = f"/Users/{databricks.user_name}/.dockrun/launcher/{hashlib.sha256(LAUNCHER.read_bytes()).hexdigest()}.py"

    def break_the_launcher(answer: dict) -> dict:
        databricks.workspace.files[name] = b"raise RuntimeError('the launcher broke')\n"
        return answer

    databricks.rewrite("/api/2.2/jobs/runs/submit", break_the_launcher)
    r = _run(cli, databricks, project)
    assert r.code == 1
    assert "Traceback (most recent call last):" in r.err and "RuntimeError: the launcher broke" in r.err
    assert r.err.strip().splitlines()[-1].endswith("FAILED: RuntimeError: the launcher broke")
    assert _record(cli, databricks)["reason"] == "RuntimeError: the launcher broke"


MISSING = "dockrun-no-such-package-4711"


@pytest.mark.parametrize("serverless", [False, True], ids=["cluster library", "serverless dependency"])
def test_a_library_that_does_not_install_fails_the_run(cli, databricks, tmp_path: Path,  # noqa: F811
                                                       serverless: bool) -> None:
    project = write_project(tmp_path / "lib", {**PROJECT, "python_env.yaml": f"dependencies: [{MISSING}]\n"})
    config = {"serverless": True, "volume": "/Volumes/main/ml/dockrun"} if serverless else CLUSTER
    r = cli("run", str(project), "-b", "databricks", "-c", json.dumps(config), env=_env(databricks))
    assert r.code == 1 and "from bash" not in r.out
    last = r.err.strip().splitlines()[-1]
    assert last.startswith("dockrun: error: run ") and "FAILED: LIBRARY_INSTALLATION_ERROR: Library installation " \
        "failed for library due to user error" in last and MISSING in last
    record = _record(cli, databricks)
    assert record["status"] == "FAILED" and record["reason"].startswith("LIBRARY_INSTALLATION_ERROR: ")
    assert record["exit_code"] is None


@pytest.mark.parametrize("volume", [None, "/Volumes/main/ml/dockrun"], ids=["dbfs root", "volume"])
def test_the_launcher_reads_where_clusters_mount_dbfs_and_volumes(cli, databricks, project: Path,  # noqa: F811
                                                                   volume: str | None) -> None:
    """The launcher that ships has no test hook: variables on the cluster (an admin's, a policy's)
    do not move where it reads the project and writes the outputs: /dbfs and /Volumes, as mounted."""
    elsewhere = {"DOCKRUN_DBFS_FUSE": "/tmp/elsewhere", "DOCKRUN_VOLUMES_ROOT": "/tmp/elsewhere"}
    config = {**CLUSTER, "spark_env_vars": elsewhere, **({"volume": volume} if volume else {})}
    r = cli("run", str(project), "-b", "databricks", "-c", json.dumps(config), env=_env(databricks))
    assert r.code == 0, r.out + r.err
    assert "from bash" in r.out and "-  -" in r.out
