"""Environments in seconds (issue 26): what a changed environment costs, dockrun against
`mlflow run --env-manager uv` and the warm-cache floor, in the same rounds.

    python bench/env_change.py [--repeat 5] [--out bench/results/2026-12-05-env.md]

Sections (each: one uncounted warm-up round, then --repeat rounds, the arms interleaved in every
round, ratios paired round by round; the machine is shared and loaded, so only paired figures mean
anything):

- ``change``: a python_env project with numpy, pandas and scikit-learn; every round adds one small
  package to it. Arms: `dockrun run` (this checkout: a build container with the package cache),
  `mlflow run --env-manager uv` (MLflow from PyPI, its uv cache warm), the floor (`uv venv` and
  `uv pip install` of the same set into a fresh venv, uv's cache warm), and the main checkout
  (``--main``, default /work/main). Each arm adds its own package, so no arm finds another's
  environment ready.
- ``profile``: one more package added, `dockrun run --verbose`, its lines and the engine's events
  timed: where the seconds of a changed environment's run go.
- ``new-env``: the first run of an environment whose packages are all in the cache (the base set
  plus two or three packages earlier rounds installed): `dockrun run`, dockrun's environment build
  alone (in-process, the engine call), the same with nothing similar built before (a fresh
  DOCKRUN_HOME: the whole environment is copied out of the cache, compiled and committed), and the floor.
- ``unchanged``: a warm run and a code-only change, this checkout against main (nothing slower).
- ``conda``: a conda.yaml environment on a local channel (built here with py-rattler-build, served
  on the docker bridge gateway, as tests/conda_channel.py does) changed by one package per round:
  this checkout's cached path against its classic builder (MLflow's conda path needs a conda binary,
  which this machine does not have).

Images are named dockrun-* as dockrun names them; the environments it builds stay on the engine
(`dockrun images prune` removes them). MLflow's environments go to a temporary MLFLOW_ENV_ROOT.
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from common import paired_ratios, summary  # noqa: E402

# A bound no version is near, new for every invocation: each invocation's environments are new keys
# (for dockrun and MLflow alike), so nothing built by an earlier invocation is found ready.
NONCE = f"numpy>=1.0.{int(time.time()) % 1000000}"
BASE = [NONCE, "pandas", "scikit-learn"]
# Small pure-Python packages none of BASE depends on: one is added per arm and round.
EXTRA = ["tabulate", "idna", "attrs", "toolz", "colorama", "pyparsing", "cachetools", "wrapt", "decorator",
         "pluggy", "iniconfig", "termcolor", "click", "itsdangerous", "blinker", "sniffio", "h11", "zipp",
         "platformdirs", "filelock", "distlib", "sqlparse", "humanize", "tomlkit", "mpmath", "docopt",
         "xmltodict", "pyyaml", "simplejson", "ujson", "more-itertools", "jmespath", "wcwidth", "pytzdata",
         "semver", "python-slugify", "text-unidecode", "inflection", "appdirs", "async-timeout"]
# The run shows the environment is there without importing it: importing scikit-learn takes 10-30 s
# on this loaded machine (the same for both tools), which would drown what is measured here.
WORK = "import importlib.metadata as m; print(m.version('scikit-learn'), m.version('pandas'))"


def _write_python_project(root: Path, packages: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLproject").write_text(textwrap.dedent(f"""\
        name: envbench
        python_env: python_env.yaml
        entry_points:
          main:
            command: python -c "{WORK}"
        """))
    deps = "".join(f"  - {p}\n" for p in packages)
    (root / "python_env.yaml").write_text(f'python: "3.11"\nbuild_dependencies:\n  - pip\ndependencies:\n{deps}')


def _timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-1500:]}\n{p.stderr[-2500:]}")
    return elapsed


class Bench:
    def __init__(self, work: Path, mlflow_venv: Path, base_image: str, main: Path):
        self.work = work
        self.bin = mlflow_venv / "bin"
        self.base_image = base_image
        self.lines: list[str] = []
        common = {**os.environ, "DOCKRUN_BASE_IMAGE": base_image, "PYTHONUNBUFFERED": "1"}
        common.pop("DOCKRUN_ENV_BUILD", None)
        self.dockrun_env = {**common, "PYTHONPATH": str(REPO), "DOCKRUN_HOME": str(work / "home-new")}
        self.main_env = {**common, "PYTHONPATH": str(main), "DOCKRUN_HOME": str(work / "home-main")}
        self.classic_env = {**self.dockrun_env, "DOCKRUN_ENV_BUILD": "classic"}
        self.uv_env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}", "UV_CACHE_DIR": str(work / "uv-cache"),
                       "UV_PYTHON_DOWNLOADS": "never", "MLFLOW_ENV_ROOT": str(work / "mlflow-envs"),
                       "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
        self.counter = 0

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    # ---- arms ------------------------------------------------------------------------------------
    def dockrun_run(self, packages: list[str], env: dict[str, str], tag: str) -> float:
        root = self.work / f"{tag}-proj"
        _write_python_project(root, packages)
        # From the work folder: `python -m` puts the current folder first on sys.path, and the
        # checkout that PYTHONPATH names must be the one that runs.
        return _timed([sys.executable, "-m", "dockrun", "run", str(root)], env, cwd=self.work)

    def mlflow_run(self, packages: list[str]) -> float:
        root = self.work / "mlflow-proj"
        _write_python_project(root, packages)
        return _timed([str(self.bin / "mlflow"), "run", str(root), "--env-manager", "uv"], self.uv_env)

    def floor(self, packages: list[str]) -> float:
        """A fresh venv and `uv pip install` of the set, uv's cache warm: the issue's floor."""
        venv = self.work / "floor-venv"
        shutil.rmtree(venv, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([str(self.bin / "uv"), "venv", "-q", "--python", "3.11", str(venv)], env=self.uv_env, check=True)
        subprocess.run([str(self.bin / "uv"), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                        *packages], env=self.uv_env, check=True)
        return time.perf_counter() - t0

    def env_build_only(self, packages: list[str], home: Path | None = None) -> float:
        """dockrun's environment build alone: prepare in-process, then time ensure_env_image."""
        root = self.work / "envonly-proj"
        _write_python_project(root, packages)
        code = textwrap.dedent(f"""\
            import time
            from dockrun.engine.lean import connect
            from dockrun.images.build import ensure_env_image
            from dockrun.prepare import prepare_image
            from dockrun.request import RunRequest
            prepared = prepare_image(RunRequest(uri={str(root)!r}))
            docker = connect()
            t0 = time.perf_counter()
            ensure_env_image(prepared.plan, prepared.settings, docker)
            print(time.perf_counter() - t0)
            """)
        env = self.dockrun_env if home is None else {**self.dockrun_env, "DOCKRUN_HOME": str(home)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=self.work)
        if out.returncode:
            raise RuntimeError(out.stderr[-2500:])
        return float(out.stdout.strip().splitlines()[-1])

    def next_extra(self) -> str:
        name = EXTRA[self.counter % len(EXTRA)]
        self.counter += 1
        return name

    # ---- sections --------------------------------------------------------------------------------
    def rounds(self, name: str, arms: dict[str, Callable[[int], float]], repeat: int, warmup: int,
               baseline: str) -> dict[str, list[float]]:
        times: dict[str, list[float]] = {a: [] for a in arms}
        loads: dict[str, list[float]] = {a: [] for a in arms}  # the 1-minute load as each counted arm started
        for r in range(warmup + repeat):
            for arm, fn in arms.items():
                load = os.getloadavg()[0]
                t = fn(r)
                print(f"  {name} round {r}{' (warm-up)' if r < warmup else ''}: {arm} {t:.2f} s (load {load:.1f})",
                      flush=True)
                if r >= warmup:
                    times[arm].append(t)
                    loads[arm].append(load)
        every = [x for xs in loads.values() for x in xs]
        self.say(f"load average (1 min) as each counted arm started: {min(every):.1f}-{max(every):.1f} "
                 f"(median {statistics.median(every):.1f})")
        self.say("")
        self.say(f"| arm | median s (min-max) | ratio to {baseline}, paired: median (min-max) "
                 "| load at start: median |")
        self.say("| --- | --- | --- | --- |")
        for arm, ts in times.items():
            r = summary(paired_ratios(ts, times[baseline]))
            self.say(f"| {arm} | {summary(ts).fmt('', 2)} | {r.median:.2f} ({r.lo:.2f}-{r.hi:.2f}) | "
                     f"{statistics.median(loads[arm]):.1f} |")
        self.say("")
        return times

    def change(self, repeat: int, warmup: int) -> None:
        self.say("## One package added to a numpy/pandas/scikit-learn python_env project, per round")
        self.say("")
        sets: dict[str, list[str]] = {"dockrun": list(BASE), "mlflow": list(BASE), "main": list(BASE)}

        def grow(arm: str) -> list[str]:
            sets[arm].append(self.next_extra())
            return sets[arm]

        floor_sets: list[list[str]] = []

        def dockrun(r: int) -> float:
            packages = grow("dockrun")
            floor_sets.append(list(packages))
            return self.dockrun_run(packages, self.dockrun_env, "new")

        arms = {
            "dockrun (cached build)": dockrun,
            "mlflow run --env-manager uv": lambda r: self.mlflow_run(grow("mlflow")),
            "floor: uv venv + uv pip install, warm cache": lambda r: self.floor(floor_sets[-1]),
            "dockrun, main checkout": lambda r: self.dockrun_run(grow("main"), self.main_env, "main"),
        }
        times = self.rounds("change", arms, repeat, warmup, "mlflow run --env-manager uv")
        floor = times["floor: uv venv + uv pip install, warm cache"]
        gaps = [d - f for d, f in zip(times["dockrun (cached build)"], floor)]
        self.say(f"dockrun minus the floor, paired: median {statistics.median(gaps):.2f} s "
                 f"(min {min(gaps):.2f}, max {max(gaps):.2f})")
        self.say("")
        self.grown = sets["dockrun"]

    def profile(self, repeat: int, warmup: int) -> None:
        """One more package added to the change section's environment (or a fresh one), timed from
        dockrun's own lines and the engine's events."""
        self.say("## Where a changed environment's run goes: one package added, one run profiled")
        self.say("")
        packages = list(getattr(self, "grown", BASE)) + [self.next_extra()]
        if not hasattr(self, "grown"):  # run alone: build the environment it changes first
            self.dockrun_run(packages[:-1], self.dockrun_env, "new")
        root = self.work / "new-proj"
        _write_python_project(root, packages)
        load = os.getloadavg()[0]
        stages, total = profile_run([sys.executable, "-m", "dockrun", "run", "--verbose", str(root)],
                                    self.dockrun_env, self.work)
        self.say(f"load average (1 min) at the start: {load:.1f}; the whole `dockrun run`: {total:.2f} s")
        self.say("")
        self.say("| stage | s |")
        self.say("| --- | --- |")
        for stage, seconds in stages:
            self.say(f"| {stage} | {seconds:.2f} |")
        self.say("")

    def new_env(self, repeat: int, warmup: int) -> None:
        """After ``change``, which installed EXTRA[0], EXTRA[3], ... through dockrun: environments
        of the base set with two (or three) of those, never built before."""
        self.say("## First run of a new environment whose packages are all in the cache")
        self.say("")
        self.say("Each round: the base set plus two (three, four) packages the rounds above installed through "
                 "dockrun: a new key, nothing to download.")
        self.say("")
        cached = [EXTRA[3 * i] for i in range(1, 6)]
        pairs, triples = list(itertools.combinations(cached, 2)), list(itertools.combinations(cached, 3))
        # Four of six (EXTRA[0] went in during the warm-up): never a set another arm built.
        quads = list(itertools.combinations([EXTRA[0], *cached], 4))
        arms = {
            "dockrun run (cached build)": lambda r: self.dockrun_run(BASE + list(pairs[r]), self.dockrun_env, "newenv"),
            "dockrun environment build alone": lambda r: self.env_build_only(BASE + list(triples[r])),
            "the same, nothing similar built before (fresh DOCKRUN_HOME)":
                lambda r: self.env_build_only(BASE + list(quads[r]), self.work / f"home-fresh-{r}"),
            "floor: uv venv + uv pip install, warm cache": lambda r: self.floor(BASE + list(pairs[r])),
        }
        self.rounds("new-env", arms, repeat, warmup, "floor: uv venv + uv pip install, warm cache")

    def unchanged(self, repeat: int, warmup: int) -> None:
        """Nothing gets slower: a warm run and a code-only change, this checkout against main."""
        self.say("## Nothing else gets slower: warm run and code-only change, this checkout against main")
        self.say("")
        packages = BASE + ["tabulate"]
        for tag, env in (("same-new", self.dockrun_env), ("same-main", self.main_env)):
            self.dockrun_run(packages, env, tag)  # builds once: the rounds below are warm

        def code_change(tag: str, env: dict[str, str]) -> float:
            (self.work / f"{tag}-proj" / "code.py").write_text(f"# {time.time()}\n")
            return self.dockrun_run(packages, env, tag)

        arms = {
            "warm run, this checkout": lambda r: self.dockrun_run(packages, self.dockrun_env, "same-new"),
            "warm run, main": lambda r: self.dockrun_run(packages, self.main_env, "same-main"),
            "code-only change, this checkout": lambda r: code_change("same-new", self.dockrun_env),
            "code-only change, main": lambda r: code_change("same-main", self.main_env),
        }
        self.rounds("unchanged", arms, repeat, warmup, "warm run, main")

    def conda(self, repeat: int, warmup: int) -> None:
        self.say("## A conda.yaml environment (local channel) changed by one package, per round")
        self.say("")
        n = (warmup + repeat) * 2 + 2
        url, server = serve_channel(self.work, n)
        try:
            env_map = {"DOCKRUN_CONDA_CHANNEL_MAP": f"conda-forge={url}", "DOCKRUN_MICROMAMBA_IMAGE": ""}
            sets = {"cached": ["benchpkg0"], "classic": ["benchpkg1"]}
            counter = [2]

            def run(arm: str, env: dict[str, str]) -> float:
                sets[arm].append(f"benchpkg{counter[0]}")
                counter[0] += 1
                root = self.work / f"conda-{arm}"
                root.mkdir(exist_ok=True)
                (root / "MLproject").write_text("name: condabench\nconda_env: conda.yaml\nentry_points:\n"
                                                "  main: benchpkg0 2>/dev/null; echo ok\n")
                deps = "".join(f"  - {p}\n" for p in sets[arm])
                (root / "conda.yaml").write_text(f"channels: [conda-forge]\ndependencies:\n{deps}")
                return _timed([sys.executable, "-m", "dockrun", "run", str(root)], {**env, **env_map}, cwd=self.work)

            arms = {"dockrun (cached build)": lambda r: run("cached", self.dockrun_env),
                    "dockrun, classic builder": lambda r: run("classic", self.classic_env)}
            self.rounds("conda", arms, repeat, warmup, "dockrun, classic builder")
        finally:
            server.terminate()
            server.wait(timeout=10)


RECIPE = """
package:
  name: {name}
  version: "1.0.0"
build:
  noarch: generic
  script:
    - mkdir -p $PREFIX/bin
    - printf '#!/bin/sh\\necho "{name}"\\n' > $PREFIX/bin/{name}
    - chmod +x $PREFIX/bin/{name}
"""


def serve_channel(work: Path, count: int) -> tuple[str, subprocess.Popen]:
    """A conda channel of ``count`` small packages (benchpkg0...), served on the docker bridge gateway."""
    from rattler_build import Stage0Recipe

    folder = work / "conda-channel"
    out = folder / "channel"
    for i in range(count):
        recipe = folder / f"benchpkg{i}" / "recipe.yaml"
        recipe.parent.mkdir(parents=True, exist_ok=True)
        recipe.write_text(RECIPE.format(name=f"benchpkg{i}"))
        Stage0Recipe.from_file(str(recipe)).run_build(output_dir=str(out), channels=[], no_include_recipe=True)
    net = json.loads(subprocess.run(["docker", "network", "inspect", "bridge"], capture_output=True, text=True,
                                    check=True).stdout)[0]
    host = next((c["Gateway"] for c in (net.get("IPAM") or {}).get("Config") or [] if c.get("Gateway")), "172.17.0.1")
    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", host, "--directory", str(out), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    return f"http://{host}:{port}/", server


def profile_run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[list[tuple[str, float]], float]:
    """Run ``cmd`` (a `dockrun run --verbose`), timing its output lines and the engine's events
    (`docker events`): the stages of a changed environment's run, in seconds, and the whole."""
    import threading

    w0 = time.time()
    events_proc = subprocess.Popen(["docker", "events", "--format", "{{json .}}", "--since", str(int(w0) - 1)],
                                   stdout=subprocess.PIPE, text=True)
    events: list[tuple[float, str, str, str]] = []

    def read_events() -> None:
        assert events_proc.stdout is not None
        for line in events_proc.stdout:
            e = json.loads(line)
            name = ((e.get("Actor") or {}).get("Attributes") or {}).get("name", "")
            events.append((e["timeNano"] / 1e9, e.get("Type", ""), e.get("Action", ""), name))

    threading.Thread(target=read_events, daemon=True).start()
    time.sleep(0.5)  # docker events is listening
    start = time.time()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    total = time.time() - start
    time.sleep(1.0)  # the last events
    events_proc.terminate()
    events_proc.wait(timeout=10)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")

    def at(kind: str, action: str, name: Callable[[str], bool], after: float = 0.0) -> float:
        found = [t - start for t, k, a, n in events
                 if k == kind and a == action and name(n) and t - start >= after]
        return found[0] if found else float("nan")

    # Other sessions use the engine too: containers are told apart by name (the build container is
    # the one committed as the environment image, the run's the first dockrun-<id> after the code layer).
    said = {m.group(1): m.group(2) for m in re.finditer(r"^building (environment|project) image (\S+)",
                                                        proc.stderr, re.M)}
    env_tag = at("image", "tag", lambda n: n == said.get("environment"))
    code_tag = at("image", "tag", lambda n: n == said.get("project"))
    committed = sorted((abs(t - start - env_tag), n) for t, k, a, n in events
                       if k == "container" and a == "commit" and n.startswith("dockrun-build-"))
    builder = committed[0][1] if committed else ""  # the commit that made the environment's tag
    run_name = next((n for t, k, a, n in events if k == "container" and a == "create" and t - start >= code_tag
                     and n.startswith("dockrun-") and not n.startswith("dockrun-build-")), "")
    ours = lambda n: n == builder  # noqa: E731
    runs = lambda n: n == run_name  # noqa: E731
    marks = [
        ("dockrun's start, prepare, choosing what to start from", 0.0, at("container", "create", ours)),
        ("build container: create, inputs, start", at("container", "create", ours), at("container", "start", ours)),
        ("install in the build container (env.sh)", at("container", "start", ours), at("container", "die", ours)),
        ("commit of the environment layer", at("container", "die", ours), env_tag),
        ("code layer (the project image)", env_tag, code_tag),
        ("from the project image to the run's container", code_tag, at("container", "create", runs)),
        ("the run's container: create to start", at("container", "create", runs), at("container", "start", runs)),
        ("the run's command, to its container's removal", at("container", "start", runs),
         at("container", "destroy", runs)),
    ]
    stages = [(label, b - a) for label, a, b in marks]
    last = at("container", "destroy", runs)
    stages.append(("dockrun's own time after the run", total - last))
    return stages, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--only", type=lambda s: s.split(","),
                    default=["change", "profile", "new-env", "conda", "unchanged"])
    ap.add_argument("--main", type=Path, default=Path("/work/main"), help="the checkout to compare with")
    ap.add_argument("--mlflow-venv", type=Path, default=Path("/tmp/dockrun-env-bench/mlflow-venv"),
                    help="a venv with mlflow, docker and uv (made by: python -m venv V && V/bin/pip install "
                         "mlflow docker uv)")
    ap.add_argument("--base-image", default=os.environ.get("DOCKRUN_BASE_IMAGE", "dockrun-base:bookworm"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dockrun-env-bench-"))
    bench = Bench(work, args.mlflow_venv, args.base_image, args.main)
    python = str(args.mlflow_venv / "bin" / "python")
    version = subprocess.run([python, "-c", "import mlflow; print(mlflow.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    bench.say(f"# Environments in seconds: {datetime.date.today()} on {platform.node()} "
              f"({os.cpu_count()} cores, shared with other sessions: load in each section)")
    bench.say("")
    bench.say(f"Command: `python bench/env_change.py {' '.join(sys.argv[1:])}`; MLflow {version}; "
              f"base image {args.base_image}; {args.warmup} uncounted warm-up round(s), {args.repeat} counted.")
    bench.say("")
    sections = {"change": bench.change, "profile": bench.profile, "new-env": bench.new_env, "conda": bench.conda,
                "unchanged": bench.unchanged}
    try:
        for name in args.only:
            try:
                sections[name](args.repeat, args.warmup)
            except Exception as e:  # noqa: BLE001 - a failing section is reported; the others still run
                bench.say(f"section {name} failed: {str(e)[-1500:]}")
                bench.say("")
    finally:
        if args.out:
            args.out.write_text("\n".join(bench.lines) + "\n")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
