"""Warm rerun of `dockrun run` against a bare `docker run` of the same image and command.

    python bench/warm_rerun.py [--repeat 7] [--project examples/hello | --docker-env] [--before DIR] [--no-pyc]

Both are measured in the same process, interleaved, so machine noise hits them alike; the report
is the ratio of medians (and the paired ratios). The warm arm is checked to be served by the warm
helper (DOCKRUN_WARMSTART_DEBUG=1) before it is timed: a command with a controlling terminal runs
in-process, so run the bench from a script or under `setsid`; the third arm is the same command
in-process (DOCKRUN_WARMSTART=0), which is what a terminal user gets. Needs a running engine and (here)
DOCKRUN_BASE_IMAGE. ``arms()`` gives the two arms to other drivers (bench/suite.py).

``--before DIR`` adds two arms, interleaved with the others: `python -m dockrun` from DIR (a copy
of an older checkout's ``dockrun/`` and ``templates/``) and from this checkout, each served by its
own warm helper, so a change is measured against what it replaced under the same noise, not
against a number from another day.

The Python arms get a bytecode cache in a temporary folder (``PYTHONPYCACHEPREFIX``), as an
installed dockrun has its .pyc files; ``--no-pyc`` keeps a PYTHONDONTWRITEBYTECODE environment's
compile-every-module cost. ``--docker-env`` measures a tiny ``docker_env`` project on
DOCKRUN_BASE_IMAGE (nothing to install: the wrapper's own cost) instead of ``--project``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Arm, installed_dockrun, interleaved  # noqa: E402 - bench/ is not a package

_INSTALLED: list[str] = []


def dockrun_exe() -> list[str]:
    """`dockrun` installed from this checkout into the bench's venv (once per bench process)."""
    if not _INSTALLED:
        _INSTALLED.extend(installed_dockrun(REPO))
    return list(_INSTALLED)


def dockrun_command(project: str, params: list[str], exe: list[str] | None = None) -> list[str]:
    cmd = [*(exe or dockrun_exe()), "run", "-q", project]
    for p in params:
        cmd += ["-P", p]
    return cmd


def bare_command(project: str, params: list[str]) -> list[str]:
    """`docker run --rm` of the image dockrun runs for these parameters, with its command, done
    in process (prepare only: nothing is built or run here)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from dockrun.backends import get_backend
    from dockrun.prepare import prepare
    from dockrun.request import RunRequest

    prepared = prepare(RunRequest(uri=project, parameters=dict(p.split("=", 1) for p in params)),
                       get_backend("local"))
    return ["docker", "run", "--rm", "--init", "-w", "/project", "-e", "DOCKRUN_OUTPUT_DIR=/tmp",
            prepared.plan.project_image, "sh", "-c", prepared.rendered.command]


def served(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> str:
    """How `cmd` ran, as dockrun says with DOCKRUN_WARMSTART_DEBUG=1: "served by helper N", or
    "in-process (why)" (a controlling terminal, another context's first run, ...). A warm arm
    that was not served would time the in-process path under the served arm's name."""
    proc = subprocess.run(cmd, env=dict(env, DOCKRUN_WARMSTART_DEBUG="1"), cwd=cwd, check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("dockrun: warm start: ")]
    return lines[0][len("dockrun: warm start: "):] if lines else "not reported"


def arms(project: str, params: list[str], env: dict[str, str]) -> dict[str, Arm]:
    """The warm `dockrun run` arm (served by its warm helper: checked) and its bare `docker run`
    twin; runs dockrun first, so the image exists, the caches are warm and the helper is up."""
    dockrun_cmd = dockrun_command(project, params)
    subprocess.run(dockrun_cmd, env=env, check=True, stdout=subprocess.DEVNULL)  # warm the cache
    how = ""
    for _ in range(50):  # the first run started the helper in the background: wait until it serves
        how = served(dockrun_cmd, env)
        if how.startswith("served") or "terminal" in how:
            break
    if not how.startswith("served"):
        raise RuntimeError(f"the warm arm would not be served ({how}); run the bench without a controlling "
                           "terminal (setsid, or from a script), as dockrun serves no command that has one")
    return {
        "warm dockrun run": (dockrun_cmd, env, None),
        "bare docker run": (bare_command(project, params), env, None),
        # The same command without its warm helper (every run imports dockrun itself).
        "warm dockrun run, DOCKRUN_WARMSTART=0": (dockrun_cmd, dict(env, DOCKRUN_WARMSTART="0"), None),
    }


def docker_env_project(folder: Path, image: str) -> str:
    """A tiny ``docker_env`` project on ``image`` (the issue's case: no environment to build)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLproject").write_text(
        f"name: bench-warm\ndocker_env:\n  image: {image}\nentry_points:\n  main:\n"
        "    parameters:\n      alpha: {type: float, default: 0.5}\n"
        "    command: \"python3 train.py --alpha {alpha}\"\n")
    (folder / "train.py").write_text("import sys\nprint('alpha', sys.argv[-1])\n")
    return str(folder)


def with_bytecode_cache(env: dict[str, str], folder: str) -> dict[str, str]:
    """An installed dockrun has its .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE
    compiles every module on every run. Give the Python arms a bytecode cache outside the tree."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return dict(env, PYTHONPYCACHEPREFIX=folder)


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--project", default=str(REPO / "examples" / "hello"))
    ap.add_argument("--docker-env", action="store_true",
                    help="measure a tiny docker_env project on DOCKRUN_BASE_IMAGE instead of --project")
    ap.add_argument("--param", action="append", default=["alpha=0.3"])
    ap.add_argument("--before", help="folder holding an older dockrun/ package to compare with")
    ap.add_argument("--no-pyc", action="store_true",
                    help="keep the environment's PYTHONDONTWRITEBYTECODE (every module compiled per run)")
    args = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="dockrun-bench-warm-")
    env = dict(os.environ) if args.no_pyc else with_bytecode_cache(dict(os.environ), os.path.join(scratch, "pyc"))
    if args.docker_env:
        args.project = docker_env_project(Path(scratch) / "project",
                                          env.get("DOCKRUN_BASE_IMAGE", "dockrun-base:bookworm"))
    measured = arms(args.project, args.param, env)
    if args.before:
        # Both checkouts run the same way (`python -m dockrun` from their folder, first on the path,
        # each with a runtime folder of its own): served by their own warm helper, as checked.
        for name, folder in (("before (--before)", os.path.abspath(args.before)), ("this checkout", str(REPO))):
            runtime = os.path.join(scratch, f"xdg-{len(measured)}")
            os.mkdir(runtime, 0o700)
            checkout_env = dict(env, PYTHONPATH=folder, XDG_RUNTIME_DIR=runtime)
            dockrun_cmd = dockrun_command(args.project, args.param, [sys.executable, "-m", "dockrun"])
            subprocess.run(dockrun_cmd, env=checkout_env, cwd=folder, check=True, stdout=subprocess.DEVNULL)
            for _ in range(50):
                how = served(dockrun_cmd, checkout_env, folder)
                if how.startswith("served") or "terminal" in how or how == "not reported":  # an older one
                    break
            print(f"{name}: {how}")
            measured[f"{name}, served"] = (dockrun_cmd, checkout_env, folder)
    try:
        interleaved(measured, args.repeat, "bare docker run", warmup=1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
