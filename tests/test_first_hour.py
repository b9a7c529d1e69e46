"""What a new user meets in the first hour, through the real CLI: typos get a line that says the
fix, before anything is built."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO


def test_a_backend_config_file_that_does_not_exist_is_named(cli, tmp_path: Path) -> None:
    r = cli("run", "examples/hello", "-b", "kubernetes", "-c", "nosuch.json", cwd=tmp_path)
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        "dockrun: error: --backend-config nosuch.json: no such file (expected a JSON file or a JSON object)"]


def test_inline_json_that_is_broken_is_still_called_json(cli) -> None:
    r = cli("run", "examples/hello", "-b", "kubernetes", "-c", "{oops")
    assert r.code == 2 and "--backend-config: not valid JSON" in r.err


@pytest.mark.parametrize("backend, name, value, default, config", [
    ("kubernetes", "DOCKRUN_K8S_PENDING_TIMEOUT_S", "2m", "120", "kubernetes_config.json"),
    ("kubernetes", "DOCKRUN_K8S_POLL_S", "-1", "0.5", "kubernetes_config.json"),
    ("databricks", "DOCKRUN_DATABRICKS_RETRY_S", "five", "300", '{"existing_cluster_id": "0123-abc"}'),
    ("databricks", "DOCKRUN_DATABRICKS_POLL_S", "nan", "5", '{"existing_cluster_id": "0123-abc"}'),
])
def test_a_mistyped_duration_setting_is_one_line_before_anything(cli, tmp_path: Path, backend: str, name: str,
                                                                 value: str, default: str, config: str) -> None:
    """The DOCKRUN_*_S settings are read by one function (config.seconds) and checked by the backend
    that waits on them at submit: not ignored here and a traceback there (a Kubernetes run's owner)."""
    (tmp_path / "job.yaml").write_text("apiVersion: batch/v1\nkind: Job\nspec:\n  template:\n    spec:\n"
                                       "      containers: [{name: main, image: x}]\n      restartPolicy: Never\n")
    (tmp_path / "kubernetes_config.json").write_text('{"repository-uri": "127.0.0.1:9/team/p", '
                                                     '"kube-job-template-path": "job.yaml"}')
    env = {name: value, "DATABRICKS_HOST": "http://127.0.0.1:9", "DATABRICKS_TOKEN": "t",
           "KUBECONFIG": str(tmp_path / "no-kubeconfig")}
    r = cli("run", str(REPO / "examples" / "hello"), "-b", backend, "-c", config, cwd=tmp_path, env=env)
    assert r.code == 2
    assert r.err.splitlines() == [f"dockrun: error: {name}={value!r}: expected a number of seconds (0 or more), "
                                  f"e.g. {default}"]


def test_a_mistyped_parameter_is_named_with_the_one_it_is_close_to(cli, no_leaks) -> None:
    for typo in ("aplha", "alph"):
        r = cli("run", "examples/hello", "-q", "-P", f"{typo}=0.3")
        warnings = [line for line in r.err.splitlines() if "did you mean" in line]
        assert warnings == [f"dockrun: warning: -P {typo}: not declared by entry point 'main'; did you mean alpha?"]
    ok = cli("run", "examples/hello", "-q", "-P", "alpha=0.3", "-P", "unrelated_extra=1")
    assert "did you mean" not in ok.err


def test_a_project_without_mlproject_run_without_e_says_which_script_to_name(cli) -> None:
    r = cli("run", "examples/scripts")
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        "dockrun: error: scripts: this project has no MLproject, so no entry point 'main': name a script to run "
        "with -e, e.g. -e train.py"]


def test_a_shell_needs_no_entry_point_and_its_command_says_what_is_missing(cli, no_leaks) -> None:
    r = cli("shell", "examples/scripts", "--", "sh", "-c", 'python -V; eval "$DOCKRUN_COMMAND"')
    assert r.code == 2, r.err
    assert "Python 3" in r.out
    assert "no entry point 'main': name a script to run with -e" in r.err
    required = cli("shell", "examples/hello", "-e", "sleep", "-P", "seconds=abc", "--", "true")
    assert required.code == 0, required.err


def test_a_base_image_that_cannot_be_had_is_one_line_before_any_build(cli, home: Path) -> None:
    r = cli("run", "examples/scripts", "-e", "train.py", "--base-image", "nosuch-image:1")
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        "dockrun: error: base image nosuch-image:1: not on this engine and no registry it can reach serves it; "
        "pull or build it first, or name another with --base-image or DOCKRUN_BASE_IMAGE"]
    assert "Step 1" not in r.err and not (home / "runs").exists()


def test_runs_list_says_when_there_are_more_and_prune_says_when_nothing_went(cli, no_leaks) -> None:
    for _ in range(3):
        assert cli("run", "examples/hello", "-q", "-P", "alpha=0.3").code == 0
    short = cli("runs", "list", "-n", "2")
    assert short.code == 0 and short.out.strip().splitlines()[-1] == "(2 of 3 runs; -n 3 or --all for every one)"
    assert len(short.out.strip().splitlines()) == 4
    every = cli("runs", "list", "--all")
    assert len(every.out.strip().splitlines()) == 4 and "of 3 runs" not in every.out
    pruned = cli("images", "prune", "--older-than", "100000", "--project", "no-such-project")
    assert pruned.code == 0
    assert pruned.out.strip() == ("nothing to remove: no dockrun image of no-such-project unused for 100000 days "
                                  "(--older-than DAYS)")


def test_a_docker_option_typo_is_refused_before_a_cold_build(cli, tmp_path: Path, home: Path) -> None:
    import uuid

    from conftest import write_project

    project = write_project(tmp_path / "cold", {
        "requirements.txt": "tabulate==0.9.0\n",
        "marker.txt": uuid.uuid4().hex,  # a project image nobody has built
        "train.py": "print('hi')\n"})
    r = cli("run", str(project), "-e", "train.py", "-A", "shm-sise=1g")
    assert r.code == 2, r.err
    assert len(r.err.strip().splitlines()) == 1 and "shm-sise" in r.err
    assert "building" not in r.err and not (home / "runs").exists()


def test_an_environment_ships_its_bytecode(cli, tmp_path: Path, no_leaks) -> None:
    # A run is the caller's uid, which cannot write __pycache__ into the environment: without
    # bytecode compiled at build time, every run of a large library compiles it again.
    from conftest import write_project

    project = write_project(tmp_path / "pyc", {
        "requirements.txt": "tabulate==0.9.0\n",
        "check.py": """
            import importlib.util, os
            origin = importlib.util.find_spec("tabulate").origin  # found, not imported: nothing compiled now
            print("bytecode", os.path.exists(importlib.util.cache_from_source(origin)))
        """})
    r = cli("run", str(project), "-e", "check.py", "-q")
    assert r.code == 0, r.err
    assert "bytecode True" in r.out


def test_conda_packages_uv_cannot_install_point_to_the_conda_path_that_works_without_setup(cli, tmp_path: Path,
                                                                                           home: Path) -> None:
    (tmp_path / "conda.yaml").write_text("dependencies: [python=3.11, cudatoolkit=11.8, six]\n")
    (tmp_path / "a.py").write_text("print(1)\n")
    r = cli("run", str(tmp_path), "-e", "a.py", "--env-manager", "uv")
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        "dockrun: error: conda.yaml: no PyPI equivalent for cudatoolkit; use --env-manager conda or remove them"]


def test_a_registry_docker_cannot_name_images_under_is_one_line(cli, home: Path) -> None:
    for registry in ("http://127.0.0.1:5000/team", "Team/ML", "registry.example:5000/team name"):
        r = cli("run", "examples/hello", env={"DOCKRUN_REGISTRY": registry})
        assert r.code == 2, r.err
        assert r.err.strip().splitlines() == [
            f"dockrun: error: DOCKRUN_REGISTRY={registry!r}: expected HOST[:PORT][/PATH] with a lowercase path, "
            "e.g. registry.example:5000/team"], r.err
    assert "RUN ID" in cli("runs", "list").out and len(cli("runs", "list").out.splitlines()) == 1


def test_a_registry_with_credentials_in_it_is_refused_without_showing_them(cli, home: Path) -> None:
    for registry in ("https://u:s3cr3t@reg.example/team", "u:s3cr3t@reg.example:5000/team"):
        r = cli("run", "examples/hello", env={"DOCKRUN_REGISTRY": registry})
        assert r.code == 2, r.err
        assert "s3cr3t" not in r.err and "***@reg.example" in r.err, r.err
        assert len(r.err.strip().splitlines()) == 1, r.err


def test_a_micromamba_image_docker_cannot_name_is_one_line_naming_the_variable(cli, home: Path) -> None:
    r = cli("run", "examples/conda-uv", env={"DOCKRUN_MICROMAMBA_IMAGE": "Mamba Org/micromamba"})
    assert r.code == 2, r.err
    assert r.err.strip().splitlines() == [
        "dockrun: error: DOCKRUN_MICROMAMBA_IMAGE='Mamba Org/micromamba': expected an image reference, "
        "e.g. mambaorg/micromamba:1.5.10-bookworm-slim"], r.err


def test_dockrun_alone_shows_what_there_is_as_help_does(cli) -> None:
    for args in ((), ("runs",), ("images",)):
        r = cli(*args)
        assert r.code == 0, r.err
        assert r.out.startswith(f"Usage: dockrun {' '.join(args)}".rstrip() + " [OPTIONS] COMMAND"), r.out
        assert r.err == ""
        assert r.out == cli(*args, "--help").out
