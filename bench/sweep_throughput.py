"""Sweep throughput: N runs of a project through `dockrun.execute(synchronous=False)` with a
bounded pool, against the same N containers started with plain `docker run --rm` and the same
pool size. Reports runs per second for both and their ratio (interleaved rounds, same machine).

    python bench/sweep_throughput.py [--runs 16] [--parallel 4] [--rounds 3] [--project examples/hello]

``sweep_arms()`` gives the two arms (each a function returning one sweep's wall time) to other
drivers (bench/suite.py). Run i gets ``--param``'s value 0.1 * (i + 1), so every run is a new
parameter on the same image.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from warm_rerun import bare_command  # noqa: E402 - bench/ is not a package


def pooled(fn: Callable[[int], bool], runs: int, parallel: int) -> float:
    """Wall time of ``runs`` calls of ``fn`` through a pool of ``parallel`` threads."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        ok = list(pool.map(fn, range(runs)))
    elapsed = time.perf_counter() - t0
    if not all(ok):
        raise RuntimeError(f"{ok.count(False)} of {runs} runs failed")
    return elapsed


def value(i: int) -> str:
    return f"{0.1 * (i + 1):.1f}"


def sweep_arms(project: str, runs: int, parallel: int, param: str = "alpha") -> dict[str, Callable[[], float]]:
    """"dockrun.execute sweep" and "plain docker run sweep": each call is one sweep of ``runs``
    runs, ``parallel`` at once; returns its wall time. Runs the project once first (the image)."""
    import dockrun

    quiet = open(os.devnull, "wb")  # noqa: SIM115 - lives as long as the benchmark
    dockrun.execute(project, parameters={param: value(0)}, stdout=quiet, stderr=quiet, log=lambda line: None)
    bare_cmds = [bare_command(project, [f"{param}={value(i)}"]) for i in range(runs)]

    def ours(i: int) -> bool:
        run = dockrun.execute(project, parameters={param: value(i)}, synchronous=False, log=lambda line: None)
        return run.wait()

    def bare(i: int) -> bool:
        return subprocess.run(bare_cmds[i], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    return {"dockrun.execute sweep": lambda: pooled(ours, runs, parallel),
            "plain docker run sweep": lambda: pooled(bare, runs, parallel)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--project", default=str(REPO / "examples" / "hello"))
    args = ap.parse_args()
    arms = sweep_arms(args.project, args.runs, args.parallel)
    o, b = [], []
    for _ in range(args.rounds):
        o.append(args.runs / arms["dockrun.execute sweep"]())
        b.append(args.runs / arms["plain docker run sweep"]())
    mo, mb = statistics.median(o), statistics.median(b)
    print(f"dockrun.execute sweep : {mo:.2f} runs/s (median of {args.rounds} rounds of {args.runs}, "
          f"{args.parallel} at once)")
    print(f"plain docker run sweep: {mb:.2f} runs/s")
    print(f"ratio dockrun / docker run = {mo / mb:.2f}")


if __name__ == "__main__":
    main()
