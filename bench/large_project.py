"""Warm rerun of a large project (200 MB of data files by default) against the tiny example.

    python bench/large_project.py [--size-mb 200] [--files 200] [--repeat 9] [--before DIR] [--keep]

An unchanged project should cost a walk of stats, not a read of every byte: the large project's
warm run is reported as a ratio to the tiny one's, measured interleaved in the same run. Also
times ``tree_hash`` in process, with and without its stat cache. ``--before DIR`` adds an arm
running the ``dockrun`` package found in DIR (a copy of an older checkout's ``dockrun/`` and
``templates/``), interleaved with the others. The large project's image is removed at the end
unless ``--keep``. Needs a running engine and (here) DOCKRUN_BASE_IMAGE.
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
from common import Arm, interleaved  # noqa: E402 - bench/ is not a package


def make_project(root: Path, size_mb: int, files: int) -> None:
    shutil.copytree(REPO / "examples" / "hello", root)
    data = root / "blobs"
    data.mkdir()
    per_file = size_mb * (1 << 20) // files
    for i in range(files):
        (data / f"blob_{i:04d}.bin").write_bytes(os.urandom(per_file))


def median_ms(f, n: int = 5) -> float:  # noqa: ANN001
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1000


def measure(size_mb: int = 200, files: int = 200, repeat: int = 9, before: str | None = None,
            keep: bool = False, warmup: int = 0) -> dict:
    """Build a large project, then time its warm run against the tiny example's, interleaved.
    Returns {"times": {arm: [s, ...]}, "baseline": arm, "tree_hash_ms": (uncached, cached),
    "setup_s": first runs}; prints as it goes."""
    env = dict(os.environ)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from dockrun.backends import get_backend
    from dockrun.prepare import prepare
    from dockrun.project.treehash import tree_hash
    from dockrun.request import RunRequest

    work = Path(tempfile.mkdtemp(prefix="dockrun-large-"))
    large = work / "bench-large"  # its image: dockrun-bench-large:...
    make_project(large, size_mb, files)
    tiny = REPO / "examples" / "hello"

    def cmd(project: Path) -> list[str]:
        return [sys.executable, "-m", "dockrun.cli", "run", "-q", str(project), "-P", "alpha=0.3"]

    baseline = "tiny project"
    arms: dict[str, Arm] = {
        baseline: (cmd(tiny), env, None),
        f"{size_mb} MB project": (cmd(large), env, None),
    }
    if before:
        before = os.path.abspath(before)
        before_env = dict(env, PYTHONPATH=before)
        arms[f"{size_mb} MB, before"] = (cmd(large), before_env, before)
        arms["tiny, before"] = (cmd(tiny), before_env, before)
    image = prepare(RunRequest(uri=str(large), parameters={"alpha": "0.3"}), get_backend("local")).plan.project_image
    try:
        t0 = time.perf_counter()
        for command, arm_env, cwd in arms.values():  # builds the large project's image once
            subprocess.run(command, env=arm_env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        setup = time.perf_counter() - t0
        print(f"setup (first runs, one image build): {setup:.1f} s")
        # The stat cache only trusts files older than two seconds; the build above took longer.
        time.sleep(max(0.0, 2.5 - (time.perf_counter() - t0)))
        for command, arm_env, cwd in arms.values():  # the first run after that fills the cache
            subprocess.run(command, env=arm_env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        times = interleaved(arms, repeat, baseline, warmup=warmup)
        cache = work / "cache"
        uncached = median_ms(lambda: tree_hash(large))
        tree_hash(large, cache)
        cached = median_ms(lambda: tree_hash(large, cache))
        print(f"tree_hash in process: uncached {uncached:.1f} ms, cached {cached:.2f} ms")
    finally:
        if not keep:
            subprocess.run(["docker", "rmi", "-f", image], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {large} and {image}")
    return {"times": times, "baseline": baseline, "tree_hash_ms": (uncached, cached), "setup_s": setup}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--before", help="folder holding an older dockrun/ package to compare with")
    ap.add_argument("--keep", action="store_true", help="keep the large project and its image")
    args = ap.parse_args()
    measure(args.size_mb, args.files, args.repeat, args.before, args.keep)


if __name__ == "__main__":
    main()
