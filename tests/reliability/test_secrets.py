"""Secrets: sentinel values planted wherever users keep credentials never show up in what dockrun
writes, prints, labels or builds, nor in what it sends to MLflow (real engine, real Git server,
real MLflow server)."""
from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from conftest import free_port, image_files_containing, write_project
from git_fixtures import GitHttpServer, files_containing, git, git_http_server, serve_remote  # noqa: F401

PROJECT = {
    "sub/MLproject": """name: secretive
python_env: python_env.yaml
entry_points:
  main:
    parameters: {alpha: float}
    command: "python run.py {alpha}"
  fail:
    command: "python -c 'import sys; sys.exit(3)'"
""",
    "sub/python_env.yaml": "python: '3.11'\ndependencies: [tabulate==0.9.0]\n",
    "sub/run.py": "import os, sys\nprint('alpha', sys.argv[1], sorted(k for k in os.environ if 'SECRET' in k))\n"
                  "uri = os.environ.get('MLFLOW_TRACKING_URI', '')\n"
                  "password = bool(os.environ.get('MLFLOW_TRACKING_PASSWORD'))\n"
                  "print('tracking', uri.split(':')[0], '@' in uri, password)\n",
}


def test_no_sentinel_reaches_records_logs_errors_labels_caches_or_images(
        cli, git_http_server: GitHttpServer, mlflow_server: str, home: Path, tmp_path: Path) -> None:  # noqa: F811
    sentinels = {name: f"SENTINEL{i}x{name.lower()}" for i, name in enumerate(
        ["GIT", "REGISTRY", "DOCKERCFG", "DBX_TOKEN", "DBX_PROFILE", "AWS", "TRACKING", "URLUSER",
         "TRACKING_PW", "TRACKING_URL"])}
    remote = serve_remote(git_http_server, tmp_path / "remotes", "team", dict(PROJECT))
    git("tag", "v1", cwd=remote.work)
    git("push", "-q", "--tags", str(remote.bare), cwd=remote.work)
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    auth = base64.b64encode(f"user:{sentinels['DOCKERCFG']}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {"127.0.0.1:1": {"auth": auth}}}))
    dbcfg = tmp_path / "databrickscfg"
    dbcfg.write_text(f"[DEFAULT]\nhost = https://dbc.example\ntoken = {sentinels['DBX_PROFILE']}\n")
    env = {
        "DOCKRUN_GIT_USERNAME": git_http_server.username, "DOCKRUN_GIT_PASSWORD": git_http_server.password,
        "MLFLOW_GIT_PASSWORD": sentinels["GIT"],  # the DOCKRUN_ one wins; this one must not leak either
        "DOCKRUN_REGISTRY_USERNAME": "user", "DOCKRUN_REGISTRY_PASSWORD": sentinels["REGISTRY"],
        "DOCKER_CONFIG": str(docker_config), "DATABRICKS_TOKEN": sentinels["DBX_TOKEN"],
        "DATABRICKS_CONFIG_FILE": str(dbcfg), "AWS_SECRET_ACCESS_KEY": sentinels["AWS"],
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "MLFLOW_TRACKING_TOKEN": sentinels["TRACKING"],
        "MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": sentinels["TRACKING_PW"],
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
    }
    uri = git_http_server.url("team.git") + "#sub"
    outputs = []
    ok = cli("run", uri, "-v", "v1", "-P", "alpha=0.5", env=env)
    assert ok.code == 0 and "alpha 0.5 []" in ok.out, ok.err  # no secret variable reaches the container
    outputs.append(ok)
    failed = cli("run", uri, "-v", "v1", "-e", "fail", env=env)
    assert failed.code == 1
    outputs.append(failed)
    # Credentials in the URI itself (the password is the sentinel; the server refuses it: an error)
    wrong = cli("run", git_http_server.url("team.git", f"user:{sentinels['URLUSER']}") + "#sub", "-v", "v1", env={
        k: v for k, v in env.items() if not k.startswith(("DOCKRUN_GIT", "MLFLOW_GIT"))})
    assert wrong.code == 2
    outputs.append(wrong)
    # Tracked, with the password in the server's URL (option or variable) and in the variables.
    port = mlflow_server.rsplit(":", 1)[1]
    with_userinfo = f"http://alice:{sentinels['TRACKING_URL']}@127.0.0.1:{port}"
    tracked = cli("run", uri, "-v", "v1", "-P", "alpha=0.25", "--tracking-uri", with_userinfo,
                  "--experiment-name", "secrets", env=env)
    assert tracked.code == 0 and "alpha 0.25 []" in tracked.out, tracked.err
    assert "tracking http False True" in tracked.out  # the container's URI has no userinfo; MLflow gets it apart
    outputs.append(tracked)
    tracked_failure = cli("run", uri, "-v", "v1", "-e", "fail", env={
        **env, "MLFLOW_TRACKING_URI": with_userinfo, "MLFLOW_EXPERIMENT_NAME": "secrets"})
    assert tracked_failure.code == 1
    outputs.append(tracked_failure)
    unreachable = cli("run", uri, "-v", "v1", "-P", "alpha=1", "--tracking-uri",
                      f"http://alice:{sentinels['TRACKING_URL']}@127.0.0.1:{free_port()}", env=env)
    assert unreachable.code == 2 and "cannot reach the MLflow tracking server" in unreachable.err
    outputs.append(unreachable)
    mlflow_runs = _mlflow_runs(mlflow_server, "secrets")
    assert sorted(r["info"]["status"] for r in mlflow_runs) == ["FAILED", "FINISHED"]
    for args in (("runs", "list"), ("runs", "show", _latest(cli)), ("images", "list")):
        outputs.append(cli(*args, env=env))
    shown = json.loads(cli("runs", "show", _latest(cli)).out)
    assert shown["tracking_uri"] == mlflow_server  # recorded without the userinfo
    bad_input = cli("run", str(write_project(tmp_path / "bad", {"MLproject": "name: [\n"})), env=env)
    assert bad_input.code == 2
    outputs.append(bad_input)

    printed = "".join(r.out + r.err for r in outputs)
    images = _images_of_runs(home)
    assert images
    labels = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}} {{json .Config.Env}}",
                             *images], capture_output=True, text=True, check=True).stdout
    found: dict[str, list[str]] = {}
    for name, value in {**sentinels, "GIT_SERVER": git_http_server.password}.items():
        hits = [str(p) for p in files_containing(home, value)]  # records, logs, clone cache
        hits += ["printed output"] if value in printed else []
        hits += ["image labels/env"] if value in labels else []
        hits += ["the MLflow server's runs"] if value in json.dumps(mlflow_runs) else []
        hits += image_files_containing(images, [value], tmp_path)
        if hits:
            found[name] = hits
    assert found == {}


def _mlflow_runs(url: str, experiment: str) -> list[dict]:
    """Every run of ``experiment`` as the server holds it (tags, params, status)."""
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({"experiment_name": experiment})
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=10) as r:
        experiment_id = json.loads(r.read())["experiment"]["experiment_id"]
    body = json.dumps({"experiment_ids": [experiment_id]}).encode()
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/runs/search", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read()).get("runs", [])


def _latest(cli) -> str:  # noqa: ANN001
    return cli("runs", "list").out.splitlines()[1].split()[0]


def _images_of_runs(home: Path) -> list[str]:
    """The project images these runs used, and the environment images under them."""
    from dockrun.store.records import RunStore

    projects = sorted({r.image for r in RunStore(home).list(100) if r.image})
    keys = subprocess.run(["docker", "image", "inspect", "-f", '{{index .Config.Labels "dockrun.env-hash"}}',
                           *projects], capture_output=True, text=True, check=True).stdout.split()
    return projects + sorted({f"dockrun-env:{k[:32]}" for k in keys})


pytestmark = pytest.mark.usefixtures("no_leaks")
