"""MLflow as the oracle: MLflow's own code (mlflow-skinny, in the test extra), not our reading of
it, decides what `mlflow run` would do, and dockrun is compared with it on generated input.

- the command: MLflow's ``EntryPoint.compute_command`` against ``render_command``, for generated
  MLproject files (parameter types, defaults, the command's text) and values, extra parameters
  included;
- the Kubernetes Job: MLflow's ``_get_kubernetes_job_definition`` against ``job_manifest``, for
  the same generated template;
- the run's tags and logged params: MLflow's ``_create_run`` (into a real sqlite store) against
  ``project_tags`` / ``logged_params``.

Where the two differ on purpose, a ``test_difference_*`` test pins the difference down with
MLflow's own output, so that a change on either side shows; each is a row of the README's
"Coming from mlflow run" table.
"""
from __future__ import annotations

import copy
import os
import shlex
import string
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.exceptions import ExecutionException
from mlflow.projects import _project_spec as mlflow_spec
from mlflow.projects.kubernetes import _get_kubernetes_job_definition, _get_run_command

from dockrun.backends.kubernetes.config import KubeSettings
from dockrun.backends.kubernetes.job import JobParts, job_manifest
from dockrun.errors import DockrunError
from dockrun.project.params import render_command
from dockrun.project.spec import load_project

NAMES = ("a", "b", "alpha", "data_1", "n")
FILES = ("in.csv", "sub/x.txt", "with space.txt")  # existing files, relative to the caller's folder
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
WORD = st.text(string.ascii_letters + string.digits + "-_./=", min_size=1, max_size=8)


@pytest.fixture(scope="module")
def caller() -> Iterator[Path]:
    """The caller's folder, with the files path parameters name; the test runs from it (MLflow
    makes a path absolute from the process's folder, dockrun from the caller's)."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for name in FILES:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("x")
        (root / "storage").mkdir()
        old = os.getcwd()
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(old)


def _value(ptype: str) -> st.SearchStrategy[str]:
    if ptype == "float":
        return st.floats(allow_nan=False, allow_infinity=False).map(repr) | st.sampled_from(["1", "-0.5", "1e3", " 2"])
    if ptype == "int":
        return st.integers(-10**12, 10**12).map(str)
    if ptype == "path":
        return st.sampled_from(FILES + tuple(f"./{f}" for f in FILES) + ("sub/../in.csv",))
    if ptype == "uri":
        return WORD.map(lambda w: f"s3://bucket/{w}") | WORD.map(lambda w: f"https://example.com/{w}")
    return TEXT


def _default(ptype: str) -> st.SearchStrategy[object]:
    """YAML defaults; a boolean default and a path default are differences of their own (below)."""
    if ptype == "float":
        return st.floats(allow_nan=False, allow_infinity=False, width=32) | st.integers(-1000, 1000)
    if ptype == "int":
        return st.integers(-1000, 1000)
    if ptype == "uri":
        return WORD.map(lambda w: f"s3://bucket/{w}")
    return TEXT | st.integers() | st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict, dict[str, str]]:
    """An entry point (as MLproject YAML) and the values a user gives, extra ones included."""
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
    params: dict[str, object] = {}
    given_values: dict[str, str] = {}
    for name in names:
        ptype = draw(st.sampled_from(["string", "float", "int", "path", "uri"]))
        spec: dict[str, object] = {"type": ptype}
        if ptype != "path" and draw(st.booleans()):
            spec["default"] = draw(_default(ptype))
        params[name] = spec if draw(st.booleans()) or "default" in spec else ptype  # the short form too
        if "default" not in spec or draw(st.booleans()):
            given_values[name] = draw(_value(ptype))
    words = draw(st.lists(WORD | st.sampled_from(["{{", "}}", "--flag"]), max_size=4))
    used = draw(st.lists(st.sampled_from(names), max_size=5)) if names else []
    command = " ".join(["prog", *words, *(f"{{{n}}}" for n in used)])
    extras = draw(st.dictionaries(st.sampled_from(["x", "extra-1", "e.f", "Z_9"]), TEXT, max_size=2))
    given_values.update(extras)
    mlproject = {"name": "oracle", "entry_points": {"main": {"parameters": params, "command": command}}}
    return mlproject, given_values


def _both(root: Path, mlproject: dict) -> tuple[object, object]:
    (root / "MLproject").write_text(yaml.safe_dump(mlproject))
    return (mlflow_spec.load_project(str(root)).get_entry_point("main"),
            load_project(root).entry_point("main"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_the_command_is_mlflows(caller: Path, case: tuple[dict, dict[str, str]]) -> None:
    """For every valid MLproject and values, dockrun runs the very command MLflow would; where
    MLflow refuses (a required parameter missing), dockrun refuses too."""
    mlproject, values = case
    with tempfile.TemporaryDirectory() as d:
        theirs_ep, ours_ep = _both(Path(d), mlproject)
        try:
            theirs = theirs_ep.compute_command(dict(values), str(caller / "storage"))
        except ExecutionException:
            with pytest.raises(DockrunError):
                render_command(ours_ep, values, cwd=caller)
            return
        ours = render_command(ours_ep, values, cwd=caller).command
    assert ours == theirs


@pytest.mark.parametrize("value", ["plain", "two words", "it's", "$HOME", "a;b", "", "--flag=1", "ünï"])
def test_the_command_is_mlflows_for_each_kind_of_value(caller: Path, value: str) -> None:
    mlproject = {"name": "o", "entry_points": {"main": {"parameters": {"a": "string"}, "command": "prog {a}"}}}
    with tempfile.TemporaryDirectory() as d:
        theirs_ep, ours_ep = _both(Path(d), mlproject)
        given_values = {"a": value, "extra": value}
        assert render_command(ours_ep, given_values, cwd=caller).command == theirs_ep.compute_command(
            given_values, str(caller / "storage"))


# ---- differences, pinned down with MLflow's own output -----------------------------------------

def _render_both(caller: Path, parameters: dict, command: str, values: dict) -> tuple[str | Exception, str | Exception]:
    mlproject = {"name": "o", "entry_points": {"main": {"parameters": parameters, "command": command}}}
    with tempfile.TemporaryDirectory() as d:
        theirs_ep, ours_ep = _both(Path(d), mlproject)
        out: list[str | Exception] = []
        for render in (lambda: theirs_ep.compute_command(dict(values), str(caller / "storage")),
                       lambda: render_command(ours_ep, values, cwd=caller).command):
            try:
                out.append(render())
            except Exception as e:  # noqa: BLE001 - which side refuses is the point
                out.append(e)
    return out[0], out[1]


def test_difference_typed_values_are_checked(caller: Path) -> None:
    """Row: a float/int value that is not a number is refused before anything runs; MLflow passes
    it on and the program fails (or not) later."""
    theirs, ours = _render_both(caller, {"a": "float"}, "prog {a}", {"a": "abc"})
    assert theirs == "prog abc" and isinstance(ours, DockrunError) and "expected a float" in str(ours)


def test_difference_a_boolean_default_is_written_as_yaml_writes_it(caller: Path) -> None:
    """Row: `default: true` is passed as `true` (as the YAML says it); MLflow passes Python's `True`."""
    theirs, ours = _render_both(caller, {"a": {"type": "string", "default": True}}, "prog {a}", {})
    assert (theirs, ours) == ("prog True", "prog true")


def test_difference_an_extra_parameters_name_must_be_a_plain_word(caller: Path) -> None:
    """Row: an undeclared parameter's name must be letters, digits, '_', '-' or '.'; MLflow quotes
    any name into the command line."""
    theirs, ours = _render_both(caller, {}, "prog", {"a b": "1"})
    assert theirs == "prog --'a b' 1" and isinstance(ours, DockrunError)


def test_difference_a_path_default_is_the_projects_file_and_a_missing_path_is_an_output(caller: Path) -> None:
    """Rows: a relative path default names the project's own file (in the container's project
    folder); MLflow takes it from the caller's folder and requires it to exist. A given path that
    does not exist is an output the run may write; MLflow refuses it."""
    theirs, ours = _render_both(caller, {"a": {"type": "path", "default": "in.csv"}}, "prog {a}", {})
    assert theirs == f"prog {caller / 'in.csv'}" and ours == "prog /project/in.csv"
    theirs, ours = _render_both(caller, {"a": "path"}, "prog {a}", {"a": "out.txt"})
    assert isinstance(theirs, ExecutionException) and ours == f"prog {caller / 'out.txt'}"


def test_difference_an_entry_point_may_be_its_command_alone(tmp_path: Path) -> None:
    """Row: `main: python train.py` (an entry point written as its command) is read; MLflow's
    loader fails on it."""
    (tmp_path / "MLproject").write_text("name: short\nentry_points:\n  main: prog 1\n")
    with pytest.raises(AttributeError):
        mlflow_spec.load_project(str(tmp_path))
    assert load_project(tmp_path).entry_point("main").command == "prog 1"


def test_difference_a_missing_parameter_is_named_alone(caller: Path) -> None:
    """Not a row (both refuse); MLflow names every missing parameter, dockrun the first."""
    theirs, ours = _render_both(caller, {"a": "string", "b": "string"}, "prog {a} {b}", {})
    assert isinstance(theirs, ExecutionException) and isinstance(ours, DockrunError) and "'a'" in str(ours)


# ---- the Kubernetes Job ---------------------------------------------------------------------

LABEL = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
PLACEHOLDER_ENV = "{appended with MLFLOW_TRACKING_URI, MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_ID}"


@st.composite
def job_templates(draw: st.DrawFn) -> dict:
    """MLflow's documented Job template, with what users add to it (namespace, labels, limits,
    volumes, environment, a sidecar, a restart policy, a TTL) drawn."""
    container: dict = {"name": "{replaced with MLflow Project name}",
                       "image": "{replaced with URI of Docker image created during Project execution}",
                       "command": ["{replaced with MLflow Project entry point command}"]}
    env = draw(st.lists(st.fixed_dictionaries({"name": LABEL.map(str.upper), "value": WORD}), max_size=3))
    if draw(st.booleans()):
        container["env"] = env
    if draw(st.booleans()):
        container["resources"] = {"limits": {"cpu": draw(st.sampled_from(["1", "500m"])), "memory": "512Mi"}}
    if draw(st.booleans()):
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    pod: dict = {"containers": [container]}
    if draw(st.booleans()):
        pod["containers"].append({"name": "sidecar", "image": "busybox", "command": ["sleep", "1"]})
    restart = draw(st.sampled_from([None, "Never", "OnFailure"]))
    if restart:
        pod["restartPolicy"] = restart
    spec: dict = {"template": {"spec": pod}}
    for key, value in draw(st.dictionaries(st.sampled_from(["backoffLimit", "ttlSecondsAfterFinished",
                                                            "activeDeadlineSeconds"]),
                                           st.integers(0, 1000), max_size=3)).items():
        spec[key] = value
    meta: dict = {"name": "{replaced with MLflow Project name}"}
    if draw(st.booleans()):
        meta["namespace"] = draw(LABEL)
    if draw(st.booleans()):
        meta["labels"] = {"team": draw(LABEL)}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}


def _mlflow_job(template: dict, project: str, image: str, command: str, env: dict[str, str]) -> dict:
    tag, digest = image.split("@")
    return _get_kubernetes_job_definition(project, tag, digest, _get_run_command([command]), dict(env),
                                          copy.deepcopy(template))


def _without_filled_in(job: dict, template: dict) -> dict:
    """The Job less what either side fills in (names, the first container's name, command and env,
    dockrun's run-ID labels and the restart policy it sets where the template has none)."""
    job = copy.deepcopy(job)
    job["metadata"].pop("name")
    labels = job["metadata"].get("labels") or {}
    labels.pop("dockrun.run-id", None)
    if not labels:
        job["metadata"].pop("labels", None)
    pod = job["spec"]["template"]
    pod.pop("metadata", None)
    if "restartPolicy" not in template["spec"]["template"]["spec"]:
        pod["spec"].pop("restartPolicy", None)
    for key in ("name", "command", "env"):
        pod["spec"]["containers"][0].pop(key, None)
    return job


ENV = {"MLFLOW_RUN_ID": "r1", "MLFLOW_TRACKING_URI": "http://mlflow.example:5000", "MLFLOW_EXPERIMENT_ID": "3"}


@settings(max_examples=200, deadline=None)
@given(template=job_templates(), project=LABEL, placeholder=st.booleans())
def test_the_job_is_mlflows_template_filled_in_as_mlflow_fills_it(template: dict, project: str,
                                                                  placeholder: bool) -> None:
    """Everything the template says is kept as MLflow keeps it; the image is the pushed digest;
    the template's environment comes first, then MLflow's tracking variables with MLflow's values."""
    if placeholder:  # the documented template's env line, which MLflow appends to
        template["spec"]["template"]["spec"]["containers"][0]["env"] = [PLACEHOLDER_ENV]
    image = "registry.example/team/p:abc@sha256:" + "0" * 64
    ours = job_manifest(KubeSettings(None, "registry.example/team/p", template, "t.yaml"),
                        JobParts("d1", project, image, "prog 1", ENV))
    theirs = _mlflow_job(template, project, image, "prog 1", ENV)
    assert _without_filled_in(ours, template) == _without_filled_in(theirs, template)
    ours_c = ours["spec"]["template"]["spec"]["containers"][0]
    theirs_c = theirs["spec"]["template"]["spec"]["containers"][0]
    assert ours_c["image"] == theirs_c["image"] == image
    assert ours_c["name"] == theirs_c["name"] == project  # a DNS label already
    assert ours["metadata"]["name"].startswith(f"{project}-") and theirs["metadata"]["name"].startswith(f"{project}-")
    theirs_env = [e for e in theirs_c["env"] if e != PLACEHOLDER_ENV]  # MLflow sends the placeholder on (below)
    ours_env = [e for e in ours_c["env"] if not e["name"].startswith("DOCKRUN_")]
    assert ours_env == theirs_env
    assert shlex.split(ours_c["command"][-1].split("; ", 1)[1]) == theirs_c["command"]  # plain values: one argv


def test_difference_the_job_runs_the_command_line_with_sh(tmp_path: Path) -> None:
    """Row: on Kubernetes the command is one shell command line (`sh -c`), as locally, so a value
    with a space or a quote arrives as typed. MLflow splits it and quotes each word again for an
    exec-form command, so the program gets the quotes too."""
    template = {"metadata": {"name": "x"}, "spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}}
    command = "prog 'two words'"
    theirs = _mlflow_job(template, "p", "r/p:1@sha256:00", command, {})["spec"]["template"]["spec"]["containers"][0]
    ours = job_manifest(KubeSettings(None, "r/p", template, "t"), JobParts("d1", "p", "r/p:1@sha256:00", command))
    ours_c = ours["spec"]["template"]["spec"]["containers"][0]
    assert theirs["command"] == ["prog", "'two words'"]
    script = ours_c["command"][2].replace('mkdir -p "$DOCKRUN_OUTPUT_DIR"', f"mkdir -p {tmp_path}/o")
    shown = subprocess.run(["sh", "-c", script.replace("prog ", "printf '%s\\n' ", 1)], capture_output=True, text=True)
    assert ours_c["command"][:2] == ["sh", "-c"] and shown.stdout == "two words\n"


def test_difference_job_and_container_names_are_dns_labels_with_the_run_id() -> None:
    """Row: the Job is named `<project as a DNS label>-<run ID>` and the container `<project as a
    DNS label>`; MLflow uses the project name as written (a name with capitals or '_' is refused by
    the API) and a timestamp."""
    template = {"metadata": {"name": "x"}, "spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}}
    theirs = _mlflow_job(template, "My_Project", "r/p:1@sha256:00", "prog", {})
    ours = job_manifest(KubeSettings(None, "r/p", template, "t"),
                        JobParts("d1", "My_Project", "r/p:1@sha256:00", "prog"))
    assert theirs["spec"]["template"]["spec"]["containers"][0]["name"] == "My_Project"
    assert ours["spec"]["template"]["spec"]["containers"][0]["name"] == "my-project"
    assert ours["metadata"]["name"] == "my-project-d1" and theirs["metadata"]["name"].startswith("My_Project-")


def test_difference_the_envs_placeholder_line_is_dropped() -> None:
    """Row: the documented template's `env: ["{appended with ...}"]` line is dropped; MLflow sends
    it on with the variables after it, and the API refuses a string where an EnvVar belongs."""
    template = {"metadata": {"name": "x"},
                "spec": {"template": {"spec": {"containers": [{"name": "x", "env": [PLACEHOLDER_ENV]}]}}}}
    theirs = _mlflow_job(template, "p", "r/p:1@sha256:00", "prog", ENV)
    ours = job_manifest(KubeSettings(None, "r/p", template, "t"), JobParts("d1", "p", "r/p:1@sha256:00", "prog", ENV))
    assert theirs["spec"]["template"]["spec"]["containers"][0]["env"][0] == PLACEHOLDER_ENV
    assert PLACEHOLDER_ENV not in ours["spec"]["template"]["spec"]["containers"][0]["env"]


# ---- the run's tags and logged params -------------------------------------------------------

@pytest.fixture
def mlflow_store(tmp_path: Path) -> Iterator[str]:
    """MLflow's default tracking URI pointed at a fresh sqlite store, for MLflow's own `_create_run`."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'oracle.db'}"
    prior = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)  # which sets MLFLOW_TRACKING_URI for subprocesses too
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(prior)  # None unsets it: no later test's `dockrun` may inherit it


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=folder,
                          check=True, capture_output=True, text=True).stdout.strip()


def _project_in(tmp_path: Path, layout: str) -> Path:
    top = tmp_path / "repo"
    project = top / "sub" if layout == "git subfolder" else top
    project.mkdir(parents=True)
    (project / "MLproject").write_text("name: tagged\nentry_points:\n  main: {command: prog}\n"
                                       "  other: {command: prog 2}\n")
    if layout != "plain folder":
        _git(top, "init", "-q", "-b", "main")
        _git(top, "add", ".")
        _git(top, "commit", "-q", "-m", "one")
    if layout == "git with a remote":
        _git(top, "remote", "add", "origin", "https://git.example.com/team/repo.git")
    return project


@pytest.mark.parametrize("layout, entry_point", [("plain folder", "main"), ("git work tree", "other"),
                                                ("git subfolder", "main"), ("git with a remote", "other")])
def test_the_source_tags_are_mlflows(tmp_path: Path, mlflow_store: str, layout: str, entry_point: str) -> None:
    """The tags `mlflow run` sets on a project run (MLflow's `_create_run`, into a real store) are
    dockrun's, key by key; the ones dockrun leaves out are the rows pinned below."""
    from mlflow.projects.utils import _create_run
    from mlflow.tracking import MlflowClient

    from dockrun.project.resolve import resolve_source
    from dockrun.tracking.tags import login_name, project_tags

    project = _project_in(tmp_path, layout)
    run = _create_run(str(project), "0", str(project), None, entry_point, {})
    theirs = MlflowClient(mlflow_store).get_run(run.info.run_id).data.tags
    source = resolve_source(str(project), None, tmp_path / "home")
    ours = project_tags(source, entry_point, "uv", "img:1", "sha256:0", login_name(), "d1")
    left_out = {"mlflow.runName", "mlflow.source.git.repoURL"}  # a name of its own; the remote: a row below
    assert {k: v for k, v in theirs.items() if k not in left_out} == {k: ours[k] for k in theirs if k not in left_out}
    if layout == "git with a remote":
        assert theirs["mlflow.source.git.repoURL"] == "https://git.example.com/team/repo.git"
        assert "mlflow.source.git.repoURL" not in ours  # the row: a remote's URL may carry a token


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_the_logged_params_are_mlflows_values_as_typed(caller: Path, case: tuple[dict, dict[str, str]]) -> None:
    """The params `mlflow run` logs (``compute_parameters`` with no storage dir, as `_create_run`
    calls it) are dockrun's, but for one difference (a row): MLflow logs each value shell-quoted
    (``'two words'``), dockrun logs it as typed (``two words``)."""
    from dockrun.tracking.tags import logged_params

    mlproject, values = case
    with tempfile.TemporaryDirectory() as d:
        theirs_ep, ours_ep = _both(Path(d), mlproject)
        try:
            final, extra = theirs_ep.compute_parameters(dict(values), None)
        except ExecutionException:
            return
    ours = logged_params(ours_ep, values)
    theirs = {**final, **extra}
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        assert theirs[key] == shlex.quote(value), key
