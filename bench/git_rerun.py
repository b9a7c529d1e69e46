"""A Git project's first run (clone into the cache, build) against a second run of the same pinned
commit (no network, no build), over file:// from a fresh DOCKRUN_HOME each round.

    python bench/git_rerun.py [--repeat 3]

``publish()`` (a project folder as a new commit in a bare repository) and ``first_and_second()``
serve other drivers (bench/suite.py, which serves the repository over smart HTTP).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timed  # noqa: E402 - bench/ is not a package


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def publish(project: Path, work: Path, bare: Path, stamp: str) -> str:
    """``project``'s files, plus a file holding ``stamp`` (so every call is a new commit and so a
    new project image), committed in ``work`` and cloned bare to ``bare``; returns the commit."""
    shutil.copytree(project, work)
    (work / "round.txt").write_text(f"{stamp} {time.time()}\n")
    git("init", "-q", cwd=work)
    git("add", "-A", cwd=work)
    git("-c", "user.email=b@b", "-c", "user.name=b", "commit", "-q", "-m", "x", cwd=work)
    git("clone", "-q", "--bare", str(work), str(bare), cwd=work.parent)
    return git("rev-parse", "HEAD", cwd=work)


def dockrun_git_command(uri: str, sha: str, params: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "dockrun.cli", "run", "-q", uri, "-v", sha]
    for p in params:
        cmd += ["-P", p]
    return cmd


def first_and_second(uri: str, sha: str, home: Path, params: list[str]) -> tuple[float, float]:
    """The first run of the commit from an empty DOCKRUN_HOME, then the second."""
    env = {**os.environ, "DOCKRUN_HOME": str(home)}
    cmd = dockrun_git_command(uri, sha, params)
    return timed(cmd, env), timed(cmd, env)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    firsts, seconds = [], []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            bare = Path(d) / "repo.git"
            sha = publish(REPO / "examples" / "hello", Path(d) / "work", bare, str(i))
            first, second = first_and_second(bare.as_uri(), sha, Path(d) / "home", ["alpha=0.3"])
            firsts.append(first)
            seconds.append(second)
    f, s = statistics.median(firsts), statistics.median(seconds)
    print(f"first run of a commit : median {f:.2f} s (clone + code layer build + run)")
    print(f"second run, same commit: median {s:.2f} s (no git process, no build)")
    print(f"ratio second / first = {s / f:.2f}")


if __name__ == "__main__":
    main()
