"""MLflow tracking wherever MLflow tracks: local stores through MLflow's own client (sqlite:, file:,
a path, MLflow's default store), Databricks' hosted MLflow, and the tags `mlflow run` sets.

The decisions are plain functions tested without Docker; the store adapter is tested against real
sqlite stores with MLflow's client; Databricks against a small fake of its MLflow REST API on
127.0.0.1 (cheap: a thread); and one e2e runs the conda-uv example (whose image has MLflow) so that
a metric logged inside the container lands in the user's store.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow  # the test extra has it
import pytest

from conftest import REPO, free_port, write_project
from dockrun.errors import ConfigError
from dockrun.images.environment import EnvSpec
from dockrun.project.source import Source
from dockrun.project.spec import EntryPoint, Parameter
from dockrun.tracking import target as target_mod
from dockrun.tracking.compat import check_store_mlflow, host_mlflow, installed_mlflow, pinned_mlflow, schema_matters
from dockrun.tracking.databricks import workspace_credentials
from dockrun.tracking.runs import end_tracked_run, start_tracked_run
from dockrun.tracking.tags import logged_params, project_tags, source_name
from dockrun.tracking.target import DATABRICKS, SERVER, STORE, container_env, tracking_target

EXAMPLE = str(REPO / "examples" / "conda-uv")


def target(uri: str | None, cwd: Path, name: str | None = None, env: dict | None = None, **kw: str):
    return tracking_target(uri, name, kw.get("experiment_id"), kw.get("run_name"), env or {},
                           kw.get("mlflow_run_id"), cwd)


# ---- where a run is tracked ------------------------------------------------------------------

def test_local_stores_are_absolute_from_the_callers_folder_and_mounted(tmp_path: Path) -> None:
    t = target("sqlite:///mlflow.db", tmp_path)
    assert (t.kind, t.uri, t.store_dir, t.host_network) == (STORE, f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path),
                                                            False)
    (tmp_path / "db").mkdir()
    t = target(f"sqlite:///{tmp_path}/db/m.db?timeout=20", Path("/"))
    assert t.uri == f"sqlite:///{tmp_path}/db/m.db?timeout=20" and t.store_dir == str(tmp_path / "db")
    for given in ("mlruns", "file:mlruns", f"file://{tmp_path}/mlruns", f"{tmp_path}/mlruns"):
        t = target(given, tmp_path)
        assert (t.uri, t.store_dir) == (f"file://{tmp_path}/mlruns", str(tmp_path / "mlruns")), given


def test_the_environment_uri_counts_and_the_option_wins(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "sqlite:///env.db"}
    assert target(None, tmp_path, env=env).uri == f"sqlite:///{tmp_path}/env.db"
    t = target("http://127.0.0.1:5000/", tmp_path, env=env)
    assert (t.kind, t.uri, t.host_network, t.store_dir) == (SERVER, "http://127.0.0.1:5000", True, None)


def test_no_uri_but_an_experiment_goes_to_mlflows_default_store(tmp_path: Path) -> None:
    assert target(None, tmp_path) is None
    assert target(None, tmp_path, "x").uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert target(None, tmp_path, experiment_id="3").experiment_id == "3"
    assert target(None, tmp_path, mlflow_run_id="abc").uri == f"sqlite:///{tmp_path}/mlflow.db"
    t = target(None, tmp_path, env={"MLFLOW_EXPERIMENT_NAME": "from-env"})
    assert t.experiment_name == "from-env" and t.kind == STORE
    (tmp_path / "mlruns" / "0").mkdir(parents=True)
    (tmp_path / "mlruns" / "0" / "meta.yaml").write_text("name: Default\n")
    assert target(None, tmp_path, "x").uri == f"file://{tmp_path}/mlruns"  # MLflow 3 keeps existing data there


@pytest.mark.parametrize("uri, expected", [
    ("sqlite://", "expected http(s)://"),
    ("sqlite:///:memory:", "in-memory store cannot be shared"),
    ("sqlite:///nowhere/m.db", "nowhere does not exist"),
    ("postgresql://u:hunter2@db/x", "for a database server store"),
    ("sqlite:////m.db", "root cannot be mounted"),
    ("databricks://bad profile", "expected databricks or databricks://PROFILE"),
])
def test_bad_tracking_uris_are_one_line_errors_naming_the_option(tmp_path: Path, uri: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        target(uri, tmp_path)
    assert str(e.value).startswith("--tracking-uri") and expected in str(e.value) and "\n" not in str(e.value)
    assert "hunter2" not in str(e.value)


def test_without_the_extra_a_local_store_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(target_mod, "have_module", lambda name: name != "sqlalchemy")
    with pytest.raises(ConfigError, match=r"MLFLOW_TRACKING_URI sqlite:///.*pip install 'dockrun\[mlflow\]'"):
        target(None, tmp_path, env={"MLFLOW_TRACKING_URI": "sqlite:///m.db"})
    with pytest.raises(ConfigError, match=r"default store.*pip install 'dockrun\[mlflow\]'"):
        target(None, tmp_path, "x")
    assert target("http://mlflow.example:5000", tmp_path).kind == SERVER  # REST needs no MLflow


def test_the_cli_without_mlflow_installed_exits_2_with_the_hint(tmp_path: Path, base_image: str) -> None:
    hide = "import sys; sys.modules['mlflow'] = None; from dockrun.cli import main; main()"
    p = subprocess.run([sys.executable, "-c", hide, "run", EXAMPLE, "--experiment-name", "x"], cwd=tmp_path,
                       env={**os.environ, "DOCKRUN_HOME": str(tmp_path / "h"), "MLFLOW_TRACKING_URI": "",
                            "DOCKRUN_BASE_IMAGE": base_image},
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "pip install 'dockrun[mlflow]'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "mlflow.db").exists()


# ---- Databricks ------------------------------------------------------------------------------

def test_databricks_credentials_from_the_environment_or_a_named_profile_only(tmp_path: Path) -> None:
    cfg = tmp_path / "databrickscfg"
    cfg.write_text("[DEFAULT]\nhost = default.example\ntoken = dflt\n\n[team]\nhost = https://team.example/\n"
                   "token = tkn\n\n[hostonly]\nhost = h.example\n")
    env = {"DATABRICKS_CONFIG_FILE": str(cfg)}
    assert workspace_credentials("databricks", env).host == "https://default.example"
    both = {**env, "DATABRICKS_HOST": "https://env.example", "DATABRICKS_TOKEN": "e"}
    assert workspace_credentials("databricks", both).as_env() == {"DATABRICKS_HOST": "https://env.example",
                                                                  "DATABRICKS_TOKEN": "e"}
    creds = workspace_credentials("databricks://team", both)  # the profile, not the environment
    assert (creds.host, creds.token) == ("https://team.example", "tkn") and "tkn" not in repr(creds)
    with pytest.raises(ConfigError, match=r"databricks://hostonly: .*\[hostonly\] profile with host and token"):
        workspace_credentials("databricks://hostonly", env)  # never borrows DEFAULT's token
    with pytest.raises(ConfigError, match="DATABRICKS_HOST and DATABRICKS_TOKEN"):
        tracking_target("databricks", None, None, None, {"DATABRICKS_CONFIG_FILE": str(tmp_path / "none")})
    t = tracking_target("databricks://team", None, None, None, env)
    assert (t.kind, t.uri, t.host_network, t.store_dir) == (DATABRICKS, "databricks://team", False, None)


def test_the_container_gets_credentials_only_for_its_own_kind_of_target(tmp_path: Path) -> None:
    env = {"DATABRICKS_HOST": "https://w.example", "DATABRICKS_TOKEN": "dtok", "MLFLOW_TRACKING_TOKEN": "mtok",
           "MLFLOW_ALLOW_FILE_STORE": "true"}
    server = container_env(target("http://s.example", tmp_path), "1", "r", env)
    store = container_env(target("mlruns", tmp_path), "1", "r", env)
    bricks = container_env(tracking_target("databricks", None, None, None, env), "1", "r", env,
                           workspace_credentials("databricks", env).as_env())
    assert server == {"MLFLOW_TRACKING_URI": "http://s.example", "MLFLOW_RUN_ID": "r", "MLFLOW_EXPERIMENT_ID": "1",
                      "MLFLOW_TRACKING_TOKEN": "mtok"}
    assert store == {"MLFLOW_TRACKING_URI": f"file://{tmp_path}/mlruns", "MLFLOW_RUN_ID": "r",
                     "MLFLOW_EXPERIMENT_ID": "1", "MLFLOW_ALLOW_FILE_STORE": "true"}
    assert bricks == {"MLFLOW_TRACKING_URI": "databricks", "MLFLOW_RUN_ID": "r", "MLFLOW_EXPERIMENT_ID": "1",
                      "DATABRICKS_HOST": "https://w.example", "DATABRICKS_TOKEN": "dtok"}


def test_a_servers_userinfo_is_used_never_kept_in_the_uri(tmp_path: Path) -> None:
    """`http://user:pw@host` works as with MLflow (the URI's pair wins over the variables, a
    password pair over a token), and the recorded, shown URI has no password."""
    seen: list[str | None] = []

    class Server(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            data = json.dumps({"experiment": {"experiment_id": "7"}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    import base64

    from dockrun.tracking.rest import MlflowRest

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    clean = f"http://127.0.0.1:{server.server_port}"
    env = {"MLFLOW_TRACKING_TOKEN": "tok", "MLFLOW_TRACKING_USERNAME": "env", "MLFLOW_TRACKING_PASSWORD": "envpw"}
    try:
        t = target(f"http://al%40ice:p%3Aw@127.0.0.1:{server.server_port}/", tmp_path, "x")
        assert (t.uri, t.userinfo) == (clean, ("al@ice", "p:w")) and "p:w" not in repr(t)
        for environ, userinfo in ((env, t.userinfo), (env, None), ({"MLFLOW_TRACKING_TOKEN": "tok"}, None)):
            assert MlflowRest(t.uri, environ, userinfo=userinfo).experiment_id("x") == "7"
    finally:
        server.shutdown()
    basic = [base64.b64encode(pair).decode() for pair in (b"al@ice:p:w", b"env:envpw")]
    assert seen == [f"Basic {basic[0]}", f"Basic {basic[1]}", "Bearer tok"]
    inside = container_env(t, "1", "r", env)
    assert inside["MLFLOW_TRACKING_URI"] == clean
    assert (inside["MLFLOW_TRACKING_USERNAME"], inside["MLFLOW_TRACKING_PASSWORD"]) == ("al@ice", "p:w")
    with pytest.raises(ConfigError) as e:  # unreachable: the message names the URI, not the password
        MlflowRest(f"http://127.0.0.1:{free_port()}", {}, userinfo=("u", "hunter2")).experiment_id("x")
    assert "hunter2" not in str(e.value)


class FakeDatabricksMlflow(BaseHTTPRequestHandler):
    """The few MLflow REST calls dockrun makes, answering only with the workspace's token."""

    runs: dict = {}

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if self.headers.get("Authorization") != "Bearer dtok":
            return self._reply(401, {"error_code": "UNAUTHENTICATED", "message": "no"})
        if "experiments/get-by-name" in self.path:
            return self._reply(200, {"experiment": {"experiment_id": "42"}})
        self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": self.path})

    def do_POST(self) -> None:  # noqa: N802
        if self.headers.get("Authorization") != "Bearer dtok":
            return self._reply(401, {"error_code": "UNAUTHENTICATED", "message": "no"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        path = self.path.split("/api/2.0/mlflow/")[1]
        if path == "runs/create":
            self.runs["r1"] = {"create": body}
            return self._reply(200, {"run": {"info": {"run_id": "r1"}}})
        self.runs.setdefault(body["run_id"], {})[path] = body
        self._reply(200, {})

    def log_message(self, *args: object) -> None:
        pass


def test_databricks_tracking_uses_the_workspace_host_and_token_over_rest(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), FakeDatabricksMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = tmp_path / "cfg"
        cfg.write_text(f"[ws]\nhost = http://127.0.0.1:{server.server_port}\ntoken = dtok\n")
        env = {"DATABRICKS_CONFIG_FILE": str(cfg)}
        t = tracking_target("databricks://ws", "/Users/me/x", None, None, env)
        started = start_tracked_run(t, env, {"mlflow.user": "me"}, {"C": "0.5"})
        assert (started.experiment_id, started.run_id, started.mounts) == ("42", "r1", ())
        assert started.env["DATABRICKS_TOKEN"] == "dtok" and started.env["MLFLOW_TRACKING_URI"] == "databricks"
        end_tracked_run("databricks://ws", "r1", "FAILED", env)
        runs = FakeDatabricksMlflow.runs
        assert runs["r1"]["create"]["tags"] == [{"key": "mlflow.user", "value": "me"}]
        assert runs["r1"]["runs/log-batch"]["params"] == [{"key": "C", "value": "0.5"}]
        assert runs["r1"]["runs/update"]["status"] == "FAILED"
    finally:
        server.shutdown()


# ---- tags and params -------------------------------------------------------------------------

def test_tags_are_mlflow_runs_own(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub").mkdir()
    plain = tmp_path / "plain"
    plain.mkdir()
    assert source_name(Source(str(repo / "sub"), repo / "sub", "k", "c0ffee")) == f"file://{repo}#sub"
    assert source_name(Source(str(repo), repo, "k", "c0ffee")) == f"file://{repo}"
    assert source_name(Source(str(plain), plain, "k")) == str(plain)
    git = Source("https://example.com/x.git#proj", tmp_path, "k", "abc")
    tags = project_tags(git, "main", EnvSpec("micromamba", "b").mlflow_env, "dockrun-x:1", "sha256:9", "ann", "d1")
    assert tags == {"mlflow.user": "ann", "mlflow.source.name": "https://example.com/x.git#proj",
                    "mlflow.source.type": "PROJECT", "mlflow.project.entryPoint": "main",
                    "mlflow.project.backend": "local", "mlflow.project.env": "conda",
                    "mlflow.docker.image.uri": "dockrun-x:1", "mlflow.docker.image.id": "sha256:9",
                    "dockrun.run-id": "d1", "mlflow.source.git.commit": "abc"}
    ep = EntryPoint("main", "x", (Parameter("C", "float", "1.0"), Parameter("data", "path", None),
                                  Parameter("n", "int", "3")))
    assert logged_params(ep, {"C": "0.50", "data": "./rel.csv", "extra": 7}) == {
        "C": "0.50", "data": "./rel.csv", "n": "3", "extra": "7"}


# ---- the store adapter, with MLflow's client on real stores ----------------------------------

def test_a_sqlite_run_is_created_mounted_and_ended(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow puts a sqlite store's artifacts under the caller's ./mlruns
    (tmp_path / "db").mkdir()
    t = target("sqlite:///db/m.db", tmp_path, "exp", run_name="first")
    started = start_tracked_run(t, {}, {"mlflow.user": "ann", "dockrun.run-id": "d1"}, {"C": "0.5"})
    client = mlflow.tracking.MlflowClient(t.uri)
    run = client.get_run(started.run_id)
    assert run.info.run_name == "first" and run.data.params == {"C": "0.5"}
    assert run.data.tags["dockrun.run-id"] == "d1"
    assert client.get_experiment_by_name("exp").experiment_id == started.experiment_id
    artifacts = f"{tmp_path}/mlruns/{started.experiment_id}/{started.run_id}/artifacts"
    assert started.mounts == ((str(tmp_path / "db"), str(tmp_path / "db"), "rw"), (artifacts, artifacts, "rw"))
    assert started.env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path}/db/m.db"
    again = start_tracked_run(target("sqlite:///db/m.db", tmp_path, "exp"), {}, {}, {})
    assert again.experiment_id == started.experiment_id  # an existing experiment is found, not created twice
    resumed = start_tracked_run(target("sqlite:///db/m.db", tmp_path, mlflow_run_id=started.run_id), {},
                                {"mlflow.user": "bob", "dockrun.run-id": "d2"}, {"C": "9"})
    run = client.get_run(resumed.run_id)
    assert run.data.tags["dockrun.run-id"] == "d2" and run.data.tags.get("mlflow.user") == "ann"
    assert run.data.params == {"C": "0.5"}  # `--run-id` logs no params, as `mlflow run`
    end_tracked_run(t.uri, started.run_id, "KILLED", {})
    assert client.get_run(started.run_id).info.status == "KILLED"


def test_store_errors_are_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ConfigError) as e:
        start_tracked_run(target("sqlite:///m.db", tmp_path, experiment_id="77"), {}, {}, {})
    assert str(e.value).startswith(f"MLflow store sqlite:///{tmp_path}/m.db: ") and "\n" not in str(e.value)
    if int(mlflow.__version__.split(".")[0]) >= 3:
        with pytest.raises(ConfigError, match="MLFLOW_ALLOW_FILE_STORE=true"):
            start_tracked_run(target("mlruns", tmp_path, "x"), {}, {}, {})


# ---- end to end: a metric logged in the container lands in the user's store ------------------

def _mlflow_run(db: Path, experiment: str):
    client = mlflow.tracking.MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {db}"
    (run,) = client.search_runs([exp.experiment_id])
    return run


def host_version() -> str:
    found = host_mlflow()
    assert found, "the test extra installs MLflow"
    return found[1]


def another_release(version: str) -> str:
    """A release of MLflow whose sqlite schema differs from ``version``'s (another minor)."""
    major, minor = (int(x) for x in version.split(".")[:2])
    return f"{major}.{minor - 1}.0" if minor else f"{major}.{minor + 1}.0"


@pytest.fixture(scope="module")
def pinned_example(tmp_path_factory) -> Path:
    """The conda-uv example with its MLflow pinned to the host's release (requirements/test.txt
    pins the host's): the container's MLflow opens the store the host's writes, whatever PyPI
    serves today."""
    import shutil

    root = tmp_path_factory.mktemp("pinned") / "conda-uv"
    shutil.copytree(EXAMPLE, root)
    conda = root / "conda.yaml"
    text = conda.read_text()
    assert "      - mlflow-skinny\n" in text, "the example's MLflow line moved: update this fixture"
    conda.write_text(text.replace("      - mlflow-skinny\n", f"      - mlflow-skinny=={host_version()}\n"))
    return root


def test_which_mlflow_an_environment_has_and_when_two_cannot_share_a_store(tmp_path: Path) -> None:
    t = target("sqlite:///m.db", tmp_path)
    assert schema_matters(t) and not schema_matters(target("mlruns", tmp_path)) and not schema_matters(None)
    assert not schema_matters(target("http://127.0.0.1:5000", tmp_path))
    assert pinned_mlflow(("numpy", "mlflow==3.17.2")) == ("mlflow", "3.17.2")
    assert pinned_mlflow(("mlflow-skinny==3.18.0 --hash=sha256:00",)) == ("mlflow-skinny", "3.18.0")
    assert pinned_mlflow(("mlflow_skinny==3.1.0; python_version >= '3.9'",)) == ("mlflow-skinny", "3.1.0")
    assert pinned_mlflow(("mlflow[databricks,gateway]==3.17.2",)) == ("mlflow", "3.17.2")
    for loose in ("mlflow", "mlflow>=3.17", "mlflow==3.17.*", "mlflow<3.18,>=3.17", "mlflow-tracing==3.18.0"):
        assert pinned_mlflow((loose,)) is None, loose
    record = {"packages": [{"name": "numpy", "version": "2.1.0"}, {"name": "mlflow_skinny", "version": "3.17.2"}]}
    assert installed_mlflow(record) == ("mlflow-skinny", "3.17.2") and installed_mlflow({"recorded": False}) is None
    check_store_mlflow(t, ("mlflow", "3.17.2"), ("mlflow-skinny", "3.17.0"))  # a patch apart: one schema
    check_store_mlflow(t, None, ("mlflow-skinny", "3.18.0"))  # no MLflow in the environment logs nothing
    check_store_mlflow(target("mlruns", tmp_path), ("mlflow", "3.17.2"), ("mlflow-skinny", "3.18.0"))
    with pytest.raises(ConfigError) as e:
        check_store_mlflow(t, ("mlflow", "3.17.2"), ("mlflow-skinny", "3.18.0"))
    assert str(e.value) == (
        f"MLflow store sqlite:///{tmp_path}/m.db: the host's MLflow 3.18.0 and MLflow 3.17.2 in the project's "
        "environment use different store schemas, and each refuses the other's; pin mlflow==3.18.0 in the "
        "project, or install mlflow-skinny==3.17.2 on the host")


@pytest.mark.usefixtures("no_leaks")
def test_a_pinned_mlflow_the_store_refuses_is_one_line_before_anything_is_built(cli, tmp_path: Path) -> None:
    """The host's MLflow would write a schema the project's pinned MLflow refuses: said before a
    build, a store or an MLflow run exists."""
    other = another_release(host_version())
    project = write_project(tmp_path / "p", {"MLproject": "name: p\nentry_points:\n  main:\n    command: 'true'\n",
                                             "requirements.txt": f"numpy\nmlflow-skinny=={other}\n"})
    work = tmp_path / "work"
    work.mkdir()
    r = cli("run", str(project), "--experiment-name", "x", cwd=work, env={"MLFLOW_TRACKING_URI": "sqlite:///m.db"},
            timeout=120)
    assert r.code == 2, r.err[-2000:]
    assert r.err.strip() == (
        f"dockrun: error: MLflow store sqlite:///{work}/m.db: the host's MLflow {host_version()} and MLflow "
        f"{other} in the project's environment use different store schemas, and each refuses the other's; "
        f"pin mlflow-skinny=={host_version()} in the project, or install {host_mlflow()[0]}=={other} on the host")
    assert not list(work.iterdir())  # and stderr is that line alone: no build began


@pytest.mark.usefixtures("no_leaks")
def test_an_unpinned_mlflow_is_checked_from_the_images_record(cli, tmp_path: Path) -> None:
    """A range leaves the version to the build: the image's record of what it installed says it,
    before the MLflow run is started (no store is created)."""
    other = another_release(host_version())
    major, minor = other.split(".")[:2]
    wanted = f"mlflow-skinny>={major}.{minor},<{major}.{int(minor) + 1}\n"
    project = write_project(tmp_path / "p", {"MLproject": "name: p\nentry_points:\n  main:\n    command: 'true'\n",
                                             "requirements.txt": wanted})
    work = tmp_path / "work"
    work.mkdir()
    r = cli("run", str(project), "--experiment-name", "x", cwd=work, env={"MLFLOW_TRACKING_URI": "sqlite:///m.db"},
            timeout=900)
    assert r.code == 2, r.err[-2000:]
    last = r.err.strip().splitlines()[-1]
    assert last.startswith(f"dockrun: error: MLflow store sqlite:///{work}/m.db: the host's MLflow {host_version()} "
                           f"and MLflow {major}.{minor}."), last
    assert f"pin mlflow-skinny=={host_version()} in the project" in last
    assert not list(work.iterdir())  # no store: the host's MLflow never opened it


@pytest.mark.usefixtures("no_leaks")
def test_sqlite_store_from_the_environment_end_to_end(cli, tmp_path: Path, pinned_example: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    r = cli("run", str(pinned_example), "--env-manager", "uv", "-P", "C=0.50", "--experiment-name", "x",
            cwd=work, env={"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}, timeout=900)
    assert r.code == 0, r.err[-2000:]
    run = _mlflow_run(work / "mlflow.db", "x")
    assert run.info.status == "FINISHED" and run.data.params == {"C": "0.50"}
    assert abs(run.data.metrics["accuracy"] - 0.9778) < 1e-3  # logged from inside the container
    tags = run.data.tags
    image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tags["mlflow.docker.image.uri"]],
                              capture_output=True, text=True).stdout.strip()
    assert tags["mlflow.docker.image.id"] == image_id and tags["mlflow.project.env"] == "uv"
    assert tags["mlflow.source.name"].startswith(("file://", "/")) and tags["mlflow.source.type"] == "PROJECT"
    assert tags["mlflow.project.backend"] == "local" and tags["mlflow.project.entryPoint"] == "main"
    import getpass

    assert tags["mlflow.user"] == getpass.getuser()
    record = json.loads(cli("runs", "show", tags["dockrun.run-id"]).out)
    assert record["mlflow_run_id"] == run.info.run_id and record["tracking_uri"] == f"sqlite:///{work}/mlflow.db"


@pytest.mark.usefixtures("no_leaks")
def test_a_failed_run_in_the_default_store_is_failed_there(cli, tmp_path: Path, pinned_example: Path) -> None:
    r = cli("run", str(pinned_example), "--env-manager", "uv", "-P", "C=-1", "--experiment-name", "y", cwd=tmp_path,
            env={"MLFLOW_TRACKING_URI": ""}, timeout=900)
    assert r.code == 1
    assert _mlflow_run(tmp_path / "mlflow.db", "y").info.status == "FAILED"


def test_the_store_mounts_reach_the_container_spec(tmp_path: Path) -> None:
    from dockrun.backends.local.container import RunContext, container_spec
    from dockrun.project.params import RenderedCommand

    store = (str(tmp_path), str(tmp_path), "rw")
    spec = container_spec(RunContext(run_id="r1", project="p", image="img", outputs=tmp_path / "out",
                                     rendered=RenderedCommand("true", {}, ()), extra_mounts=(store,)), environ={})
    assert store in spec.mounts


def test_logged_metrics_are_read_back_from_a_local_store(tmp_path: Path) -> None:
    """What a sweep's table shows for a run tracked in a sqlite store: each metric's latest value,
    as MLflow's own client logged it."""
    from dockrun.tracking.metrics import logged_metrics

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run = client.create_run("0")
    client.log_metric(run.info.run_id, "loss", 0.5, step=0)
    client.log_metric(run.info.run_id, "loss", 0.25, step=1)
    client.log_metric(run.info.run_id, "acc", 0.9)
    assert logged_metrics(uri, run.info.run_id, {}) == {"loss": 0.25, "acc": 0.9}
    with pytest.raises(ConfigError, match="MLflow store"):
        logged_metrics(uri, "0" * 32, {})
