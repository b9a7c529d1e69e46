"""Text that is not dockrun's own reaches the terminal escaped: a build step's output, names and
messages from elsewhere. One rule (dockrun/terminal.py), tested on its own with generated text and
through the real CLI, with and without a terminal."""
from __future__ import annotations

import http.server
import os
import pty
import select
import subprocess
import sys
import threading
import time
import unicodedata
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import REPO, write_project
from databricks_emulator import databricks  # noqa: F401 - the fixture
from dockrun.terminal import output_line, printable, printable_lines

# What a terminal acts on instead of showing: C0 and DEL, C1, format characters (bidi overrides),
# line and paragraph separators, surrogates.
ACTED_ON = st.characters(categories=("Cc", "Cf", "Zl", "Zp", "Cs"))
TEXT = st.text(st.one_of(ACTED_ON, st.characters(), st.sampled_from("\x1b[]P\\^_;0123456789mJH\x07\x9b\x9c\t\n")))


def _raw_controls(text: str, keep: str = "") -> list[str]:
    return [c for c in text if not c.isprintable() and c not in keep]


@given(TEXT)
def test_printable_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    assert _raw_controls(printable(text)) == []
    assert _raw_controls(printable(text, tabs=True), keep="\t") == []


@given(TEXT)
def test_many_lines_keep_only_newlines_and_tabs(text: str) -> None:
    shown = printable_lines(text)
    assert _raw_controls(shown, keep="\n\t") == []
    assert shown.count("\n") == text.count("\n")


@given(TEXT)
def test_a_program_output_line_keeps_nothing_but_tabs(text: str) -> None:
    assert _raw_controls(output_line(text), keep="\t") == []


@given(st.text(st.characters(exclude_categories=("C", "Z")) | st.just(" ")))
def test_printable_text_is_shown_as_it_is(text: str) -> None:
    assert printable(text) == text == printable_lines(text)


def test_escapes_are_shown_as_text() -> None:
    assert printable("a\x1b[2Jb\x9b\u202ec\n") == "a\\x1b[2Jb\\x9b\\u202ec\\n"
    assert output_line("\x1b[31mred\x1b[0m \x1b]8;;http://x\x07link\x1b]8;;\x07 \x1bP+q\x1b\\ \x9b2J") == "red link  "
    assert unicodedata.category("\u202e") == "Cf"


# ---- through the CLI ------------------------------------------------------------------------------

# printf (dash) octal escapes: ESC ] OSC 8 (a link), DCS ... ST, the 8-bit CSI (U+009B, UTF-8 C2 9B)
# clearing the screen, a bidi override (U+202E, UTF-8 E2 80 AE), a window title set with BEL.
HOSTILE_PRINTF = (r"printf '\033]8;;http://x.invalid/\007click\033]8;;\007 \033P+q\033\\ \302\2332J "
                  r"\342\200\256evil \033]0;pwned\007 \033[2J done\n' >&2")
RAW = ("\x1b", "\x9b", "\x90", "\x07", "\u202e")


@pytest.fixture
def hostile_image(base_image: str, tmp_path: Path):
    """An image a project's docker_env may name: its ONBUILD step runs in dockrun's build of the
    project image and prints terminal sequences."""
    tag = f"onbuild-hostile-{uuid.uuid4().hex[:8]}:1"
    context = tmp_path / "hostile-image"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {base_image}\nONBUILD RUN {HOSTILE_PRINTF}\n")
    r = subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], capture_output=True, text=True,
                       env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=300)
    assert r.returncode == 0, r.stderr
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def _project(root: Path, image: str) -> Path:
    return write_project(root, {"MLproject": f"name: onbuild\ndocker_env: {{image: {image}}}\n"
                                             "entry_points: {main: 'true'}\n",
                                "marker.txt": str(uuid.uuid4())})


def under_a_terminal(args: list[str], env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its stdin, stdout and stderr; its exit code and all it
    wrote there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "dockrun", *args], cwd=REPO, env=env, stdin=follower,
                            stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 1)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc.poll() is not None:
            break
    os.close(leader)
    code = proc.wait(timeout=60)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_build_output_reaches_no_terminal_raw(cli, home: Path, base_image: str, hostile_image: str,
                                             tmp_path: Path) -> None:
    made = []
    try:
        plain = cli("build", "--verbose", str(_project(tmp_path / "plain", hostile_image)))
        assert plain.code == 0, plain.err
        made.append(plain.out.strip())
        assert "click" in plain.err and "done" in plain.err  # the step's output is shown, as text
        for raw in RAW:
            assert raw not in plain.err, repr(plain.err)

        env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image, "TERM": "xterm"}
        code, seen = under_a_terminal(["build", str(_project(tmp_path / "tty", hostile_image))], env)
        assert code == 0, seen
        made.append(seen.strip().splitlines()[-1].split("\x1b[K")[-1].strip())
        ours = seen.replace("\r\x1b[K", "")  # the live line's own redraw: dockrun's, not the build's
        assert "building project image" in ours
        for raw in RAW:
            assert raw not in ours, repr(seen)
    finally:
        subprocess.run(["docker", "rmi", "-f", *made], capture_output=True)


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_on_a_terminal_dockrun_own_lines_are_shown(home: Path, base_image: str, tmp_path: Path) -> None:
    """`downloading URL` (and the other lines dockrun says before or after a build: a submitted
    Databricks run, a created Job) used to vanish into the live build line on a terminal."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "data.csv").write_text("a,b\n1,2\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/data.csv"
    name = f"ownlines-{uuid.uuid4().hex[:8]}"
    project = write_project(tmp_path / name, {
        "MLproject": f"name: {name}\nentry_points:\n  main:\n    parameters: {{data: path}}\n"
                     "    command: 'cat {data}'\n",
    })
    env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image, "TERM": "xterm"}
    try:
        code, seen = under_a_terminal(["run", str(project), "-P", f"data={url}"], env)
    finally:
        server.shutdown()
        server.server_close()
        images = subprocess.run(["docker", "images", "-q", f"dockrun-{name}"], capture_output=True, text=True)
        if images.stdout.split():
            subprocess.run(["docker", "rmi", "-f", *images.stdout.split()], capture_output=True)
    assert code == 0, seen
    lines = [line.split("\x1b[K")[-1] for line in seen.replace("\r\n", "\n").split("\n")]
    assert f"downloading {url}" in lines, repr(seen)
    assert "a,b" in lines  # the run's own output


# ---- a workspace's words ----------------------------------------------------------------------------

HOSTILE_URL = "https://x.invalid/#job\x1b]8;;http://evil.invalid/\x07run\x1b]8;;\x07\x9b2J\u202e"
HOSTILE_TRACE = "Traceback (most recent call last):\n  \x1b[2J\x9b1;1H\u202eevil\nRuntimeError: \x1b]0;pwned\x07"


def test_a_workspace_words_reach_no_terminal_raw(cli, databricks, home: Path, tmp_path: Path) -> None:  # noqa: F811
    """A run page URL and an error trace with terminal sequences, as a workspace (or whatever
    answers as one) may send them: shown escaped, with and without a terminal; and on a terminal
    the 'submitted Databricks run' line is there."""
    def url(answer: dict) -> dict:
        answer["run_page_url"] = HOSTILE_URL
        return answer

    def trace(answer: dict) -> dict:
        answer.update(error_trace=HOSTILE_TRACE, error=HOSTILE_TRACE.splitlines()[-1])
        return answer

    databricks.rewrite("/api/2.2/jobs/runs/get", url)
    databricks.rewrite("/api/2.2/jobs/runs/get-output", trace)
    project = write_project(tmp_path / "remote", {"MLproject": "name: remote\nentry_points: {main: 'exit 3'}\n"})
    cluster = tmp_path / "cluster.json"
    cluster.write_text('{"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}')
    args = ["run", str(project), "-b", "databricks", "-c", str(cluster)]
    remote = {"DATABRICKS_HOST": databricks.url, "DATABRICKS_TOKEN": databricks.token,
              "DOCKRUN_DATABRICKS_POLL_S": "0.2"}

    piped = cli(*args, env=remote)
    assert piped.code == 1 and "submitted Databricks run" in piped.err
    assert "RuntimeError: \\x1b]0;pwned\\x07" in piped.err  # shown, as text
    for raw in RAW:
        assert raw not in piped.err, repr(piped.err)

    code, seen = under_a_terminal(args, {**os.environ, **remote, "DOCKRUN_HOME": str(home), "TERM": "xterm"})
    assert code == 1, seen
    ours = seen.replace("\r\x1b[K", "")
    assert "submitted Databricks run" in ours, repr(seen)
    for raw in RAW:
        assert raw not in ours, repr(seen)


def test_lock_lines_reach_no_terminal_raw(cli, tmp_path: Path) -> None:
    """`dockrun lock` says the project's environment file name: a name is the project's text."""
    env_file = "env\x1b]0;pwned\x07\x9b2J\u202e.yaml"
    project = write_project(tmp_path / "p", {
        "MLproject": f'name: p\npython_env: "{env_file.encode("unicode_escape").decode()}"\n'
                     "entry_points: {main: 'true'}\n",
    })
    (project / env_file).write_text("python: '3.11'\ndependencies: [tabulate]\n")
    shims = tmp_path / "bin"  # a docker CLI that fails at once: the line comes before it is used
    shims.mkdir()
    (shims / "docker").write_text("#!/bin/sh\nexit 1\n")
    (shims / "docker").chmod(0o755)
    r = cli("lock", str(project), env={"PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"})
    assert r.code == 1 and "resolving env\\x1b]0;pwned\\x07\\x9b2J\\u202e.yaml in " in r.err, r.err
    for raw in RAW:
        assert raw not in r.err, repr(r.err)
