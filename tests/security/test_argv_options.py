"""No user-given string becomes an option of a program dockrun starts (issue 20.1).

`dockrun build 'git+--upload-pack=touch /tmp/x;false'` once ran the command on the host: the dash
check ran before `git+` was stripped, and git read the URL as an option. Here the attacker's URIs go
through the real CLI; then recording shims for git, docker and ssh (first on PATH) log every argv
dockrun's processes start while hypothesis feeds option-like URIs, versions, subdirectories and
entry points: a user's text never stands in an option's place (before `--` / `--end-of-options`,
starting with '-'), and nothing the payloads ask for ever runs."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, write_project
from git_fixtures import new_remote

SEPARATORS = ("--", "--end-of-options")


@pytest.fixture(scope="module")
def marker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.mark.parametrize("command", ["build", "run"])
@pytest.mark.parametrize("uri", [
    "git+--upload-pack=touch {m};false",
    "'git+--upload-pack=touch {m};false'",
    "git+-u touch {m}",
    "git+ext::sh -c touch% {m}",
    "git+sh::touch {m}",
    "ssh://-oProxyCommand=touch% {m}/repo.git",
    "git+ssh://-oProxyCommand=touch% {m}/repo.git",
    "ssh://127.0.0.1:-oProxyCommand=touch% {m}/repo.git",
    "git@-oProxyCommand=touch% {m}:repo.git",
    "git+-oProxyCommand=touch% {m}@127.0.0.1:repo.git",
    "git+git@127.0.0.1:--upload-pack=touch% {m}",
])
def test_attackers_uri_runs_nothing_on_the_host(cli, tmp_path: Path, uri: str, command: str) -> None:
    marker = tmp_path / "PWNED"
    result = cli(command, uri.format(m=marker), env={"DOCKRUN_WARMSTART": "0"})
    assert result.code == 2, result.err
    assert len(result.err.strip().splitlines()) == 1 and result.err.startswith("dockrun: error: "), result.err
    assert not marker.exists()


def test_option_like_version_runs_nothing(cli, tmp_path: Path) -> None:
    remote = new_remote(tmp_path, "proj", {"MLproject": "name: p\nentry_points:\n  main:\n    command: 'true'\n"})
    marker = tmp_path / "PWNED"
    result = cli("build", remote.url, f"--version=--upload-pack=touch {marker};false")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert not marker.exists()


@pytest.mark.parametrize("script", ["-V.py", "-c.sh"])
def test_a_script_entry_point_is_never_its_interpreters_option(cli, tmp_path: Path, script: str, no_leaks) -> None:
    """`-e -V.py` runs the project's file -V.py (as ./-V.py), it does not ask python for -V."""
    body = "print('the script ran')\n" if script.endswith(".py") else "echo the script ran\n"
    root = write_project(tmp_path / "proj", {script: body})
    result = cli("run", f"--entry-point={script}", "--", str(root))
    assert result.code == 0, result.err
    assert "the script ran" in result.out


# --- every argv, recorded --------------------------------------------------------------------------

SHIM = """#!{python} -S
import json, os, sys
with open({log!r}, "a") as f:
    f.write(json.dumps([{name!r}, *sys.argv[1:]]) + "\\n")
if {real!r}:
    os.execv({real!r}, [{real!r}, *sys.argv[1:]])
sys.exit({code})
"""


@pytest.fixture(scope="module")
def shims(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A folder of shims (git runs the real git; ssh and docker are only recorded, then fail: no
    connection, no container) and the log they append to, one JSON argv a line."""
    folder = tmp_path_factory.mktemp("shims")
    log = folder / "argv.jsonl"
    for name, real, code in (("git", shutil.which("git"), 0), ("ssh", None, 255), ("docker", None, 1)):
        path = folder / name
        path.write_text(SHIM.format(python=sys.executable, log=str(log), name=name, real=real or "", code=code))
        path.chmod(0o755)
    return folder, log


def _recorded(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _in_option_place(argv: list[str], token: str) -> list[str]:
    """Elements holding ``token`` that the program would read as an option: before its first
    separator, starting with '-'."""
    args = argv[1:]
    end = next((i for i, a in enumerate(args) if a in SEPARATORS), len(args))
    return [a for a in args[:end] if token in a and a.startswith("-")]


@pytest.fixture(scope="module")
def repo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("argv-repo")
    return new_remote(base, "proj", {"MLproject": "name: p\nentry_points:\n  main:\n    command: 'true'\n",
                                     "sub/MLproject": "name: s\nentry_points:\n  main:\n    command: 'true'\n"}).url


# No '/', '@', ':', '#', '?' or '%' in the fuzzed text: it can never move a URL's host off 127.0.0.1
# (no lookup, no traffic anywhere else).
SAFE = string.ascii_letters + string.digits + "-=_.;,+ '\"$()`\\|&<>*!~"
FLAGS = ["--upload-pack=", "--receive-pack=", "-oProxyCommand=", "--config=core.sshCommand=", "-u",
         "--template=", "--exec=", "-c", "-", "--", "--end-of-options", "-v", "--privileged", "-e"]


def _payloads(token: str, marker: Path) -> st.SearchStrategy[str]:
    """Option-like text, carrying ``token`` (to find it in an argv) and a command that would create
    ``marker`` if anything ran it."""
    return st.builds(lambda flag, head, tail: f"{flag}{head}touch {marker};{tail}{token}",
                     st.sampled_from(FLAGS), st.text(alphabet=SAFE, max_size=6), st.text(alphabet=SAFE, max_size=6))


@st.composite
def requests(draw: st.DrawFn, repo: str, token: str, marker: Path) -> tuple[str, str | None, str]:
    p = _payloads(token, marker)
    scheme = st.sampled_from(["ssh", "git+ssh", "https", "http", "git", "file", "ssh+git"])
    uri = draw(st.one_of(
        p.map(lambda x: "git+" + x),
        st.builds(lambda s, x: f"{s}://{x}/repo.git", scheme, p),  # the host
        st.builds(lambda s, x: f"{s}://{x}@127.0.0.1:1/repo.git", scheme, p),  # the user
        st.builds(lambda s, x: f"{s}://127.0.0.1:1/{x}", scheme, p),  # the path (ssh: recorded only)
        p.map(lambda x: f"git+git@127.0.0.1:{x}"),  # scp-like path
        p.map(lambda x: f"git+{x}@127.0.0.1:repo.git"),  # scp-like user
        p.map(lambda x: f"git+ext::{x}"),
        p.map(lambda x: f"{repo}#{x}"),  # a subdirectory of a real repository
        st.just(repo), st.just(repo + "#sub"),
        p.map(lambda x: f"'git+{x}'"),  # quoted, as some CI systems hand it over
    ))
    version = draw(st.one_of(st.none(), st.just("main"), p, p.map(lambda x: "refs/heads/" + x)))
    entry = draw(st.one_of(st.just("main"), p, p.map(lambda x: x + ".py")))
    return uri, version, entry


def test_no_user_string_reaches_an_option_place(shims: tuple[Path, Path], repo_url: str, tmp_path_factory,
                                                base_image: str) -> None:
    folder, log = shims
    token = "ZQX" + secrets.token_hex(4)
    marker = tmp_path_factory.mktemp("argv-marker") / "PWNED"
    home = tmp_path_factory.mktemp("argv-home")
    env = {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "DOCKRUN_HOME": str(home),
           # The engine is unreachable: each run stops after the source is resolved (no build).
           "DOCKER_HOST": "unix:///nonexistent/docker.sock", "DOCKRUN_WARMSTART": "0",
           "DOCKRUN_BASE_IMAGE": base_image, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_TERMINAL_PROMPT": "0", "NO_PROXY": "*", "no_proxy": "*"}
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(var, None)
    seen_git = []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(request=requests(repo_url, token, marker))
    def check(request: tuple[str, str | None, str]) -> None:
        uri, version, entry = request
        args = [sys.executable, "-m", "dockrun", "run", f"--entry-point={entry}"]
        args += [f"--version={version}"] if version is not None else []
        proc = subprocess.run([*args, "--", uri], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        for argv in _recorded(log):
            assert _in_option_place(argv, token) == [], argv
            seen_git.append(argv[0])
        log.unlink(missing_ok=True)
        assert not marker.exists()

    check()
    assert "git" in seen_git  # the shims were in the way: the check saw real argvs


def test_lock_passes_the_image_after_a_separator(cli, shims: tuple[Path, Path], tmp_path: Path,
                                                 base_image: str) -> None:
    """`dockrun lock` starts docker's CLI: the image (a user's setting) comes after `--`."""
    folder, log = shims
    log.unlink(missing_ok=True)
    root = write_project(tmp_path / "proj", {"requirements.txt": "tabulate\n"})
    result = cli("lock", str(root), env={"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"})
    assert result.code == 1, result.err  # the docker shim fails: nothing resolved, nothing written
    runs = [argv for argv in _recorded(log) if argv[:2] == ["docker", "run"]]
    assert runs, _recorded(log)
    for argv in runs:
        assert argv[argv.index("--") + 1] == base_image
        assert _in_option_place(argv, base_image) == []
    assert not (root / "requirements.lock").exists()
