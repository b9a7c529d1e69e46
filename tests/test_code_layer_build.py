"""The lean client's build (engine.lean: POST /build over the local socket, no docker-py) keeps
behaviour: a code layer it builds is the one docker-py's path builds (same instructions, labels
and files, so the engine's cache gives back the very same image), its output lines are the same,
a failing build says the same thing and leaves nothing behind, and docker's config.json decides
what is sent as docker-py decides it. A code layer made without the builder (a container that is
created, given the code and committed) is the builder's layer and config. Behaviour only; speed is
measured in bench/build_times.py and bench/env_change.py."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import image_id, write_project
from dockrun.api import RunRequest
from dockrun.engine.address import DEFAULT_SOCKET
from dockrun.engine.client import Docker
from dockrun.engine.lean import LeanDocker, _docker_config, _proxy_args
from dockrun.errors import BuildError
from dockrun.images.build import project_context
from dockrun.prepare import prepare_image

_HEX = re.compile(r"\b[0-9a-f]{12,64}\b")


def _same_lines(lines: list[str]) -> list[str]:
    return [_HEX.sub("ID", line) for line in lines]  # image and container IDs differ build to build


def _labels(ref: str) -> dict[str, str]:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", ref],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out) or {}


def _files(ref: str) -> str:
    return subprocess.run(["docker", "run", "--rm", ref, "sh", "-c",
                           "cd /project && find . -exec stat -c '%n %a %s' {} + | sort && cat train.py"],
                          capture_output=True, text=True, check=True).stdout


def _rmi(*refs: str) -> None:
    subprocess.run(["docker", "rmi", "-f", *refs], capture_output=True)


def _base(base_image: str, lines: str) -> str:
    """A throwaway base image: ``base_image`` plus Dockerfile ``lines``; its tag."""
    tag = f"dockrun-test-code-base:{os.urandom(6).hex()}"
    LeanDocker(DEFAULT_SOCKET).build(_tar({"Dockerfile": f"FROM {base_image}\n{lines}"}), tag, {}, {},
                                     lambda line: None)
    return tag


def _tar(files: dict[str, str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    buf.seek(0)
    return buf


def test_a_code_only_change_through_the_lean_build_is_the_image_docker_py_builds(
        tmp_path: Path, home: Path, base_image: str) -> None:
    root = write_project(tmp_path / "code-layer", {
        "MLproject": f"name: code-layer\ndocker_env:\n  image: {base_image}\n"
                     "entry_points:\n  main:\n    command: \"python3 train.py\"\n",
        "train.py": "print('one')\n", "lib/util.py": "X = 1\n", "run.sh": "#!/bin/sh\necho hi\n",
    })
    (root / "run.sh").chmod(0o755)
    lean, full = LeanDocker(DEFAULT_SOCKET), Docker()
    tags: list[str] = []
    try:
        fresh: dict[str, list[str]] = {}
        # Each round one client builds a new code layer and the other the same context after it:
        # the engine's cache hands back the same image only if every instruction (labels included)
        # and every file is the same.
        for first, second in (("lean", "docker-py"), ("docker-py", "lean")):
            (root / "train.py").write_text(f"print({os.urandom(8).hex()!r})\n")  # a code-only change
            prepared = prepare_image(RunRequest(uri=str(root), base_image=base_image))
            plan, built = prepared.plan, {}
            for who in (first, second):
                engine = lean if who == "lean" else full
                tag = f"dockrun-test-code-layer:{who}-{os.urandom(4).hex()}"
                tags.append(tag)
                lines: list[str] = []
                with project_context(plan, root, prepared.settings) as context:
                    built[who] = engine.build(context, tag, {}, plan.project_labels, lines.append)
                assert built[who] == image_id(tag)
                assert _labels(tag) == {**_labels(base_image), **plan.project_labels}
                if who == first:
                    fresh[who] = [line.replace(tag, "TAG") for line in lines]
                    assert any(line.startswith("Step 2/") and "COPY project/ /project/" in line for line in lines)
                else:
                    assert any("Using cache" in line for line in lines)
            assert built["lean"] == built["docker-py"]
            files = _files(built["lean"])
            assert (root / "train.py").read_text() in files
            assert "./run.sh 777 " in files and "./lib/util.py 666 " in files
        assert _same_lines(fresh["lean"]) == _same_lines(fresh["docker-py"])
    finally:
        _rmi(*tags)


@pytest.fixture
def own_base(base_image: str) -> str:
    """A base of this test's own (the base image plus a unique label): every container a build
    on it makes carries that label, so anything left behind is found."""
    mark = os.urandom(6).hex()
    tag = f"dockrun-test-own-base:{mark}"
    LeanDocker(DEFAULT_SOCKET).build(_tar({"Dockerfile": f"FROM {base_image}\n"}), tag, {},
                                     {"dockrun.test-build": mark}, lambda line: None)
    yield tag
    _rmi(tag)


@pytest.mark.parametrize("dockerfile, says", [
    ("FROM {base}\nCOPY missing.txt /missing.txt\n", "failed at step 2/3 (COPY): COPY failed: "),
    ("FROM 127.0.0.1:9/dockrun-no-such-base:nope\n", "failed at step 1/2 (FROM): "),
    # The step's last line says why; the command (in the log above) is not repeated.
    ("FROM {base}\nRUN echo partial output && exit 3\n", "failed at step 2/3 (RUN, exit code 3): partial output"),
    ("FROM {base}\nBOGUS instruction\n", "failed: dockerfile parse error line 2: unknown instruction: BOGUS"),
])
def test_a_failing_build_says_what_docker_pys_says_and_leaves_nothing(own_base: str, dockerfile: str,
                                                                       says: str) -> None:
    mark = _labels(own_base)["dockrun.test-build"]
    errors = {}
    for who, engine in (("lean", LeanDocker(DEFAULT_SOCKET)), ("docker-py", Docker())):
        tag = f"dockrun-test-failing:{mark}-{who}"
        context = _tar({"Dockerfile": dockerfile.format(base=own_base), "here.txt": "x\n"})
        with pytest.raises(BuildError) as raised:
            engine.build(context, tag, {}, {"dockrun.test": "1"}, lambda line: None)
        errors[who] = _HEX.sub("ID", str(raised.value).replace(f"-{who}", "-WHO"))
        assert "\n" not in str(raised.value)
        assert image_id(tag) is None
    assert errors["lean"] == errors["docker-py"]
    assert says in errors["lean"] and errors["lean"].startswith("building dockrun-test-failing:")
    left = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=dockrun.test-build={mark}"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left == []


def test_the_build_request_follows_dockers_config_as_docker_py_does(tmp_path: Path) -> None:
    from docker.api.client import APIClient

    env = {"DOCKER_CONFIG": str(tmp_path)}
    config = tmp_path / "config.json"
    assert _docker_config(env) in ({}, None)  # no file here: docker-py then reads ~/.docker's, as this does
    proxies = {"proxies": {"default": {"httpProxy": "http://proxy:3128", "noProxy": "localhost"},
                           "tcp://elsewhere:2375": {"httpsProxy": "http://other:3128"}}}
    config.write_text(json.dumps({**proxies, "currentContext": "default"}))
    assert _docker_config(env) is not None
    old = os.environ.get("DOCKER_CONFIG")
    os.environ["DOCKER_CONFIG"] = str(tmp_path)  # docker-py reads it from the process's environment
    try:
        for host in (None, "tcp://elsewhere:2375"):  # no DOCKER_HOST: docker-py's base_url is None too
            expected = APIClient(base_url=host, version="1.41")._proxy_configs.get_environment()
            assert expected and _proxy_args(_docker_config(env) or {}, host) == expected
    finally:
        if old is None:
            del os.environ["DOCKER_CONFIG"]
        else:
            os.environ["DOCKER_CONFIG"] = old
    # What docker-py would send and the lean build does not: the build goes through docker-py.
    for sent in ({"auths": {"registry.example": {"auth": "dTpw"}}}, {"credsStore": "desktop"},
                 {"credHelpers": {"registry.example": "ecr-login"}}, {"HttpHeaders": {"X-Meta": "1"}},
                 {"registry.example": {"auth": "dTpw", "email": ""}}):
        config.write_text(json.dumps({**proxies, **sent}))
        assert _docker_config(env) is None, sent
    config.write_text("auth = dTpw\nemail = me@example\n")  # the legacy, non-JSON .dockercfg form
    assert _docker_config(env) is None


def _config(ref: str) -> dict:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config}}", ref],
                         capture_output=True, text=True, check=True).stdout
    # The builder records its last step's image (Image) and the container's hostname; a commit neither.
    return {k: v for k, v in json.loads(out).items() if k not in ("Image", "Hostname")}


def _layers(ref: str) -> list[str]:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{json .RootFS.Layers}}", ref],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def _top_layer(ref: str) -> list[tuple]:
    """Every entry of the image's last layer as `docker save` gives it: name, type, mode, owner, size,
    link, content hash, mtime (the folder the layer makes, /project, is stamped when it is made)."""
    save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
    assert save.stdout is not None
    layers: dict[str, bytes] = {}
    manifest: list = []
    with tarfile.open(fileobj=save.stdout, mode="r|") as outer:
        for member in outer:
            f = outer.extractfile(member) if member.isfile() else None
            if f is None:
                continue
            if member.name == "manifest.json":
                manifest = json.load(f)
            elif member.name.endswith("/layer.tar"):
                layers[member.name] = f.read()
    assert save.wait() == 0
    entries = []
    with tarfile.open(fileobj=io.BytesIO(layers[manifest[0]["Layers"][-1]])) as tar:
        for m in tar.getmembers():
            data = tar.extractfile(m).read() if m.isfile() else b""
            entries.append((m.name, m.type, oct(m.mode), m.uid, m.gid, m.size, m.linkname,
                            hashlib.sha256(data).hexdigest(), None if m.name == "project" else m.mtime))
    return entries


@pytest.mark.parametrize("base_lines", [
    "",  # the base as it is (a command, no entry point)
    'ENTRYPOINT ["/bin/sh", "-c"]\nCMD ["echo hi"]\nUSER nobody\nWORKDIR /srv\nENV A=1 PYTHONUNBUFFERED=0 B=2\n'
    "EXPOSE 8080\nSTOPSIGNAL SIGINT\nHEALTHCHECK CMD true\nLABEL team=ml\n",
], ids=["plain-base", "base-with-its-own-config"])
def test_a_committed_code_layer_is_the_layer_and_config_the_builder_makes(
        cli, tmp_path: Path, home: Path, base_image: str, base_lines: str) -> None:
    base = _base(base_image, base_lines)
    root = write_project(tmp_path / "committed", {
        "MLproject": f"name: committed\ndocker_env:\n  image: {base}\n"
                     "entry_points:\n  main:\n    command: \"python3 train.py\"\n",
        "train.py": f"print({os.urandom(8).hex()!r})\n", "lib/deep/util.py": "X = 1\n",
        "run.sh": "#!/bin/sh\necho hi\n",
        "secret.env": "not packed\n", ".dockerignore": "secret.env\n",
    })
    (root / "run.sh").chmod(0o755)
    (root / "lib" / "link.py").symlink_to("deep/util.py")
    tags = [base]
    try:
        r = cli("build", "--verbose", str(root))
        assert r.code == 0, r.err
        committed = r.out.strip()
        tags.append(committed)
        assert "committed from a container that never starts" in r.err and "Step " not in r.err, r.err
        # The same project through the engine's builder (the template's Dockerfile), by its side.
        prepared = prepare_image(RunRequest(uri=str(root)))
        assert prepared.plan.project_image == committed
        built = f"dockrun-test-code-layer:builder-{os.urandom(4).hex()}"
        tags.append(built)
        with project_context(prepared.plan, root, prepared.settings) as context:
            LeanDocker(DEFAULT_SOCKET).build(context, built, {}, prepared.plan.project_labels, lambda line: None)
        assert _config(committed) == _config(built)
        assert _layers(committed)[:-1] == _layers(built)[:-1] == _layers(base)  # one layer on the base
        layer = _top_layer(committed)
        assert layer == _top_layer(built)
        assert {e[0] for e in layer} >= {"project", "project/lib/link.py", "project/run.sh"}
        assert not any("secret.env" in e[0] for e in layer)
    finally:
        _rmi(*tags)


def test_an_image_with_onbuild_triggers_gets_its_code_layer_from_the_builder(cli, tmp_path: Path,
                                                                               base_image: str) -> None:
    base = _base(base_image, "ONBUILD RUN echo trigger-ran\n")
    root = write_project(tmp_path / "onbuild", {
        "MLproject": f"name: onbuild\ndocker_env:\n  image: {base}\nentry_points:\n  main:\n    command: \"true\"\n",
        "train.py": f"print({os.urandom(8).hex()!r})\n"})
    try:
        r = cli("build", "--verbose", str(root))
        assert r.code == 0, r.err
        assert "its ONBUILD triggers run in a build" in r.err and "trigger-ran" in r.err, r.err
        assert _config(r.out.strip()).get("OnBuild") in (None, [])
    finally:
        _rmi(base, *([r.out.strip()] if r.code == 0 else []))


def test_a_code_layer_that_cannot_be_made_fails_in_one_line_and_leaves_nothing(cli, tmp_path: Path,
                                                                              base_image: str) -> None:
    base = _base(base_image, "RUN touch /project\n")
    root = write_project(tmp_path / "blocked", {
        "MLproject": f"name: blocked\ndocker_env:\n  image: {base}\nentry_points:\n  main:\n    command: \"true\"\n",
        "train.py": "print(1)\n"})
    try:
        r = cli("build", str(root))
        assert r.code == 1
        last = r.err.strip().splitlines()[-1]
        assert last.startswith("dockrun: error: copying the code failed: ") and "not a directory" in last, r.err
        prepared = prepare_image(RunRequest(uri=str(root)))
        assert image_id(prepared.plan.project_image) is None
        left = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"ancestor={base}"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert left == []
    finally:
        _rmi(base)
