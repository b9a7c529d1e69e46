"""One front half for every backend: one request, one prepare, one seam, imports that flow one way.

These run without Docker: a backend here is a test double of a few lines, which is the point.
"""
from __future__ import annotations

import ast
import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

import dockrun.prepare as prepare_module
from conftest import write_project
from dockrun.api import get_run, submit
from dockrun.backends import REGISTRY, get_backend
from dockrun.backends.databricks.backend import DatabricksBackend
from dockrun.backends.handle import RunHandle, new_record
from dockrun.backends.local.backend import LocalBackend
from dockrun.errors import ConfigError, ExecutionError, ParameterError
from dockrun.prepare import prepare
from dockrun.project.params import IN_CONTAINER
from dockrun.request import RunRequest
from dockrun.store.records import RunStore, new_run_id

PACKAGE = Path(__file__).resolve().parent.parent / "dockrun"
DATABRICKS_ENV = {"DATABRICKS_HOST": "https://example.invalid", "DATABRICKS_TOKEN": "t"}
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}
MLPROJECT = """\
name: demo
python_env: python_env.yaml
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      n: int
    command: "python train.py {alpha} {n}"
"""


@pytest.fixture
def project(tmp_path: Path, home: Path) -> Path:
    return write_project(tmp_path / "demo", {"MLproject": MLPROJECT, "train.py": "print('hi')\n",
                                             "python_env.yaml": "python: '3.11'\ndependencies: [tabulate]\n"})


class EchoBackend:
    """A whole backend: records the run and 'runs' nothing but the rendered command."""

    name = "echo"
    options = frozenset({"entry_point", "parameters", "synchronous"})
    placement = IN_CONTAINER
    default_tracking_uri = None

    def __init__(self, end: tuple[str, int, str | None] = ("FINISHED", 0, None)) -> None:
        self.submitted: list = []
        self.end = end

    def local_store_refusal(self, environ):  # noqa: ANN001, ANN201
        return None

    def configure(self, request, environ):  # noqa: ANN001, ANN201
        return None

    def submit(self, prepared, log):  # noqa: ANN001, ANN201
        self.submitted.append(prepared)
        store = RunStore(prepared.settings.home)
        run_id = new_run_id()
        store.insert(new_record(prepared, run_id, "-"))
        store.finish(run_id, *self.end)
        return self.attach(store, run_id)

    def attach(self, store, run_id):  # noqa: ANN001, ANN201
        handle = RunHandle(store, run_id)
        handle.follow = lambda out, err, follow=True: handle.record()  # type: ignore[method-assign]
        return handle

    def batch(self, sweep_id, home):  # noqa: ANN001, ANN201
        return contextlib.nullcontext(self)


def test_every_backend_has_every_member_of_the_seam() -> None:
    """The Backend protocol is the whole seam: the registered backends and the test double define
    each of its members (no face asks a backend for something with getattr)."""
    from dockrun.backends import Backend

    members = {n for n in vars(Backend) if not n.startswith("_")} | set(Backend.__annotations__)
    assert {"name", "options", "placement", "default_tracking_uri", "local_store_refusal", "configure", "submit",
            "attach", "batch"} <= members
    for backend in [get_backend(name) for name in REGISTRY] + [EchoBackend()]:
        assert not [m for m in members if not hasattr(backend, m)], backend.name


def test_a_test_double_backend_gets_one_validated_preparation(project: Path) -> None:
    backend = EchoBackend()
    run = submit(RunRequest(uri=str(project), parameters={"n": "3"}), backend=backend,
                 output=(io.BytesIO(), io.BytesIO()))
    assert run.get_status() == "FINISHED"
    (prepared,) = backend.submitted
    assert prepared.rendered.command == "python train.py 0.5 3"
    assert prepared.entry_point.name == "main" and prepared.project.name == "demo"
    assert prepared.env.kind == "uv" and prepared.image.env_key == prepared.plan.env_key
    # Bad input never reaches the backend.
    with pytest.raises(ParameterError, match="'n'.*expected an integer"):
        submit(RunRequest(uri=str(project), parameters={"n": "x"}), backend=backend)
    assert len(backend.submitted) == 1


def test_an_option_the_backend_cannot_honour_names_option_and_backend(project: Path) -> None:
    for request, flag in [(RunRequest(uri=str(project), docker_args=("gpus=all",)), "-A/--docker-args"),
                          (RunRequest(uri=str(project), tracking_uri="http://127.0.0.1:1"), "--tracking-uri"),
                          (RunRequest(uri=str(project), experiment_name="x"), "--experiment-name"),
                          (RunRequest(uri=str(project), storage_dir=project), "--storage-dir")]:
        with pytest.raises(ConfigError, match=f"^{flag}: not supported by backend echo$"):
            prepare(request, EchoBackend())
    request = RunRequest(uri=str(project), parameters={"n": "1"}, docker_args=("gpus=all",),
                         backend="databricks", backend_config=CLUSTER)
    with pytest.raises(ConfigError, match="-A/--docker-args: not supported by backend databricks"):
        prepare(request, DatabricksBackend(), DATABRICKS_ENV)
    with pytest.raises(ConfigError, match="--backend-config: not supported by backend local"):
        prepare(RunRequest(uri=str(project), backend_config=CLUSTER), LocalBackend())


def test_backends_by_name_from_one_registry() -> None:
    assert set(REGISTRY) == {"local", "databricks", "kubernetes"}
    assert all(get_backend(name).name == name for name in REGISTRY)
    with pytest.raises(ConfigError, match="--backend 'k8s': expected one of local, databricks, kubernetes"):
        get_backend("k8s")


def test_cli_unknown_backend_is_exit_2_listing_the_known_ones(project: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "dockrun.cli", "run", str(project), "-b", "k8s"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == "dockrun: error: --backend 'k8s': expected one of local, databricks, kubernetes\n"


def test_get_run_attaches_through_the_backend_that_ran_it(project: Path) -> None:
    backend = EchoBackend()
    run = submit(RunRequest(uri=str(project), parameters={"n": "3"}, synchronous=False), backend=backend)
    again = get_run(run.run_id)  # the record says backend "local": the local backend attaches
    assert type(again).__name__ == "LocalRun" and again.get_status() == "FINISHED"


def test_a_synchronous_run_that_did_not_finish_raises(project: Path) -> None:
    backend = EchoBackend(end=("FAILED", 3, "exit code 3"))
    with pytest.raises(ExecutionError, match="FAILED: exit code 3") as e:
        submit(RunRequest(uri=str(project), parameters={"n": "1"}), backend=backend)
    assert e.value.exit_status == 3


def test_environment_key_is_the_same_for_every_backend_and_follows_the_templates(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockrun.images import plan as plan_module

    monkeypatch.setattr(prepare_module, "engine_base_id", lambda ref: "sha256:" + "1" * 64)  # no engine needed
    def keys() -> tuple[str, str]:
        local = prepare(RunRequest(uri=str(project), parameters={"n": "1"}), LocalBackend())
        remote = prepare(RunRequest(uri=str(project), parameters={"n": "1"}, backend="databricks",
                                    backend_config=CLUSTER), DatabricksBackend(), DATABRICKS_ENV)
        return local.plan.env_key, remote.image.env_key

    before = keys()
    assert before[0] == before[1]
    real = plan_module.templates.template_source
    monkeypatch.setattr(plan_module.templates, "template_source", lambda name: real(name) + "# changed\n")
    after = keys()
    assert after[0] == after[1] and after[0] != before[0]


def test_databricks_tracking_never_falls_to_the_local_default_store(project: Path, tmp_path: Path) -> None:
    # An experiment named for a Databricks run is the workspace's (the backend decides, in configure):
    # prepare does not send it to MLflow's local default store, which needs the mlflow extra.
    request = RunRequest(uri=str(project), parameters={"n": "1"}, backend="databricks", backend_config=CLUSTER,
                         experiment_name="/Users/me/exp", cwd=tmp_path)
    prepared = prepare(request, DatabricksBackend(), DATABRICKS_ENV)
    assert prepared.tracking is None


# ---- the layout: imports flow one way ---------------------------------------------------------

FLOORS = [  # a module may import from its own floor and the floors below it, never above
    ("errors", "config", "locks", "terminal", "httpauth", "options"),
    ("databricks_api",),
    ("project",),
    ("tracking",),
    ("engine", "store"),
    ("images",),
    ("request",),
    ("backends",),
    ("prepare", "building", "locking", "shell", "views", "api", "experiments", "argv", "commands", "cli", "__init__"),
    ("warmstart", "__main__"),
]


def _floor(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, names in enumerate(FLOORS) if top in names)


def _imports(path: Path) -> list[str]:
    rel = path.relative_to(PACKAGE).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            if not target:
                out += [a.name for a in node.names]
            else:
                out.append(target)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dockrun."):
            out.append(node.module[len("dockrun."):])
    return out


def test_imports_flow_one_way() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for target in _imports(path):
            if _floor(target) > _floor(here):
                wrong.append(f"{here} imports {target}")
    assert wrong == []


def test_the_mlproject_is_read_and_parameters_validated_in_one_place_each() -> None:
    def callers(name: str) -> set[str]:
        found = set()
        for path in PACKAGE.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name:
                    found.add(str(path.relative_to(PACKAGE)))
        return found

    assert callers("load_project") == {"prepare.py"}
    assert callers("resolve_source") == {"prepare.py"}
    assert callers("env_spec") == {"prepare.py"}
    assert callers("render_command") == {"prepare.py"}


def test_tracking_from_the_environment_is_named_when_a_backend_cannot_report_to_it(
        project: Path, caplog: pytest.LogCaptureFixture) -> None:
    request = RunRequest(uri=str(project), parameters={"n": "1"})
    with caplog.at_level("WARNING", logger="dockrun"):
        prepared = prepare(request, EchoBackend(), {"MLFLOW_TRACKING_URI": "sqlite:///x.db"})
    assert prepared.tracking is None
    assert "MLFLOW_TRACKING_URI is set, but backend echo does not report runs to it" in caplog.text


def test_the_cli_offers_exactly_the_environment_managers_the_library_knows() -> None:
    # The names are the option table's (`dockrun --help` must not import the build stack); each
    # but "auto" asks for a kind in the table of kinds.
    from dockrun import commands, options
    from dockrun.images import environment, kinds

    assert tuple(commands.ENV_MANAGERS) == options.ENV_MANAGERS == environment.ENV_MANAGERS
    assert set(kinds.MANAGERS) == set(options.ENV_MANAGERS) - {"auto"}


@pytest.mark.parametrize(("settings", "named"), [
    ({"PIP_INDEX_URL": "https://u:t@i.example/simple", "UV_DEFAULT_INDEX": "https://u:t@i.example/simple"},
     ["PIP_INDEX_URL"]),  # the copy uv reads is the user's one variable
    ({"HTTPS_PROXY": "me:pw@proxy:3128"}, ["HTTPS_PROXY"]),  # a proxy without its scheme
    ({"UV_INDEX": "public=https://pypi.org/simple team=https://tok@team.example/simple"}, ["UV_INDEX"]),
    ({"PIP_EXTRA_INDEX_URL": "https://a.example/simple https://tok@b.example/simple"}, ["PIP_EXTRA_INDEX_URL"]),
    ({"PIP_INDEX_URL": "https://i.example/simple/@scoped/", "NO_PROXY": "a@b", "PIP_TRUSTED_HOST": "x"}, []),
])
def test_credentials_in_build_settings_are_found_by_variable(settings: dict[str, str], named: list[str]) -> None:
    from dockrun.config import credential_settings

    assert credential_settings(settings) == named
