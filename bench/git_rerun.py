"""A Git project's first run (clone into the cache, build) against a second run of the same pinned
commit (no network, no build), over file:// from a fresh DOCKRUN_HOME each round.

    python bench/git_rerun.py [--repeat 3]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    firsts, seconds = [], []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            work = Path(d) / "work"
            shutil.copytree(REPO / "examples" / "hello", work)
            (work / "round.txt").write_text(f"{i} {time.time()}\n")  # a new commit: a new project image
            git("init", "-q", cwd=work)
            git("add", "-A", cwd=work)
            git("-c", "user.email=b@b", "-c", "user.name=b", "commit", "-q", "-m", "x", cwd=work)
            sha = git("rev-parse", "HEAD", cwd=work)
            bare = Path(d) / "repo.git"
            git("clone", "-q", "--bare", str(work), str(bare), cwd=Path(d))
            env = {**os.environ, "DOCKRUN_HOME": str(Path(d) / "home")}
            cmd = [sys.executable, "-m", "dockrun.cli", "run", "-q", bare.as_uri(), "-v", sha, "-P", "alpha=0.3"]
            firsts.append(timed(cmd, env))
            seconds.append(timed(cmd, env))
    f, s = statistics.median(firsts), statistics.median(seconds)
    print(f"first run of a commit : median {f:.2f} s (clone + code layer build + run)")
    print(f"second run, same commit: median {s:.2f} s (no git process, no build)")
    print(f"ratio second / first = {s / f:.2f}")


if __name__ == "__main__":
    main()
