"""Warm rerun of `dockrun run` against a bare `docker run` of the same image and command.

    python bench/warm_rerun.py [--repeat 7] [--project examples/hello] [--before DIR]

Both are measured in the same process, interleaved, so machine noise hits them alike; the report
is the ratio of medians. Needs a running engine and (here) DOCKRUN_BASE_IMAGE.

``--before DIR`` adds a third arm, interleaved with the other two: the ``dockrun`` package found in
DIR (a copy of an older checkout's ``dockrun/`` and ``templates/``), so a change is measured
against what it replaced under the same noise, not against a number from another day.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved  # noqa: E402 - bench/ is not a package


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--project", default=str(REPO / "examples" / "hello"))
    ap.add_argument("--param", action="append", default=["alpha=0.3"])
    ap.add_argument("--before", help="folder holding an older dockrun/ package to compare with")
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
    arms: dict[str, tuple[list[str], dict[str, str], str | None]] = {
        "warm dockrun run": (dockrun_cmd, env, None),
        "bare docker run": (bare_cmd, env, None),
    }
    if args.before:
        # Run from the snapshot's folder with it first on the path, so the checkout is not imported.
        before = os.path.abspath(args.before)
        before_env = dict(env, PYTHONPATH=before)
        subprocess.run(dockrun_cmd, env=before_env, cwd=before, check=True, stdout=subprocess.DEVNULL)
        arms["before (--before)"] = (dockrun_cmd, before_env, before)
    interleaved(arms, args.repeat, "bare docker run")


if __name__ == "__main__":
    main()
