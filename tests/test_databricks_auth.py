"""Workspace credentials as the Databricks CLI resolves them (the SDK's unified auth when the
`databricks` extra is installed, PATs and profiles without it), end to end against the emulator:
OAuth M2M, profiles, and no credential ever sent to a workspace it was not issued for."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import write_project
from databricks_emulator import DatabricksEmulator, databricks  # noqa: F401 - the fixture

PROJECT = {"MLproject": "name: auth\nentry_points:\n  main: \"python -c 'print(41 + 1)'\"\n"}
CLUSTER = json.dumps({"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1})
QUICK = {"DOCKRUN_DATABRICKS_POLL_S": "0.2", "DOCKRUN_DATABRICKS_RETRY_S": "10"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "auth", PROJECT)


@pytest.fixture
def other() -> Iterator[DatabricksEmulator]:
    """A second workspace, for credentials that must not travel between the two."""
    emulator = DatabricksEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def no_sdk(tmp_path: Path) -> dict[str, str]:
    """An interpreter on which the `databricks` extra is not installed: a plain `databricks` package
    first on the path hides the SDK's namespace package."""
    shadow = tmp_path / "no-sdk"
    (shadow / "databricks").mkdir(parents=True)
    (shadow / "databricks" / "__init__.py").write_text("")
    return {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Only what the test names: no DATABRICKS_* of the machine, no ~/.databrickscfg."""
    for name in os.environ:
        if name.startswith(("DATABRICKS_", "ARM_")):
            extra.setdefault(name, "")
    return {"DATABRICKS_CONFIG_FILE": str(tmp_path / "databrickscfg"), **QUICK, **extra}


def _run(cli, project: Path, env: dict[str, str]):  # noqa: ANN001, ANN202
    return cli("run", str(project), "-b", "databricks", "-c", CLUSTER, env=env)


def _one_line_error(r) -> str:  # noqa: ANN001
    assert r.code == 2 and "Traceback" not in r.err, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    return lines[0]


def test_oauth_m2m_service_principal(cli, databricks, tmp_path: Path, project: Path) -> None:  # noqa: F811
    env = _env(tmp_path, DATABRICKS_HOST=databricks.url, DATABRICKS_CLIENT_ID=databricks.client_id,
               DATABRICKS_CLIENT_SECRET=databricks.client_secret)
    r = _run(cli, project, env)
    assert r.code == 0, r.err
    assert "42" in r.out
    # Every API call carried a token from the token endpoint; the secret went only there, as Basic auth.
    bearer = [a for a in databricks.authorizations if a.startswith("Bearer ")]
    assert bearer and all(a.startswith("Bearer eyJ") for a in bearer)
    paths = [p for _, p, _ in databricks.requests]
    assert "/oidc/v1/token" in paths and "/api/2.2/jobs/runs/submit" in paths
    run_id = databricks.submitted[-1]["tasks"][0]["spark_python_task"]["parameters"][2]
    shown = cli("runs", "show", run_id, env=env)
    for text in (r.out, r.err, shown.out, json.dumps(databricks.submitted)):
        assert databricks.client_secret not in text


def test_oauth_m2m_from_a_profile(cli, databricks, tmp_path: Path, project: Path) -> None:  # noqa: F811
    (tmp_path / "databrickscfg").write_text(f"[ci]\nhost = {databricks.url}\nclient_id = {databricks.client_id}\n"
                                            f"client_secret = {databricks.client_secret}\n")
    r = _run(cli, project, _env(tmp_path, DATABRICKS_CONFIG_PROFILE="ci"))
    assert r.code == 0, r.err
    assert "42" in r.out


def test_a_wrong_client_secret_is_one_line(cli, databricks, tmp_path: Path, project: Path) -> None:  # noqa: F811
    env = _env(tmp_path, DATABRICKS_HOST=databricks.url, DATABRICKS_CLIENT_ID=databricks.client_id,
               DATABRICKS_CLIENT_SECRET="not-the-secret")
    line = _one_line_error(_run(cli, project, env))
    assert f"Databricks {databricks.url}: credentials refused: invalid_client" in line
    assert "not-the-secret" not in line and not databricks.submitted


def test_no_credential_crosses_to_another_workspace(cli, databricks, other, tmp_path: Path,  # noqa: F811
                                                    project: Path) -> None:
    """DEFAULT holds workspace A's token; [team] names workspace B and has no token of its own."""
    (tmp_path / "databrickscfg").write_text(f"[DEFAULT]\nhost = {databricks.url}\ntoken = {databricks.token}\n\n"
                                            f"[team]\nhost = {other.url}\n")
    assert _run(cli, project, _env(tmp_path)).code == 0  # DEFAULT works, on A
    seen_by_a = len(databricks.requests)
    line = _one_line_error(_run(cli, project, _env(tmp_path, DATABRICKS_CONFIG_PROFILE="team")))
    assert "set DATABRICKS_HOST and DATABRICKS_TOKEN" in line and "none found for the [team] profile" in line
    line = _one_line_error(_run(cli, project, _env(tmp_path, DATABRICKS_HOST=other.url)))
    assert f"none found for {other.url}" in line
    assert not other.submitted and all(databricks.token not in a for a in other.authorizations)
    # A profile that does not exist: an error naming it, and no host contacted at all.
    before_b = len(other.requests)
    line = _one_line_error(_run(cli, project, _env(tmp_path, DATABRICKS_CONFIG_PROFILE="staging")))
    assert "profile 'staging' is not in" in line
    assert len(databricks.requests) == seen_by_a and len(other.requests) == before_b


def test_without_the_sdk_pats_and_profiles_work(cli, databricks, other, tmp_path: Path, project: Path,  # noqa: F811
                                                no_sdk: dict[str, str]) -> None:
    r = _run(cli, project, _env(tmp_path, DATABRICKS_HOST=databricks.url, DATABRICKS_TOKEN=databricks.token, **no_sdk))
    assert r.code == 0, r.err
    assert "42" in r.out
    assert "/.well-known/databricks-config" not in [p for _, p, _ in databricks.requests]  # no SDK at work
    (tmp_path / "databrickscfg").write_text(f"[DEFAULT]\nhost = {databricks.url}\ntoken = {databricks.token}\n\n"
                                            f"[other]\nhost = {other.url}\ntoken = {other.token}\n"
                                            f"[team]\nhost = {other.url}\n")
    r = _run(cli, project, _env(tmp_path, DATABRICKS_CONFIG_PROFILE="other", **no_sdk))
    assert r.code == 0 and other.submitted, r.err
    line = _one_line_error(_run(cli, project, _env(tmp_path, DATABRICKS_CONFIG_PROFILE="team", **no_sdk)))
    assert "[team] profile" in line
    assert all(databricks.token not in a for a in other.authorizations)
    oauth = _env(tmp_path, DATABRICKS_HOST=databricks.url, DATABRICKS_CLIENT_ID=databricks.client_id,
                 DATABRICKS_CLIENT_SECRET=databricks.client_secret, **no_sdk)
    line = _one_line_error(_run(cli, project, oauth))
    assert "pip install 'dockrun[databricks]'" in line and databricks.client_secret not in line


def test_help_does_not_import_the_sdk() -> None:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "dockrun.cli", "run", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert "databricks.sdk" not in p.stderr  # imported only when a Databricks call is made
