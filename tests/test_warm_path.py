"""The warm path's shortcuts keep behaviour: the lean engine client is used on a local socket and
docker-py everywhere else; it creates the same container docker-py creates and reports an engine
error as one line; a warm run imports neither docker-py nor the build stack nor YAML; the parsed
MLproject cache never hides a change or an error; a code-only change on the local socket builds
its code layer without docker-py. Behaviour only; speed is measured in bench/."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, dockrun_containers, free_port, write_project
from dockrun.engine.address import DEFAULT_SOCKET, local_socket
from dockrun.engine.client import ContainerSpec, Docker
from dockrun.engine.lean import LeanDocker, connect
from dockrun.errors import ConfigError, ProjectError
from dockrun.project.spec import load_project

# Runs the CLI in this interpreter, then says which modules the driver imported (the supervisor is
# a fork of it, so it has no others).
_PROBE = textwrap.dedent("""
    import sys
    from dockrun.cli import main
    sys.argv = ["dockrun", *sys.argv[1:]]
    try:
        main()
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    names = ("docker", "requests", "yaml", "dockrun.images.build", "http.client", "ssl", "click")
    sys.stderr.write("IMPORTED " + " ".join(n for n in names if n in sys.modules) + "\\n")
    sys.exit(code)
""")


def _probe(home: Path, base_image: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, set[str]]:
    full = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image, **(env or {})}
    p = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=REPO, env=full, capture_output=True, text=True,
                       timeout=600)
    lines = p.stderr.splitlines()
    imported = set(lines[-1].split()[1:]) if lines and lines[-1].startswith("IMPORTED") else set()
    return p.returncode, "\n".join(lines[:-1]), imported


@pytest.fixture
def docker_env_project(tmp_path: Path, base_image: str) -> Path:
    return write_project(tmp_path / "warm", {
        "MLproject": f"name: warm-path\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
                     "    parameters:\n      n: {type: int, default: 1}\n"
                     "    command: \"python3 say.py {n}\"\n",
        "say.py": "import sys\nprint('out', sys.argv[1])\nprint('err', sys.argv[1], file=sys.stderr)\n",
    })


def test_which_engine_gets_the_lean_client(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert local_socket({"DOCKER_CONFIG": str(tmp_path)}) == DEFAULT_SOCKET  # docker's default
    assert local_socket({"DOCKER_HOST": "unix:///run/other.sock"}) == "/run/other.sock"
    assert local_socket({"DOCKER_HOST": "unix:///run/other.sock", "DOCKRUN_REMOTE_ENGINE": "0"}) == "/run/other.sock"
    for remote in ({"DOCKER_HOST": "tcp://127.0.0.1:2375"}, {"DOCKER_HOST": "ssh://me@host"},
                   {"DOCKER_CONTEXT": "elsewhere"}, {"DOCKRUN_REMOTE_ENGINE": "1"},
                   {"DOCKRUN_REMOTE_ENGINE": "maybe"}):  # refused by docker-py's path, with its message
        assert local_socket(remote) is None, remote


def test_a_context_in_dockers_config_is_left_to_docker_py(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "remote-box"}))
    assert local_socket({"DOCKER_CONFIG": str(tmp_path)}) is None
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "default"}))
    assert local_socket({"DOCKER_CONFIG": str(tmp_path)}) == DEFAULT_SOCKET
    (tmp_path / "config.json").write_text("{not json")
    assert local_socket({"DOCKER_CONFIG": str(tmp_path)}) == DEFAULT_SOCKET  # as docker-py reads it


def test_connect_on_the_local_socket_is_lean_and_a_missing_socket_is_one_error(tmp_path: Path, base_image: str) -> None:
    engine = connect(os.environ)
    assert isinstance(engine, LeanDocker) and engine.remote is False
    assert engine.image_id(base_image) == Docker().image_id(base_image)
    assert engine.image_id("dockrun-no-such-image:nope") is None
    with pytest.raises(ConfigError, match=r"^cannot reach the Docker engine \(DOCKER_HOST\): "):
        connect({"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})


def test_a_warm_run_on_the_local_socket_imports_no_docker_py_build_stack_yaml_http_or_click(
        docker_env_project: Path, home: Path, base_image: str) -> None:
    code, err, _ = _probe(home, base_image, "run", str(docker_env_project))  # cold: builds the project image
    assert code == 0, err
    code, err, imported = _probe(home, base_image, "run", "-q", str(docker_env_project), "-P", "n=2")
    assert code == 0, err
    assert imported == set()
    run_dir = max((home / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    assert (run_dir / "stdout.log").read_text() == "out 2\n"
    assert (run_dir / "stderr.log").read_text() == "err 2\n"
    assert dockrun_containers(run_dir.name) == []


def test_a_warm_python_env_run_reads_its_unchanged_python_env_yaml_without_yaml(
        tmp_path: Path, home: Path, base_image: str) -> None:
    root = write_project(tmp_path / "pe", {
        "MLproject": "name: warm-pe\npython_env: python_env.yaml\nentry_points:\n  main:\n"
                     "    command: \"python -c 'print(42)'\"\n",
        "python_env.yaml": "python: \"3.11\"\ndependencies: []\n"})
    code, err, _ = _probe(home, base_image, "run", "-q", str(root))  # cold: builds the environment
    assert code == 0, err
    code, err, imported = _probe(home, base_image, "run", "-q", str(root))
    assert code == 0, err
    assert "yaml" not in imported, imported
    # An edit is seen: the file is read again, and YAML parses the new text.
    (root / "python_env.yaml").write_text("python: three\n")
    code, err, imported = _probe(home, base_image, "run", "-q", str(root))
    assert code == 2 and "yaml" in imported
    assert err.strip() == "dockrun: error: python_env.yaml: python: expected a Python version like 3.11, got 'three'"


def test_a_code_only_rebuild_on_the_local_socket_imports_no_docker_py(
        docker_env_project: Path, home: Path, base_image: str) -> None:
    code, err, _ = _probe(home, base_image, "run", "-q", str(docker_env_project))  # cold
    assert code == 0, err
    # The code only, to content no earlier session built (image names are content keys).
    (docker_env_project / "say.py").write_text(f"import sys\nprint('edited', sys.argv[1])  # {os.urandom(8).hex()}\n")
    code, err, imported = _probe(home, base_image, "run", str(docker_env_project), "-P", "n=3")
    assert code == 0, err
    assert "dockrun.images.build" in imported  # it did build: the new code layer
    assert not imported & {"docker", "requests"}, imported
    assert re.search(r"^building project image dockrun-warm-path:\S+ \.\.\. \d+\.\d s$", err, re.M), err
    run_dir = max((home / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    assert (run_dir / "stdout.log").read_text() == "edited 3\n"
    assert dockrun_containers(run_dir.name) == []


def test_a_tcp_engine_goes_through_docker_py(docker_env_project: Path, home: Path, base_image: str) -> None:
    port = free_port()  # nothing listens there
    code, err, imported = _probe(home, base_image, "run", str(docker_env_project),
                                 env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
    assert code == 2 and "docker" in imported
    assert err.startswith("dockrun: error: ") and "cannot reach the Docker engine" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_engine_errors_through_the_lean_client_are_one_line_and_leave_nothing(
        docker_env_project: Path, home: Path, base_image: str) -> None:
    assert _probe(home, base_image, "run", "-q", str(docker_env_project))[0] == 0  # the image exists
    # refused by the engine at create: a user error, exit 2
    code, err, imported = _probe(home, base_image, "run", "-q", str(docker_env_project), "-A", "v=/tmp:relative")
    assert "docker" not in imported
    assert code == 2, err
    assert err.startswith("dockrun: error: cannot create the run's container: ") and "relative" in err
    assert len(err.strip().splitlines()) == 1
    # accepted at create, refused at start (in the supervisor): the run FAILED, saying why
    code, err, imported = _probe(home, base_image, "run", "-q", str(docker_env_project),
                                 "-A", "network=dockrun-no-such-network")
    assert "docker" not in imported  # network_mode is sent by the lean client itself
    assert code == 1, err
    assert err.endswith("FAILED: supervisor error: network dockrun-no-such-network not found"), err
    assert len(err.strip().splitlines()) == 1
    runs = list((home / "runs").iterdir())
    assert len(runs) == 3 and all(dockrun_containers(r.name) == [] for r in runs)


def _inspect(container_id: str) -> dict:
    out = subprocess.run(["docker", "inspect", container_id], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


@pytest.mark.parametrize("options", [{}, {"network_mode": "none"}])
def test_the_lean_create_makes_the_container_docker_py_makes(tmp_path: Path, base_image: str, options: dict) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    made = []

    def spec(name: str) -> ContainerSpec:
        return ContainerSpec(image=base_image, command=("sh", "-c", "echo hi"), name=name,
                             labels={"dockrun.run-id": name, "k": "v"}, environment={"A": "1", "HOME": "/tmp"},
                             mounts=((str(folder), str(folder), "rw"), (str(folder), "/ro", "ro")),
                             working_dir="/", user=f"{os.getuid()}:{os.getgid()}", options=options)

    suffix = os.urandom(4).hex()
    try:
        lean, full = LeanDocker(DEFAULT_SOCKET), Docker()
        made.append(lean.create(spec(f"dockrun-lean-{suffix}")).id)
        made.append(full.create(spec(f"dockrun-full-{suffix}")).id)
        a, b = (_inspect(c) for c in made)
    finally:
        for c in made:
            subprocess.run(["docker", "rm", "-f", c], capture_output=True)

    def same(info: dict) -> dict:
        config = {k: v for k, v in info["Config"].items() if k not in ("Hostname", "Labels")}
        mounts = sorted(info["Mounts"], key=lambda m: m["Destination"])
        return {"Config": config, "HostConfig": info["HostConfig"], "Mounts": mounts,
                "Labels": {k: v for k, v in info["Config"]["Labels"].items() if k != "dockrun.run-id"}}

    assert same(a) == same(b)
    assert a["HostConfig"]["Init"] is True and a["Config"]["Labels"]["k"] == "v"


def test_lean_containers_stop_remove_and_vanish_quietly(base_image: str) -> None:
    engine = LeanDocker(DEFAULT_SOCKET)
    name = f"dockrun-lean-{os.urandom(4).hex()}"
    container = engine.create(ContainerSpec(image=base_image, command=("sleep", "60"), name=name,
                                            labels={"dockrun.run-id": name}, environment={}, mounts=(),
                                            working_dir="/", user=None))
    try:
        stream = engine.stream_output(container)
        container.start()
        assert engine.get_container(name).attrs["State"]["Running"] is True
        engine.stop(container, timeout=1)
        assert list(stream) == []
        assert container.wait()["StatusCode"] != 0
    finally:
        engine.remove(container)
    assert engine.get_container(name) is None
    engine.stop(container)  # gone: both quiet, as docker-py's adapter is
    engine.remove(container)


# ---- the parsed-MLproject cache ---------------------------------------------------------------

def _loaded_without_yaml(root: Path, cache: Path) -> tuple[str, bool]:
    code = ("import sys; from pathlib import Path; from dockrun.project.spec import load_project; "
            f"p = load_project(Path({str(root)!r}), Path({str(cache)!r})); print(p.name, 'yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return out[0], out[1] == "True"


def test_an_unchanged_mlproject_is_read_without_yaml_and_an_edit_is_seen(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"MLproject": "name: one\nentry_points:\n  main: echo {x}\n"})
    cache = tmp_path / "cache"
    first = load_project(root, cache)
    assert first == load_project(root) and first == load_project(root, cache)
    assert _loaded_without_yaml(root, cache) == ("one", False)
    (root / "MLproject").write_text("name: two\nentry_points:\n  main: echo {x}\n")
    assert load_project(root, cache).name == "two"
    assert _loaded_without_yaml(root, cache) == ("two", False)


def test_errors_are_found_on_every_load_cached_or_not(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = write_project(tmp_path / "p", {"MLproject": "name: [unclosed\n"})
    for _ in range(2):
        with pytest.raises(ProjectError, match=r"^MLproject: not valid YAML"):
            load_project(root, cache)
    assert not cache.exists() or not list(cache.iterdir())
    (root / "MLproject").write_text("name: x\nentry_points: [a, b]\n")  # valid YAML, invalid project
    for _ in range(2):
        with pytest.raises(ProjectError, match=r"^MLproject: entry_points: expected a mapping"):
            load_project(root, cache)
    assert list(cache.iterdir())  # the data was cached, and still refused


def test_data_json_cannot_give_back_is_not_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = write_project(tmp_path / "p", {"MLproject": "name: d\nwhen: 2024-01-01\nentry_points:\n"
                                                        "  main:\n    command: echo {1}\n    parameters: {1: int}\n"})
    spec = load_project(root, cache)
    assert spec == load_project(root) and spec.entry_points["main"].parameters[0].name == "1"
    assert not cache.exists() or not list(cache.iterdir())


def test_a_damaged_cache_entry_is_parsed_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = write_project(tmp_path / "p", {"MLproject": "name: ok\n"})
    load_project(root, cache)
    (entry,) = cache.iterdir()
    entry.write_text("{damaged")
    assert load_project(root, cache).name == "ok"
    assert json.loads(entry.read_text()) == {"name": "ok"}


def test_docker_py_leaves_paramiko_out_on_a_local_socket_and_keeps_it_for_ssh(tmp_path: Path) -> None:
    # docker-py imports paramiko (~0.13 s) whenever it is installed; only ssh:// engines use it.
    code = ("import sys; from dockrun.engine.client import _docker; _docker(); "
            "print('paramiko' in sys.modules and sys.modules['paramiko'] is not None, "
            "hasattr(sys.modules['docker.transport'], 'SSHHTTPAdapter'))")
    base = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    local = subprocess.run([sys.executable, "-c", code], env={**base, "DOCKER_CONFIG": str(tmp_path)},
                           capture_output=True, text=True, check=True)
    assert local.stdout.split() == ["False", "False"]
    ssh = subprocess.run([sys.executable, "-c", code], env={**base, "DOCKER_HOST": "ssh://u@127.0.0.1"},
                         capture_output=True, text=True, check=True)
    assert ssh.stdout.split() == ["True", "True"]
