"""A project's .dockerignore is someone else's text, matched against every path of its tree before
anything is built. Its patterns were regular expressions, whose backtracking is exponential in
their stars: `*a*a*a*a*a*a*a*a*a*a*b` against a file named with 100 a's kept dockrun busy for
hours on a project from a Git URI, for every run and build of it. Patterns are matched in time
linear in the path; an invalid one is one line naming the file. Through the real CLI."""
from __future__ import annotations

from pathlib import Path

from git_fixtures import new_remote

MLPROJECT = "name: ignoring\nentry_points:\n  main:\n    command: ls\n"


def test_a_pattern_of_many_stars_takes_no_time(cli, tmp_path: Path, base_image: str) -> None:
    remote = new_remote(tmp_path / "remotes", "stars", {
        "MLproject": MLPROJECT.replace("ls", "ls -1 sub"),
        ".dockerignore": "*a*a*a*a*a*a*a*a*a*a*b\n**a**a**a**a**a**a**a**a**a**b\nsub/*x*x*x*x*x*x*x*x*y\n",
        "a" * 100: "x\n",
        "sub/" + "x" * 100: "x\n",
        "sub/keep.txt": "x\n",
        "sub/" + "x" * 8 + "y": "x\n",
    })
    r = cli("run", "-q", remote.url, timeout=120)
    assert r.code == 0, r.err
    listed = r.out.split()
    assert "keep.txt" in listed and "x" * 100 in listed and "x" * 8 + "y" not in listed, r.out


def test_an_invalid_pattern_is_one_line(cli, tmp_path: Path, base_image: str) -> None:
    remote = new_remote(tmp_path / "remotes", "range", {"MLproject": MLPROJECT, ".dockerignore": "data/[z-a]\n"})
    r = cli("build", remote.url)
    assert r.code == 2 and r.err.count("\n") == 1 and r.err.startswith("dockrun: error: "), r.err[-2000:]
    assert ".dockerignore" in r.err and "[z-a]" in r.err, r.err



def test_a_pattern_means_the_same_whichever_matcher_takes_it() -> None:
    """A pattern with few runs (`*`, `**`) goes to a regex (fast on the usual patterns, which every
    run's tree walk applies to every file), one with more to the linear matcher: the two agree."""
    import random

    from dockrun.project.treehash import _Glob, _Regex, glob_steps

    rng = random.Random(26)
    parts = ["a", "b", "/", "*", "**", "**/", "?", ".", "[ab]", "[!a]"]
    for _ in range(20000):
        steps = glob_steps("".join(rng.choice(parts) for _ in range(rng.randint(1, 6))))
        path = "".join(rng.choice("ab/.") for _ in range(rng.randint(0, 8)))
        assert _Glob(steps).match(path) == _Regex.of(steps).match(path), (steps, path)
