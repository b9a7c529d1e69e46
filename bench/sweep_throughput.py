"""Sweep throughput: N runs of the hello project through `dockrun.execute(synchronous=False)` with
a bounded pool, against the same N containers started with plain `docker run --rm` and the same
pool size. Reports runs per second for both and their ratio (interleaved rounds, same machine).

    python bench/sweep_throughput.py [--runs 16] [--parallel 4] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import dockrun
    from dockrun.prepare import prepare_image
    from dockrun.request import RunRequest

    project = str(REPO / "examples" / "hello")
    quiet = open(os.devnull, "wb")  # noqa: SIM115 - lives as long as the benchmark
    dockrun.execute(project, parameters={"alpha": 1}, stdout=quiet, stderr=quiet, log=lambda line: None)
    image = prepare_image(RunRequest(uri=project)).plan.project_image

    def ours(i: int) -> bool:
        run = dockrun.execute(project, parameters={"alpha": 0.1 * (i + 1)}, synchronous=False, log=lambda line: None)
        return run.wait()

    def bare(i: int) -> bool:
        cmd = ["docker", "run", "--rm", "--init", "-w", "/project", "-e", "DOCKRUN_OUTPUT_DIR=/tmp", image, "sh",
               "-c", f"python train.py --alpha {0.1 * (i + 1)} --data data/input.csv"]
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    def rate(fn) -> float:  # noqa: ANN001
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.parallel) as pool:
            ok = list(pool.map(fn, range(args.runs)))
        assert all(ok)
        return args.runs / (time.perf_counter() - t0)

    o, b = [], []
    for _ in range(args.rounds):
        o.append(rate(ours))
        b.append(rate(bare))
    mo, mb = statistics.median(o), statistics.median(b)
    print(f"dockrun.execute sweep : {mo:.2f} runs/s (median of {args.rounds} rounds of {args.runs}, "
          f"{args.parallel} at once)")
    print(f"plain docker run sweep: {mb:.2f} runs/s")
    print(f"ratio dockrun / docker run = {mo / mb:.2f}")


if __name__ == "__main__":
    main()
