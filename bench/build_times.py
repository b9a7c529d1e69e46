"""Build times: cold (environment + code), warm (nothing to build) and code-only change (code layer
on the cached environment), for a python_env project with one small dependency. Each round's cold
build gets a new environment key from a requirement whose marker never applies (so the install
itself is the same); the base image stays cached, as on a developer's machine.

    python bench/build_times.py [--repeat 3]

``--code-only N`` measures instead what issue #13 asks of a code-only change (train.py edited, the
environment unchanged: at most a warm run + 1 s), N interleaved rounds of `dockrun run -q` on a
tiny project (``--kind docker``: ``docker_env`` on DOCKRUN_BASE_IMAGE; ``--kind python``: a
python_env with one dependency, built once before the rounds). Two arms, in alternating order each
round, each with its own copy of the project: "docker-py build" (the code layer built through
docker-py, as before the lean build: ``LeanDocker.build`` replaced by ``Docker.build`` in that
process) and "lean build" (as shipped). Each round times, per arm, one run after an edit and one
warm rerun; the report gives medians of both, code-only minus warm, and the lean/docker-py ratio
of the code-only medians. Bytecode is cached in a temporary PYTHONPYCACHEPREFIX (with
PYTHONDONTWRITEBYTECODE unset), as an installed dockrun has its .pyc files.

    DOCKRUN_BASE_IMAGE=dockrun-base:bookworm python bench/build_times.py --code-only 15 [--kind python]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# `dockrun ...` in this interpreter; with "docker-py" its builds go through docker-py's Docker.build.
_LAUNCH = (
    "import sys\n"
    "if sys.argv[1] == 'docker-py':\n"
    "    from dockrun.engine import client, lean\n"
    "    lean.LeanDocker.build = client.Docker.build\n"
    "from dockrun.cli import main\n"
    "sys.argv = ['dockrun', *sys.argv[2:]]\n"
    "main()\n"
)
ARMS = ("docker-py build", "lean build")


def build(project: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dockrun.cli", "build", "-q", str(project)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def builds(repeat: int) -> None:
    cold, warm, code = [], [], []
    for i in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "buildbench"
            p.mkdir()
            # A unique but equivalent environment: a new key, so the first build is cold.
            never = f"'six>=1.{uuid.uuid4().int % 10**6}; python_version < \"3\"'"
            (p / "python_env.yaml").write_text(f"python: '3.11'\ndependencies: [tabulate==0.9.0, {never}]\n")
            (p / "main.py").write_text("print('hi')\n")
            cold.append(build(p))
            warm.append(build(p))
            (p / "main.py").write_text(f"print('hi {i}')\n")
            code.append(build(p))
    for name, xs in (("cold (env + code)", cold), ("warm (nothing)", warm), ("code-only change", code)):
        print(f"{name:18s}: median {statistics.median(xs):6.2f} s  (all: {', '.join(f'{x:.2f}' for x in xs)})")
    print(f"ratios: cold/warm = {statistics.median(cold) / statistics.median(warm):.1f}, "
          f"code-only/warm = {statistics.median(code) / statistics.median(warm):.1f}")


def make_project(root: Path, kind: str, base_image: str) -> Path:
    root.mkdir(parents=True)
    env = f"docker_env:\n  image: {base_image}\n" if kind == "docker" else "python_env: python_env.yaml\n"
    (root / "MLproject").write_text(f"name: codebench\n{env}entry_points:\n  main:\n"
                                    "    command: \"python3 train.py\"\n")
    if kind == "python":
        (root / "python_env.yaml").write_text("python: '3.11'\ndependencies: [tabulate==0.9.0]\n")
    (root / "train.py").write_text("print('trained')\n")
    return root


def code_only(rounds: int, kind: str) -> None:
    base_image = os.environ.get("DOCKRUN_BASE_IMAGE")
    if not base_image:
        sys.exit("set DOCKRUN_BASE_IMAGE (the base image of the bench project)")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPYCACHEPREFIX=str(work / "pycache"), DOCKRUN_HOME=str(work / "home"))
        projects = {arm: make_project(work / f"p{i}" / "codebench", kind, base_image) for i, arm in enumerate(ARMS)}

        def run(arm: str) -> float:
            mode = "docker-py" if arm == ARMS[0] else "lean"
            cmd = [sys.executable, "-c", _LAUNCH, mode, "run", "-q", str(projects[arm])]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            took = time.perf_counter() - t0
            if proc.returncode:
                raise RuntimeError(f"{arm}: exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
            return took

        times: dict[str, dict[str, list[float]]] = {arm: {"code": [], "warm": []} for arm in ARMS}
        try:
            for arm in ARMS:  # the environment (and the bytecode) first: not part of the measure
                run(arm)
                run(arm)
            for i in range(rounds):
                for arm in ARMS if i % 2 == 0 else ARMS[::-1]:
                    with open(projects[arm] / "train.py", "a") as f:
                        f.write(f"# edit {i} {time.time()}\n")
                    times[arm]["code"].append(run(arm))
                    times[arm]["warm"].append(run(arm))
        finally:  # the code layers this made (the environment image stays cached, as the base does)
            made = subprocess.run(["docker", "images", "-q", "--filter", "label=dockrun.project=codebench"],
                                  capture_output=True, text=True).stdout.split()
            if made:
                subprocess.run(["docker", "rmi", "-f", *sorted(set(made))], capture_output=True)
    med = {arm: {k: statistics.median(v) for k, v in t.items()} for arm, t in times.items()}
    print(f"code-only change, {kind} project, {rounds} interleaved rounds (medians; min-max):")
    for arm in ARMS:
        t = times[arm]
        extra = statistics.median(c - w for c, w in zip(t["code"], t["warm"]))
        print(f"  {arm:16s} code-only {med[arm]['code']:.3f} s ({min(t['code']):.3f}-{max(t['code']):.3f})  "
              f"warm {med[arm]['warm']:.3f} s ({min(t['warm']):.3f}-{max(t['warm']):.3f})  "
              f"code-only - warm: {med[arm]['code'] - med[arm]['warm']:.3f} s (paired median {extra:.3f} s)")
    print(f"  lean / docker-py (code-only medians): {med[ARMS[1]]['code'] / med[ARMS[0]]['code']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--code-only", type=int, default=0, metavar="N",
                    help="N interleaved code-only rounds, docker-py's build against the lean one")
    ap.add_argument("--kind", choices=("docker", "python"), default="docker")
    args = ap.parse_args()
    if args.code_only:
        code_only(args.code_only, args.kind)
    else:
        builds(args.repeat)


if __name__ == "__main__":
    main()
