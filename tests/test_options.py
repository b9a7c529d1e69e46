"""One definition per run option: RunRequest's fields (dockrun/options.py) drive the CLI's options,
execute()'s keywords, the backends' options and the refusal of an option a backend does not honour.
These read the table and check each place against it, so a new option cannot be half-added."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dockrun
from conftest import REPO, write_project
from dockrun import api
from dockrun import options as options_mod
from dockrun.backends import REGISTRY, get_backend
from dockrun.options import COMMANDS, OPTIONS, RunRequest, for_command, honoured_by

RUN_OPTIONS = [name for name, _ in for_command("run")]


def _dockrun(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point, in-process (no warm helper left behind by a test that runs nothing)."""
    env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_WARMSTART": "0"}
    return subprocess.run([sys.executable, "-m", "dockrun", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def _cli_value(name: str) -> list[str]:
    """The option ``name`` on a command line, set to something other than its default."""
    opt = OPTIONS[name]
    if opt.is_flag:
        return [opt.flags[-1]]
    if opt.choices:
        return [opt.flags[-1], opt.choices[-1]]
    return [opt.flags[-1], "k=v" if opt.metavar and "=" in opt.metavar else "{}"]


@pytest.mark.parametrize("command", [*COMMANDS, "runs rerun"])
def test_every_command_offers_exactly_the_table_options_it_takes(home: Path, command: str) -> None:
    """Each command's --help shows the table's flags with the table's help: `runs rerun --trust`
    means what `run --trust` means (its build credentials too), not a meaning of its own."""
    from dockrun.commands import cli

    r = _dockrun(home, *command.split(), "--help")
    assert r.returncode == 0, r.stderr
    *group, name_ = command.split()
    taken = {name for name, _ in for_command(name_)}
    for name in taken:
        for flag in OPTIONS[name].flags:
            assert f" {flag}," in r.stdout or f" {flag} " in r.stdout or f" {flag}\n" in r.stdout, (command, flag)
    found = cli.commands[group[0]].commands[name_] if group else cli.commands[name_]
    params = {p.name: p for p in found.params}
    assert {name for name in OPTIONS if name in params} == taken
    assert all(params[name].opts + params[name].secondary_opts == list(OPTIONS[name].flags) for name in taken)
    assert all(params[name].help == OPTIONS[name].help for name in taken)
    # The commands' own output flags, declared once (argv.OUTPUT_FLAGS), wherever a build may run.
    if name_ != "lock":
        assert {"quiet", "verbose"} <= set(params), command


def test_execute_keeps_mlflow_projects_runs_keywords_in_its_order() -> None:
    import mlflow.projects

    mlflow_names = list(inspect.signature(mlflow.projects.run).parameters)
    ours = inspect.signature(api.execute).parameters
    explicit = [n for n, p in ours.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert explicit == mlflow_names
    # Each of MLflow's keywords is an option of the table (uri aside: the project itself).
    by_keyword = {opt.keyword: name for name, opt in OPTIONS.items() if opt.keyword}
    assert set(explicit) - {"uri"} <= set(by_keyword)
    # dockrun's own come through **options, checked against the table; nothing else is a keyword.
    assert [n for n, p in ours.items() if p.kind == p.KEYWORD_ONLY] == ["log", "stdout", "stderr"]
    assert [p.kind for p in ours.values()][-1] == inspect.Parameter.VAR_KEYWORD


def _python_value(name: str) -> object:
    default = getattr(RunRequest(uri="x"), name)
    if isinstance(default, bool):
        return not default
    return {"parameters": {"k": 1}, "docker_args": ["k=v"], "env_manager": "uv",
            "storage_dir": "relative/dir", "docker_auth": {"username": "u"}}.get(name, "set")


def test_execute_takes_every_table_option_by_its_keyword(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[RunRequest] = []
    monkeypatch.setattr(api, "submit", lambda request, **kw: seen.append(request))
    monkeypatch.chdir(tmp_path)
    keywords = {opt.keyword: name for name, opt in OPTIONS.items() if opt.keyword}
    for keyword, name in keywords.items():
        seen.clear()
        dockrun.execute("proj", **{keyword: _python_value(name)})
        (request,) = seen
        assert set(request.given()) == {name, "cwd"}, keyword
    assert request.cwd == tmp_path
    # Converted as the table says: parameters as strings, a storage dir made absolute.
    dockrun.execute("proj", parameters={"n": 3}, storage_dir="out", docker_args=["gpus=all"])
    assert seen[-1].parameters == {"n": "3"} and seen[-1].storage_dir == tmp_path / "out"
    assert seen[-1].docker_args == ("gpus=all",)
    dockrun.execute("proj", env_manager=None)  # MLflow's default: the project's own choice
    assert seen[-1].env_manager == "auto"
    for wrong in ("tracking_url", "image_id", "cwd", "mlflow_run_id"):  # not keywords: a typo, or set by a face
        with pytest.raises(TypeError, match=f"^execute\\(\\) got an unexpected keyword argument '{wrong}'$"):
            dockrun.execute("proj", **{wrong: "x"})


def test_each_backends_options_are_what_the_table_says() -> None:
    for name in REGISTRY:
        assert get_backend(name).options == honoured_by(name)
    assert "backend_config" not in honoured_by("local") and "docker_args" not in honoured_by("databricks")


REFUSALS = [(name, backend) for name in RUN_OPTIONS for backend in REGISTRY
            if OPTIONS[name].refusable and name not in honoured_by(backend)]


@pytest.mark.parametrize("name, backend", REFUSALS, ids=[f"{n}-{b}" for n, b in REFUSALS])
def test_a_backend_that_does_not_honour_an_option_refuses_it_in_one_line(home: Path, name: str, backend: str) -> None:
    r = _dockrun(home, "run", str(home / "no-such-project"), "-b", backend, *_cli_value(name))
    assert r.returncode == 2
    assert r.stderr == f"dockrun: error: {OPTIONS[name].label}: not supported by backend {backend}\n"
    assert not home.exists()  # refused before anything was made


def test_refusals_cover_every_option_some_backend_does_not_honour() -> None:
    limited = {name for name in RUN_OPTIONS if OPTIONS[name].backends is not None}
    assert limited == {name for name, _ in REFUSALS}
    assert {"docker_args", "backend_config", "storage_dir", "base_image", "rebuild", "dev", "trust"} <= limited


def test_execute_refuses_mlflows_docker_auth_naming_it(tmp_path: Path, home: Path) -> None:
    # MLflow's registry login for docker_env images: dockrun uses the engine's own (docker login).
    with pytest.raises(dockrun.ConfigError, match="^docker_auth: not supported by backend local$"):
        dockrun.execute(str(tmp_path), docker_auth={"username": "u", "password": "p"})


def test_sweep_takes_tracking_uri_through_the_table(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    # The option added to `dockrun sweep` by one edit (its `commands`): offered, and on each point's request.
    import dockrun.experiments.sweep
    from dockrun.commands import cli

    seen = []

    def fake_sweep(template, points, parallel, resume, log):  # noqa: ANN001, ANN202
        seen.append(template)
        raise SystemExit(0)

    monkeypatch.setattr(dockrun.experiments.sweep, "sweep", fake_sweep)
    with pytest.raises(SystemExit):
        cli.main(["sweep", "proj", "-P", "a=1,2", "--tracking-uri", "http://127.0.0.1:5000"],
                 prog_name="dockrun", standalone_mode=False)
    assert seen[0].tracking_uri == "http://127.0.0.1:5000"


def test_sweep_tracking_uri_reaches_every_run_and_a_bad_one_is_one_line(tmp_path: Path, home: Path) -> None:
    project = write_project(tmp_path / "p", {"MLproject": """
        name: p
        docker_env:
          image: dockrun-base:bookworm
        entry_points:
          main:
            parameters: {a: float}
            command: "echo {a}"
    """})
    r = _dockrun(home, "sweep", str(project), "-P", "a=1,2", "--tracking-uri", "sqlite:///nowhere/m.db")
    assert r.returncode == 2
    (line,) = r.stderr.splitlines()
    assert line.startswith("dockrun: error: --tracking-uri 'sqlite:///nowhere/m.db'") and "does not exist" in line
    assert not (home / "runs").exists()


@pytest.mark.parametrize("face", ["rerun", "sweep"])
def test_what_a_face_keeps_is_the_tables_and_comes_back_as_it_was(face: str, tmp_path: Path) -> None:
    """A rerun's record and a sweep's record keep the options the table marks for them, as JSON,
    and give them back as the request had them: a new option marked `kept` needs no other edit."""
    import json

    values = {"entry_point": "train", "version": "v1", "parameters": {"a": "1"}, "docker_args": ("shm-size=1g",),
              "backend": "kubernetes", "backend_config": {"namespace": "x"}, "env_manager": "uv",
              "base_image": "img:1", "storage_dir": tmp_path / "s", "experiment_name": "e", "experiment_id": "3",
              "tracking_uri": "http://127.0.0.1:1", "trust": True, "cwd": tmp_path}
    kept_names = {name for name, opt in OPTIONS.items() if face in opt.kept}
    assert kept_names <= set(values), "give the new kept option a value here"
    request = RunRequest(uri="u", **{k: v for k, v in values.items() if k in kept_names})
    data = json.loads(json.dumps(options_mod.kept_options(request, face)))
    assert set(data) == kept_names
    again = RunRequest(uri="u", **options_mod.from_kept({**data, "not-an-option": 1}, face))
    assert {k: getattr(again, k) for k in kept_names} == {k: getattr(request, k) for k in kept_names}


def test_the_python_sweep_takes_executes_keywords_through_the_table(tmp_path: Path, base_image: str, home: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """dockrun.sweep(**options) converts as execute() does: MLflow's env_manager=None is auto, a
    relative storage_dir is the caller's folder's; an unknown keyword is Python's TypeError."""
    proj = write_project(tmp_path / "p", {"MLproject": f"""
        name: p
        docker_env:
          image: {base_image}
        entry_points:
          main:
            parameters:
              a: {{type: float}}
            command: "python3 -c 'import sys; print(float(sys.argv[1]))' {{a}}"
    """})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKRUN_WARMSTART", "0")
    with pytest.raises(TypeError, match="sweep\\(\\) got an unexpected keyword argument 'nosuch'"):
        dockrun.sweep(str(proj), {"a": [1]}, nosuch=1)
    for _ in range(2):  # the second call too: the function, not the module of the same name
        result = dockrun.sweep(str(proj), {"a": [1, 2]}, parallel=2, env_manager=None, storage_dir="data")
        assert [r.status for r in result.rows] == ["FINISHED", "FINISHED"]
    assert callable(dockrun.rerun) and callable(dockrun.sweep)


@pytest.mark.parametrize("args, line", [
    (["-P", "a"], "dockrun: error: -P 'a': expected KEY=V1,V2,..."),
    (["-P", "a=1", "-P", "a=2"], "dockrun: error: -P a: given more than once; list its values after one =, "
                                 "comma-separated"),
])
def test_a_sweeps_axes_are_read_as_run_pairs_are(tmp_path: Path, args: list[str], line: str) -> None:
    r = _dockrun(tmp_path / "home", "sweep", str(tmp_path), *args)
    assert (r.returncode, r.stderr.strip()) == (2, line) and not (tmp_path / "home" / "sweeps").exists()


def test_help_names_every_source_remote_input_and_lock_file_the_readme_does(home: Path) -> None:
    run = " ".join(_dockrun(home, "run", "--help").stdout.split())
    assert "a folder, a Git URI or an archive (.zip, .tar.gz, .tgz)" in run
    assert "Where remote path parameters (s3://, http(s)://, dbfs:/, ...) are downloaded" in run
    lock = " ".join(_dockrun(home, "lock", "--help").stdout.split())
    assert "conda-lock.txt" in lock


@pytest.mark.parametrize("backend", ["kubernetes", "databricks"])
@pytest.mark.parametrize("value, line", [
    ("nosuch.json", "--backend-config nosuch.json: no such file (expected a JSON file or a JSON object)"),
    ("{oops", "--backend-config: not valid JSON (Expecting property name enclosed in double quotes at line 1)"),
])
def test_the_cli_and_execute_read_backend_config_alike(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       backend: str, value: str, line: str) -> None:
    """One reading of --backend-config (options.json_config): the same value, the same line."""
    r = _dockrun(home, "run", str(tmp_path), "-b", backend, "-c", value)
    assert (r.returncode, r.stderr) == (2, f"dockrun: error: {line}\n")
    monkeypatch.chdir(REPO)  # where _dockrun runs: nosuch.json is looked for there too
    with pytest.raises(dockrun.ConfigError) as e:
        dockrun.execute(str(tmp_path), backend=backend, backend_config=value)
    assert str(e.value) == line


def test_a_kubernetes_configs_template_is_found_beside_it_from_the_cli_too(home: Path, tmp_path: Path) -> None:
    """A relative kube-job-template-path is looked for in the current folder (as MLflow does), then
    beside the kubernetes_config.json: from `dockrun run -c FILE` as from execute(backend_config=FILE)."""
    import json

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "job.yaml").write_text("kind: Deployment\n")  # found, then refused for what it is
    (conf / "kubernetes_config.json").write_text(json.dumps({"repository-uri": "127.0.0.1:5000/team/p",
                                                             "kube-job-template-path": "job.yaml"}))
    line = "job.yaml (kube-job-template-path): expected kind: Job, apiVersion: batch/v1"
    r = _dockrun(home, "run", str(tmp_path), "-b", "kubernetes", "-c", str(conf / "kubernetes_config.json"))
    assert (r.returncode, r.stderr) == (2, f"dockrun: error: {line}\n")
    with pytest.raises(dockrun.ConfigError, match=r"^job\.yaml \(kube-job-template-path\): expected kind: Job"):
        dockrun.execute(str(tmp_path), backend="kubernetes", backend_config=str(conf / "kubernetes_config.json"))
