"""A project's YAML (MLproject, python_env.yaml, conda.yaml) may use anchors and aliases, and PyYAML
shares an aliased value rather than copying it: nine levels of nine aliases are a few hundred bytes
of text and one small object graph, and 387 million values to whoever walks it. dockrun walked it
(to cache what YAML made of the text, to turn dependencies into strings): a project from a Git URI
took this machine's memory before anything was built. A text whose values, aliases followed, are
too many is one line, exit 2. Through the real CLI, its memory measured (test_archive_limits'
harness: a data limit as a safety net)."""
from __future__ import annotations

from pathlib import Path

import pytest

from git_fixtures import new_remote
from security.test_archive_limits import MAX_RSS, dockrun

LAUGHS = "".join(
    f"x{i}: &x{i} [{', '.join([f'*x{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9))


@pytest.mark.parametrize("file, text", [
    ("MLproject", f"name: laughs\n{LAUGHS}entry_points:\n  main:\n    command: echo hi\n"),
    ("python_env.yaml", f"{LAUGHS}dependencies: [*x8]\n"),
    ("conda.yaml", f"{LAUGHS}dependencies:\n  - pip: [*x8]\n"),
    ("MLproject", "a: &a [*a]\n" + "entry_points: {main: echo hi}\n"),
], ids=["MLproject", "python_env.yaml", "conda.yaml", "a value that holds itself"])
def test_aliases_that_expand_past_the_limit_are_one_line(tmp_path: Path, base_image: str, file: str, text: str) -> None:
    files = {"MLproject": "name: laughs\nentry_points:\n  main:\n    command: echo hi\n", file: text}
    remote = new_remote(tmp_path / "remotes", "laughs", files)
    r = dockrun(tmp_path / "home", "build", remote.url)
    assert r.code == 2, r.err[-2000:]
    assert r.err.count("\n") == 1 and r.err.startswith("dockrun: error: "), r.err[-2000:]
    assert file in r.err and "aliases" in r.err, r.err
    assert r.max_rss < MAX_RSS, r.max_rss


def test_a_few_aliases_are_read_as_before(cli, tmp_path: Path, base_image: str) -> None:
    """Anchors that share a parameter block between entry points are ordinary YAML."""
    mlproject = (f"name: shared\ndocker_env:\n  image: {base_image}\nentry_points:\n"
                 "  main:\n    parameters: &p {n: {type: int, default: 7}}\n    command: \"echo main {n}\"\n"
                 "  other:\n    parameters: *p\n    command: \"echo other {n}\"\n")
    remote = new_remote(tmp_path / "remotes", "shared", {"MLproject": mlproject})
    r = cli("run", "-q", remote.url, "-e", "other")
    assert r.code == 0 and "other 7" in r.out, r.err


def test_yaml_nested_too_deeply_is_one_line(tmp_path: Path, base_image: str) -> None:
    """PyYAML composes nested collections recursively: 1000 brackets were a traceback."""
    remote = new_remote(tmp_path / "remotes", "deep", {"MLproject": "a: " + "[" * 1000 + "]" * 1000 + "\n"})
    r = dockrun(tmp_path / "home", "build", remote.url)
    assert r.code == 2 and r.err.count("\n") == 1 and "MLproject" in r.err and "nested" in r.err, r.err[-2000:]
