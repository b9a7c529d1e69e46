"""Warm rerun of `dockrun run` against a bare `docker run` of the same image and command.

    python bench/warm_rerun.py [--repeat 7] [--project examples/hello]

Both are measured in the same process, interleaved, so machine noise hits them alike; the report
is the ratio of medians. Needs a running engine and (here) DOCKRUN_BASE_IMAGE.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timed  # noqa: E402 - bench/ is not a package


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--project", default=str(REPO / "examples" / "hello"))
    ap.add_argument("--param", action="append", default=["alpha=0.3"])
    args = ap.parse_args()
    env = dict(os.environ)
    sys.path.insert(0, str(REPO))
    from dockrun.backends import get_backend
    from dockrun.prepare import prepare
    from dockrun.request import RunRequest

    params = dict(p.split("=", 1) for p in args.param)
    dockrun_cmd = [sys.executable, "-m", "dockrun.cli", "run", "-q", args.project]
    for p in args.param:
        dockrun_cmd += ["-P", p]
    subprocess.run(dockrun_cmd, env=env, check=True, stdout=subprocess.DEVNULL)  # warm the cache
    prepared = prepare(RunRequest(uri=args.project, parameters=params), get_backend("local"))
    bare_cmd = ["docker", "run", "--rm", "--init", "-w", "/project", "-e", "DOCKRUN_OUTPUT_DIR=/tmp",
                prepared.plan.project_image, "sh", "-c", prepared.rendered.command]
    ours, bare = [], []
    for _ in range(args.repeat):
        ours.append(timed(dockrun_cmd, env))
        bare.append(timed(bare_cmd, env))
    mo, mb = statistics.median(ours), statistics.median(bare)
    print(f"warm dockrun run: median {mo:.3f} s over {args.repeat} (min {min(ours):.3f})")
    print(f"bare docker run : median {mb:.3f} s over {args.repeat} (min {min(bare):.3f})")
    print(f"ratio dockrun / docker run = {mo / mb:.2f}")


if __name__ == "__main__":
    main()
