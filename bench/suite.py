"""The whole bench in one command: dockrun, a bare `docker run --rm` and `mlflow run` on the same
work, interleaved, written to bench/results/<date>-<machine>.md.

    python bench/suite.py            # the full suite (about 30-40 min on 2 busy cores)
    python bench/suite.py --quick    # a smoke check: 2 counted rounds, small sweeps (a few minutes)

The work is a tiny `docker_env` project on the local base image (``--base-image``, default
$DOCKRUN_BASE_IMAGE or dockrun-base:bookworm): dockrun runs it as `dockrun run`, MLflow as
`mlflow run --build-image` (the latest MLflow from PyPI, in a venv under ~/.cache/dockrun-bench,
made once; tracking into a sqlite file), and the baseline is `docker run --rm` of an image with
the same code (and, where the others build, `docker build` of it first). Every section runs its
arms interleaved (A B C A B C ...), ``--warmup`` uncounted rounds first, and reports medians,
min-max and each ratio against the baseline of the same round. Sections reuse the single-purpose
scripts here (warm_rerun, sweep_throughput, git_rerun, large_project, runs_list) through their
functions. A failing section is reported in the file and the others still run.

Everything runs in a temporary DOCKRUN_HOME and TMPDIR; images are named dockrun-bench-* and the
ones this run made are removed at the end; containers are all --rm. The Git section serves its
repositories over smart HTTP on 127.0.0.1 (a random free port).
"""
from __future__ import annotations

import argparse
import cProfile  # noqa: F401 - run as `python -m cProfile` below; imported to fail early if missing
import datetime
import io
import itertools
import json
import os
import platform
import pstats
import queue
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))
import git_rerun  # noqa: E402 - bench/ is not a package
import large_project  # noqa: E402
import runs_list  # noqa: E402
import sweep_throughput  # noqa: E402
import warm_rerun  # noqa: E402
from common import Arm, interleaved, paired_ratios, peak_rss_mb, summary, timed  # noqa: E402
from mlflow_venv import DEFAULT_CACHE, ensure_mlflow, mlflow_version  # noqa: E402

TRAIN = '''"""The bench's work: read a small CSV, fit y = w*x with an L2 penalty alpha, print the result."""
import argparse
import csv

parser = argparse.ArgumentParser()
parser.add_argument("--alpha", type=float, required=True)
args = parser.parse_args()
with open("data/input.csv", newline="") as f:
    rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)]
w = sum(x * y for x, y in rows) / (sum(x * x for x, _ in rows) + args.alpha)
print(f"alpha {args.alpha} w {w:.4f}")
'''

MLPROJECT = """name: {name}
docker_env:
  image: {image}
entry_points:
  main:
    parameters:
      alpha: {{type: float, default: 0.5}}
    command: "python3 train.py --alpha {{alpha}}"
"""

DOCKERFILE = "FROM {image}\nCOPY . /project\nWORKDIR /project\n"


class Suite:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.base_image = args.base_image
        self.counter = itertools.count(1)
        self.results: dict[str, dict] = {}
        self.errors: dict[str, str] = {}
        self.loads: dict[str, tuple[float, float]] = {}
        self.mlflow = ensure_mlflow(args.cache)
        self.mlflow_version = mlflow_version(self.mlflow)
        tmp = work / "tmp"
        tmp.mkdir()
        # One environment for every arm: the suite's own DOCKRUN_HOME and TMPDIR (MLflow's clones
        # and download folders land there and go with it). In process too: sweeps call execute().
        os.environ.update(DOCKRUN_HOME=str(work / "home"), DOCKRUN_BASE_IMAGE=self.base_image, TMPDIR=str(tmp))
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
            os.environ.pop(name, None)
        # Bytecode, as an installed tool has it: with PYTHONDONTWRITEBYTECODE (set on these machines)
        # an editable checkout is compiled from source on every start (about 70 modules for a run).
        # The .pyc files go under the cache, not into the checkout.
        self.dont_write_bytecode = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(args.cache / "pycache")
        self.env = dict(os.environ)
        self.mlflow_env = dict(self.env, MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
        self.dockrun_project = self.make_project(work / "dockrun" / "bench-work", "bench-work")
        self.mlflow_project = self.make_project(work / "mlflow" / "bench-work", "dockrun-bench-mlflow")
        self.bare_context = self.make_project(work / "bare" / "bench-work", "bench-work", dockerfile=True)

    # --- projects and commands ------------------------------------------------------------------

    def make_project(self, root: Path, name: str, dockerfile: bool = False, stamp: str = "") -> Path:
        (root / "data").mkdir(parents=True)
        shutil.copy(REPO / "examples" / "hello" / "data" / "input.csv", root / "data" / "input.csv")
        (root / "MLproject").write_text(MLPROJECT.format(name=name, image=self.base_image))
        (root / "train.py").write_text(TRAIN + (f"# {stamp}\n" if stamp else ""))
        if dockerfile:
            (root / "Dockerfile").write_text(DOCKERFILE.format(image=self.base_image))
            (root / ".dockerignore").write_text("Dockerfile\n.dockerignore\n.git\n")
        return root

    def dockrun_cmd(self, project: Path | str, alpha: str = "0.3") -> list[str]:
        return warm_rerun.dockrun_command(str(project), [f"alpha={alpha}"])

    def mlflow_cmd(self, uri: Path | str, alpha: str = "0.3", version: str | None = None) -> list[str]:
        cmd = [str(self.mlflow), "run", str(uri), "-P", f"alpha={alpha}", "--build-image"]
        return cmd + (["-v", version] if version else [])

    @staticmethod
    def bare_run_cmd(image: str, alpha: str = "0.3") -> list[str]:
        return ["docker", "run", "--rm", "--init", "-w", "/project", "-e", "DOCKRUN_OUTPUT_DIR=/tmp", image,
                "sh", "-c", f"python3 train.py --alpha {alpha}"]

    def bare_build_and_run(self, context: Path, tag: str, alpha: str = "0.3") -> float:
        """`docker build` of the folder (the base image plus the code), then `docker run --rm`."""
        build = timed(["docker", "build", "-q", "-t", tag, str(context)], self.env)
        return build + timed(self.bare_run_cmd(tag, alpha), self.env)

    def edit(self, project: Path) -> None:
        with open(project / "train.py", "a") as f:
            f.write(f"# edit {next(self.counter)} {time.time()}\n")

    def value(self) -> str:
        return f"{1 + next(self.counter) / 1000:.3f}"

    # --- sections -------------------------------------------------------------------------------

    def section(self, name: str, fn: Callable[[], dict]) -> None:
        if self.args.only and name not in self.args.only:
            return
        print(f"== {name}", flush=True)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        try:
            self.results[name] = fn()
        except Exception:  # noqa: BLE001 - one failing section must not lose the others
            self.errors[name] = traceback.format_exc(limit=4)
            print(self.errors[name], file=sys.stderr)
        self.loads[name] = (load0, os.getloadavg()[0])
        print(f"   ({time.perf_counter() - t0:.0f} s, load {load0:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)

    def run3(self, arms: dict[str, Arm], unit: str = "s") -> dict:
        return {"times": interleaved(arms, self.args.repeat, "bare", warmup=self.args.warmup, unit=unit)}

    def cli_start(self) -> dict:
        arms: dict[str, Arm] = {
            "dockrun": (warm_rerun.dockrun_exe() + ["--help"], self.env, None),
            "bare": (["docker", "--help"], self.env, None),
            "mlflow": ([str(self.mlflow), "--help"], self.env, None),
            "python -c pass": ([sys.executable, "-c", "pass"], self.env, None),
        }
        return self.run3(arms)

    def warm(self) -> dict:
        two = warm_rerun.arms(str(self.dockrun_project), ["alpha=0.3"], self.env)
        arms = {"dockrun": two["warm dockrun run"], "bare": two["bare docker run"],
                "mlflow": (self.mlflow_cmd(self.mlflow_project), self.mlflow_env, None)}
        return self.run3(arms)

    def param_only(self) -> dict:
        project = str(self.dockrun_project)

        def dockrun() -> float:
            return timed(self.dockrun_cmd(project, self.value()), self.env)

        def bare() -> float:
            return timed(warm_rerun.bare_command(project, [f"alpha={self.value()}"]), self.env)

        def mlflow() -> float:
            return timed(self.mlflow_cmd(self.mlflow_project, self.value()), self.mlflow_env)

        return self.run3({"dockrun": dockrun, "bare": bare, "mlflow": mlflow})

    def code_only(self) -> dict:
        def dockrun() -> float:
            self.edit(self.dockrun_project)
            return timed(self.dockrun_cmd(self.dockrun_project), self.env)

        def bare() -> float:
            self.edit(self.bare_context)
            return self.bare_build_and_run(self.bare_context, "dockrun-bench-bare:code")

        def mlflow() -> float:
            self.edit(self.mlflow_project)
            return timed(self.mlflow_cmd(self.mlflow_project), self.mlflow_env)

        return self.run3({"dockrun": dockrun, "bare": bare, "mlflow": mlflow})

    def cold(self) -> dict:
        root = self.work / "cold"

        def dockrun() -> float:
            k = next(self.counter)
            project = self.make_project(root / f"d{k}" / "bench-work", "bench-work", stamp=f"cold {k}")
            env = dict(self.env, DOCKRUN_HOME=str(root / f"home{k}"))  # empty: no store, no caches
            return timed(self.dockrun_cmd(project), env)

        def bare() -> float:
            k = next(self.counter)
            context = self.make_project(root / f"b{k}" / "bench-work", "bench-work", True, f"cold {k}")
            took = self.bare_build_and_run(context, f"dockrun-bench-bare:cold{k}")
            subprocess.run(["docker", "rmi", f"dockrun-bench-bare:cold{k}"], capture_output=True)
            return took

        def mlflow() -> float:
            k = next(self.counter)
            project = self.make_project(root / f"m{k}" / "bench-work", "dockrun-bench-mlflow", stamp=f"cold {k}")
            return timed(self.mlflow_cmd(project), self.mlflow_env)

        return self.run3({"dockrun": dockrun, "bare": bare, "mlflow": mlflow})

    def git(self) -> dict:
        sys.path.insert(0, str(REPO / "tests"))
        from git_fixtures import GitHttpServer

        root = self.work / "git"
        (root / "served").mkdir(parents=True)
        password = secrets.token_hex(8)
        server = GitHttpServer(root / "served", "bench", password).start()
        names = ("dockrun first", "dockrun second", "mlflow first", "mlflow second", "bare first", "bare second")
        times: dict[str, list[float]] = {name: [] for name in names}
        try:
            for i in range(self.args.warmup + self.args.repeat):
                k = next(self.counter)
                d_sha = git_rerun.publish(self.dockrun_project, root / f"d{k}", server.root / f"d{k}.git", str(k))
                m_sha = git_rerun.publish(self.mlflow_project, root / f"m{k}", server.root / f"m{k}.git", str(k))
                d_url = server.url(f"d{k}.git", f"bench:{password}")
                m_url = server.url(f"m{k}.git", f"bench:{password}")
                # dockrun: the first run from an empty DOCKRUN_HOME (clone, build), then the second.
                d1, d2 = git_rerun.first_and_second(d_url, d_sha, root / f"home{k}", ["alpha=0.3"])
                # mlflow run clones into a temporary folder and builds, every time.
                m1 = timed(self.mlflow_cmd(m_url, version=m_sha), self.mlflow_env)
                m2 = timed(self.mlflow_cmd(m_url, version=m_sha), self.mlflow_env)
                # bare: git clone + checkout + docker build + docker run; then docker run of that image.
                clone = root / f"b{k}"
                tag = f"dockrun-bench-bare:git{k}"
                t0 = time.perf_counter()
                subprocess.run(["git", "clone", "-q", d_url, str(clone)], check=True, capture_output=True)
                subprocess.run(["git", "-C", str(clone), "checkout", "-q", d_sha], check=True, capture_output=True)
                (clone / "Dockerfile").write_text(DOCKERFILE.format(image=self.base_image))
                (clone / ".dockerignore").write_text("Dockerfile\n.dockerignore\n.git\n")
                b1 = time.perf_counter() - t0 + self.bare_build_and_run(clone, tag)
                b2 = timed(self.bare_run_cmd(tag), self.env)
                subprocess.run(["docker", "rmi", tag], capture_output=True)
                if i >= self.args.warmup:
                    for name, t in zip(names, (d1, d2, m1, m2, b1, b2)):
                        times[name].append(t)
        finally:
            server.stop()
        return {"times": times}

    def rss(self) -> dict:
        bare = warm_rerun.bare_command(str(self.dockrun_project), ["alpha=0.3"])
        arms: dict[str, Arm] = {
            # In-process: with warm start the command's own process is a small client, and the driver
            # a worker forked from the helper (sharing its pages), which would flatter dockrun.
            "dockrun": lambda: peak_rss_mb(self.dockrun_cmd(self.dockrun_project),
                                           dict(self.env, DOCKRUN_WARMSTART="0")),
            "bare": lambda: peak_rss_mb(bare, self.env),
            "mlflow": lambda: peak_rss_mb(self.mlflow_cmd(self.mlflow_project), self.mlflow_env),
        }
        return self.run3(arms, unit="MB")

    def sweeps(self) -> dict:
        out = {}
        for runs, workers in self.args.sweeps:
            print(f"   sweep of {runs} runs, {workers} workers", flush=True)
            try:  # one failing sweep must not lose the others
                two = sweep_throughput.sweep_arms(str(self.dockrun_project), runs, workers)
                arms: dict[str, Arm] = {"dockrun": two["dockrun.execute sweep"],
                                        "bare": two["plain docker run sweep"]}
                if f"{runs}x{workers}" in self.args.mlflow_sweeps:
                    arms["mlflow"] = self.mlflow_sweep(runs, workers)
                times = interleaved(arms, self.args.repeat, "bare", warmup=self.args.warmup)
                out[f"{runs}x{workers}"] = {"times": times, "runs": runs, "workers": workers}
            except Exception:  # noqa: BLE001
                self.errors[f"sweeps {runs}x{workers}"] = traceback.format_exc(limit=4)
                print(self.errors[f"sweeps {runs}x{workers}"], file=sys.stderr)
        return out

    def mlflow_sweep(self, runs: int, workers: int) -> Callable[[], float]:
        # One sqlite store per worker: sqlite takes one writer at a time, and a store shared by
        # concurrent `mlflow run`s fails with "database is locked" (a server would be the fix).
        stores: queue.Queue[str] = queue.Queue()
        for w in range(workers):
            stores.put(f"sqlite:///{self.work / f'mlflow-sweep-{w}.db'}")

        def one(i: int) -> bool:
            store = stores.get()
            try:
                env = dict(self.mlflow_env, MLFLOW_TRACKING_URI=store)
                cmd = self.mlflow_cmd(self.mlflow_project, sweep_throughput.value(i))
                return subprocess.run(cmd, env=env, capture_output=True).returncode == 0
            finally:
                stores.put(store)

        return lambda: sweep_throughput.pooled(one, runs, workers)

    def large(self) -> dict:
        r = large_project.measure(self.args.large_mb, 200, self.args.repeat)
        return {**r, "size_mb": self.args.large_mb}

    def runs_listing(self) -> dict:
        return {"times": runs_list.measure(self.args.list_runs, self.args.repeat * 2, warmup=self.args.warmup),
                "runs": self.args.list_runs}

    def profile(self) -> dict:
        cmd = ["-m", "dockrun.cli", "run", "-q", str(self.dockrun_project), "-P", "alpha=0.3"]
        subprocess.run([sys.executable, *cmd], env=self.env, check=True, capture_output=True)
        runs = []
        for _ in range(3):
            proc = subprocess.run([sys.executable, "-X", "importtime", *cmd], env=self.env, check=True,
                                  capture_output=True, text=True)
            runs.append(parse_importtime(proc.stderr))
        runs.sort(key=lambda r: r["total_us"])
        imports = runs[1]
        prof = self.work / "warm.prof"
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), *cmd], env=self.env, check=True,
                           capture_output=True)
            walls.append(time.perf_counter() - t0)
        # The same run taken apart at one moment's load: the interpreter alone, the interpreter plus
        # the modules the run imports (those -X importtime lists at top level, minus the
        # interpreter's own), the whole run, and the bare run, interleaved.
        startup = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], env=self.env, check=True,
                                 capture_output=True, text=True).stderr
        own = {name for name, _ in parse_importtime(startup)["all_top_level"]}
        modules = [name for name, _ in imports["all_top_level"] if name not in own and not name.startswith("_")]
        bare = warm_rerun.bare_command(str(self.dockrun_project), ["alpha=0.3"])
        arms: dict[str, Arm] = {
            "python -c pass": ([sys.executable, "-c", "pass"], self.env, None),
            "python -c 'import ...'": ([sys.executable, "-c", "import " + ", ".join(modules)], self.env, None),
            "dockrun": ([sys.executable, *cmd], self.env, None),
            "bare": (bare, self.env, None),
        }
        parts = interleaved(arms, self.args.repeat, "bare", warmup=self.args.warmup)
        return {"imports": imports, "import_totals_ms": [r["total_us"] / 1000 for r in runs],
                "cprofile": cprofile_top(prof, 15), "cprofile_wall_s": walls[-1], "parts": parts,
                "modules": modules}

    def run(self) -> None:
        self.section("cli", self.cli_start)
        self.section("warm", self.warm)
        self.section("param", self.param_only)
        self.section("code", self.code_only)
        self.section("cold", self.cold)
        self.section("git", self.git)
        self.section("rss", self.rss)
        self.section("sweeps", self.sweeps)
        self.section("large", self.large)
        self.section("runs_list", self.runs_listing)
        self.section("profile", self.profile)


# --- profiles -----------------------------------------------------------------------------------

def parse_importtime(stderr: str) -> dict:
    """`python -X importtime` output: the total, top-level imports by cumulative time and the
    self time summed by root package."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), len(m.group(3)), m.group(4)))
    by_root: dict[str, int] = {}
    for self_us, _, _, name in rows:
        root = name.split(".")[0]
        by_root[root] = by_root.get(root, 0) + self_us
    top = sorted((r for r in rows if r[2] == 0), key=lambda r: -r[1])
    return {"total_us": sum(r[0] for r in rows), "count": len(rows),
            "top_level": [(name, cum) for _, cum, _, name in top[:12]],
            "all_top_level": [(name, cum) for _, cum, depth, name in rows if depth == 0],
            "by_root": sorted(by_root.items(), key=lambda kv: -kv[1])[:15]}


def cprofile_top(path: Path, n: int) -> dict:
    stats = pstats.Stats(str(path), stream=io.StringIO())
    tables = {}
    for order in ("cumulative", "tottime"):
        stats.sort_stats(order)
        rows = []
        for func in stats.fcn_list:  # type: ignore[attr-defined] - set by sort_stats
            if wrapper(func):
                continue
            cc, nc, tt, ct, _ = stats.stats[func]  # type: ignore[attr-defined]
            rows.append((f"{nc}" if nc == cc else f"{nc}/{cc}", tt, ct, short_func(func)))
            if len(rows) == n:
                break
        tables[order] = rows
    sleep = next(((v[1], v[3]) for k, v in stats.stats.items() if k[2].endswith("time.sleep>")),  # type: ignore[attr-defined]
                 (0, 0.0))
    total = stats.total_tt  # type: ignore[attr-defined]
    return {"rows": tables["cumulative"], "own": tables["tottime"], "sleep_calls": sleep[0], "sleep_s": sleep[1],
            "total_s": total}


def wrapper(func: tuple[str, int, str]) -> bool:
    """Frames every call passes through (runpy, click's dispatch, exec, the import machinery): at
    the top of any cumulative listing, and telling nothing about what to cut."""
    file, _, name = func
    return (file.startswith("<frozen") or file == "<string>" or "click/core.py" in file
            or name in ("<built-in method builtins.exec>", "<built-in method builtins.__import__>")
            or (file.endswith("dockrun/cli.py") and name in ("<module>", "main")))


def short_func(func: tuple[str, int, str]) -> str:
    file, line, name = func
    if file == "~":
        return name
    for marker in ("site-packages/", "lib/python3.11/", str(REPO) + "/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{line}({name})"


# --- the report ---------------------------------------------------------------------------------

LABELS = {
    "cold": ("cold: first run of a new project", "new folder, empty DOCKRUN_HOME: code layer build + run",
             "`docker build` (FROM base, COPY .) + `docker run --rm`"),
    "warm": ("warm: rerun, nothing changed", "image cached: no build", "`docker run --rm` of dockrun's image"),
    "code": ("code-only change (train.py edited)", "a new code layer on the base",
             "`docker build` + `docker run --rm`"),
    "param": ("parameter-only change (new alpha)", "no build", "`docker run --rm` with the new value"),
}


def cell(xs: list[float] | None, unit: str = "s", digits: int = 2) -> str:
    return summary(xs).fmt(unit, digits) if xs else "-"


def ratio_cell(xs: list[float] | None, base: list[float] | None) -> str:
    if not xs or not base:
        return "-"
    r = summary(paired_ratios(xs, base))
    return f"**{r.median:.2f}** ({r.lo:.2f}-{r.hi:.2f})"


def load_cell(suite: Suite, name: str) -> str:
    a, b = suite.loads.get(name, (0, 0))
    return f"{a:.1f} -> {b:.1f}"


def machine_facts() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    mem = next((int(line.split()[1]) // 1024 // 1024 for line in meminfo if line.startswith("MemTotal")), 0)
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"],
                            capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "dockrun", "templates"],
                           capture_output=True, text=True).stdout.strip()
    return [f"{cpu}, {os.cpu_count()} cores, {mem} GB", f"Docker {docker}",
            f"Python {platform.python_version()}", f"dockrun at {commit}{' plus uncommitted changes' if dirty else ''}"]


def write_report(suite: Suite, path: Path, started: datetime.datetime, wall: float, load0: tuple, load1: tuple) -> None:
    a, R = suite.args, suite.results
    out: list[str] = []
    w = out.append
    w(f"# Benchmark suite, {started:%Y-%m-%d}, machine `{a.machine}`{' (--quick)' if a.quick else ''}\n")
    w(f"`{a.command}`\n")
    w(f"{'; '.join(machine_facts())}; MLflow {suite.mlflow_version} (the newest that installs from PyPI, "
      f"in {suite.mlflow.parent.parent}). Started {started:%H:%M} UTC, took {wall / 60:.0f} min. Load average "
      f"(1/5/15 min) {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f} at the start, "
      f"{load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f} at the end: other sessions' tests share these cores and "
      f"this engine, so absolute times drift with them; every ratio is taken round by round against the "
      f"baseline measured next to it (A B C A B C ..., {a.warmup} uncounted warm-up round(s), then "
      f"{a.repeat} counted), and those paired ratios are what count.\n")
    if suite.dont_write_bytecode:
        w(f"PYTHONDONTWRITEBYTECODE={suite.dont_write_bytecode} was set here; the suite unset it and pointed "
          f"PYTHONPYCACHEPREFIX at {os.environ['PYTHONPYCACHEPREFIX']}, so every Python arm runs from bytecode "
          "(after the warm-up round) as an installed tool does, instead of compiling dockrun's modules on each "
          "start.\n")
    w("Cells: median (min-max) of the counted rounds. Ratios: median (min-max) of the per-round ratios "
      "(arm time / baseline time of the same round); below 1 is faster than the baseline.\n")
    w("The work: a `docker_env` project on `" + suite.base_image + "` (`python3 train.py --alpha A`: reads a "
      "16-line CSV, prints one line). dockrun: `dockrun run DIR -P alpha=A` (its own DOCKRUN_HOME). mlflow: "
      "`mlflow run DIR -P alpha=A --build-image`, tracking into a sqlite file (MLflow rebuilds the image on "
      "every run). bare: what a user would type to get the same result with `docker` alone.\n")
    w("## Runs\n")
    w("| work | dockrun | bare `docker run` | `mlflow run` | dockrun / bare | mlflow / bare | mlflow / dockrun "
      "| load |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for key in ("cold", "warm", "code", "param"):
        if key in R:
            t = R[key]["times"]
            w(f"| {LABELS[key][0]} | {cell(t['dockrun'])} | {cell(t['bare'])} | {cell(t['mlflow'])} | "
              f"{ratio_cell(t['dockrun'], t['bare'])} | {ratio_cell(t['mlflow'], t['bare'])} | "
              f"{ratio_cell(t['mlflow'], t['dockrun'])} | {load_cell(suite, key)} |")
    if "git" in R:
        t = R["git"]["times"]
        for which, what in (("first", "Git, first run of a commit (smart HTTP)"),
                            ("second", "Git, second run, same commit")):
            d, b, m = t[f"dockrun {which}"], t[f"bare {which}"], t[f"mlflow {which}"]
            w(f"| {what} | {cell(d)} | {cell(b)} | {cell(m)} | {ratio_cell(d, b)} | {ratio_cell(m, b)} | "
              f"{ratio_cell(m, d)} | {load_cell(suite, 'git')} |")
    for r in R.get("sweeps", {}).values():
        t = r["times"]
        m = t.get("mlflow")
        w(f"| sweep: {r['runs']} runs, {r['workers']} workers (wall time) | {cell(t['dockrun'])} | {cell(t['bare'])} | "
          f"{cell(m) if m else 'not run'} | {ratio_cell(t['dockrun'], t['bare'])} | {ratio_cell(m, t['bare'])} | "
          f"{ratio_cell(m, t['dockrun'])} | {load_cell(suite, 'sweeps')} |")
    if "cli" in R:
        t = R["cli"]["times"]
        w(f"| CLI start: `dockrun --help` / `docker --help` / `mlflow --help` | {cell(t['dockrun'], 's', 3)} | "
          f"{cell(t['bare'], 's', 3)} | {cell(t['mlflow'], 's', 3)} | {ratio_cell(t['dockrun'], t['bare'])} | "
          f"{ratio_cell(t['mlflow'], t['bare'])} | {ratio_cell(t['mlflow'], t['dockrun'])} | "
          f"{load_cell(suite, 'cli')} |")
    if "rss" in R:
        t = R["rss"]["times"]
        w(f"| peak RSS of the process (`dockrun run` driver / `docker` CLI / `mlflow run`), warm | "
          f"{cell(t['dockrun'], 'MB', 1)} | {cell(t['bare'], 'MB', 1)} | {cell(t['mlflow'], 'MB', 1)} | "
          f"{ratio_cell(t['dockrun'], t['bare'])} | {ratio_cell(t['mlflow'], t['bare'])} | "
          f"{ratio_cell(t['mlflow'], t['dockrun'])} | {load_cell(suite, 'rss')} |")
    w("")
    w("What each arm does:\n")
    for label, ours, bare in LABELS.values():
        w(f"- {label}: dockrun {ours}; bare {bare}; mlflow builds and runs, as always.")
    w("- Git: a new commit per round in a bare repository served by `git http-backend` on 127.0.0.1 (basic "
      "auth). dockrun: `dockrun run URL -v SHA` from an empty DOCKRUN_HOME (clone, build), then again (cached "
      "tree and image: no git process, no build). mlflow: `mlflow run URL -v SHA --build-image`, twice (it "
      "clones and builds both times). bare: `git clone` + `git checkout SHA` + `docker build` + `docker run`, "
      "then `docker run` of that image.")
    w("- Sweeps: dockrun: `dockrun.execute(project, parameters={alpha: a}, synchronous=False).wait()` from a "
      "thread pool; bare: the same containers with `docker run --rm` from the same pool; mlflow: `mlflow run "
      f"--build-image` processes from the same pool (one sqlite store per worker), in the "
      f"{', '.join(a.mlflow_sweeps)} sweep(s) only (`--mlflow-sweeps`: on 2 cores an 8-run MLflow sweep takes "
      f"over a minute a round, a 32-run one several, and 4 workers cannot beat 2). "
      "Every run a new alpha on the same image. Throughput ratio = 1 / time ratio.")
    w("- CLI start: the console scripts (`dockrun --help` is dockrun's entry point, not the pyenv shim).")
    w("- Peak RSS: VmHWM of that one process, read from /proc while it runs (dockrun's forked supervisor and "
      "MLflow's `docker` child not included); dockrun's with DOCKRUN_WARMSTART=0, the driver in-process.")
    w("- dockrun is this checkout installed (`pip install .`, not editable) into the bench's own venv, as users "
      "install it; `dockrun run` goes through its warm-start helper (started by the warm-up round), as it does "
      "for users from their second run on.\n")
    extras(suite, w)
    if suite.errors:
        w("## Sections that failed\n")
        for name, tb in suite.errors.items():
            w(f"`{name}`:\n\n```\n{tb.strip()}\n```\n")
    w("## Raw times\n")
    w("<details><summary>every counted round, seconds (RSS: MB)</summary>\n")
    raw = rounded({k: v for k, v in R.items() if k != "profile"})
    w("```json\n" + json.dumps(raw, separators=(",", ":")) + "\n```\n</details>\n")
    path.write_text("\n".join(out).replace("\n\n\n", "\n\n"))


def rounded(x: object) -> object:
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v) for v in x]
    return x


def extras(suite: Suite, w: Callable[[str], None]) -> None:
    R = suite.results
    w("## Against the targets (issue 13)\n")
    w("| target | measured | |")
    w("| --- | --- | --- |")

    def row(target: str, value: float | None, ok: bool | None, fmt: str) -> None:
        if value is not None:
            w(f"| {target} | {fmt.format(value)} | {'met' if ok else 'missed'} |")

    def med_ratio(xs: list[float], base: list[float]) -> float:
        return statistics.median(paired_ratios(xs, base))

    if "warm" in R:
        t = R["warm"]["times"]
        r = med_ratio(t["dockrun"], t["bare"])
        row("warm run <= 1.15x bare `docker run`", r, r <= 1.15, "{:.2f}x")
        r = med_ratio(t["mlflow"], t["dockrun"])
        row("warm run >= 10x faster than `mlflow run`", r, r >= 10, "{:.1f}x faster")
    if "code" in R and "warm" in R:
        d = statistics.median(R["code"]["times"]["dockrun"]) - statistics.median(R["warm"]["times"]["dockrun"])
        row("code-only change <= warm run + 1 s", d, d <= 1, "warm + {:.2f} s")
    for r in R.get("sweeps", {}).values():
        t = r["times"]
        thr = 1 / med_ratio(t["dockrun"], t["bare"])
        row(f"sweep ({r['runs']} runs, {r['workers']} workers) >= 0.9x the plain pool's throughput", thr, thr >= 0.9,
            "{:.2f}x")
    if "cli" in R:
        m = statistics.median(R["cli"]["times"]["dockrun"]) * 1000
        row("`dockrun --help` <= 150 ms", m, m <= 150, "{:.0f} ms")
    if "rss" in R:
        m = statistics.median(R["rss"]["times"]["dockrun"])
        row("peak RSS of `dockrun run` <= 80 MB", m, m <= 80, "{:.1f} MB")
    if "large" in R:
        lg = R["large"]
        t = lg["times"]
        big = next(k for k in t if k != lg["baseline"])
        r = med_ratio(t[big], t[lg["baseline"]])
        row(f"{lg['size_mb']} MB project rerun <= 1.3x tiny project rerun", r, r <= 1.3, "{:.2f}x")
    if "runs_list" in R:
        t = R["runs_list"]["times"]
        key = next(k for k in t if k.startswith("runs list"))
        m = statistics.median(t[key]) * 1000
        row(f"`runs list` at {R['runs_list']['runs']} runs <= 200 ms", m, m <= 200, "{:.0f} ms")
    w("")
    if "git" in R:
        t = R["git"]["times"]
        w(f"Git, dockrun's second run against its first: **{med_ratio(t['dockrun second'], t['dockrun first']):.2f}** "
          f"(paired median; `bench/git_rerun.py`).\n")
    if "large" in R:
        lg = R["large"]
        w(f"## A large project ({lg['size_mb']} MB in 200 files) against `examples/hello` (`bench/large_project.py`)\n")
        w(f"Load {load_cell(suite, 'large')}. Setup (first runs, one image build of the large project): "
          f"{lg['setup_s']:.1f} s.\n")
        w("| arm | warm `dockrun run` | ratio to tiny (paired) |")
        w("| --- | ---: | ---: |")
        for name, ts in lg["times"].items():
            w(f"| {name} | {cell(ts, 's', 3)} | {ratio_cell(ts, lg['times'][lg['baseline']])} |")
        un, ca = lg["tree_hash_ms"]
        w(f"\n`tree_hash` in process: {un:.1f} ms uncached, {ca:.2f} ms with its stat cache.\n")
    if "runs_list" in R:
        t = R["runs_list"]["times"]
        w(f"## `dockrun runs list` with {R['runs_list']['runs']} finished runs (`bench/runs_list.py`)\n")
        w(f"Load {load_cell(suite, 'runs_list')}.\n")
        w("| arm | time | ratio to `python -c pass` (paired) |")
        w("| --- | ---: | ---: |")
        for name, ts in t.items():
            w(f"| {name} | {cell(ts, 's', 3)} | {ratio_cell(ts, t['python -c pass'])} |")
        w("")
    if "profile" in R:
        profile_section(suite, w)


def profile_section(suite: Suite, w: Callable[[str], None]) -> None:
    p = suite.results["profile"]
    w("## Where the time goes in a warm `dockrun run`\n")
    w(f"Of the warm project above (`python -m dockrun.cli run -q DIR -P alpha=0.3`), load "
      f"{load_cell(suite, 'profile')}: read proportions, not absolute times. This is the command run in-process "
      "from the checkout (as with DOCKRUN_WARMSTART=0): the interpreter start and the imports below are what "
      "warm start takes off a run (its worker is forked with them done), the rest is what every run pays.\n")
    t = p["parts"]
    py, imp, run, bare = (statistics.median(t[k]) for k in ("python -c pass", "python -c 'import ...'", "dockrun",
                                                             "bare"))
    w(f"Taken apart, interleaved in one section ({len(t['bare'])} counted rounds, medians): `python -c pass`, "
      f"`python -c 'import ...'` of the {len(p['modules'])} modules the run imports at top level (not the "
      f"interpreter's own: {', '.join(f'`{m}`' for m in p['modules'])}), the warm run, the bare `docker run`.\n")
    w("| part | s | share of the warm run | x bare `docker run` |")
    w("| --- | ---: | ---: | ---: |")
    for name, x in (("interpreter start (`python -c pass`)", py),
                    ("imports (import-only run minus the above)", imp - py),
                    ("the rest: prepare, engine calls, supervisor, the container, waits", run - imp),
                    ("**warm `dockrun run`**", run), ("bare `docker run --rm` (all of it)", bare),
                    ("budget at 1.15x bare", 1.15 * bare)):
        w(f"| {name} | {x:.3f} | {x / run:.0%} | {x / bare:.2f} |")
    totals = ", ".join(f"{x:.0f}" for x in p["import_totals_ms"])
    imports = p["imports"]
    w(f"\n`python -X importtime` of the run, three times: {totals} ms summed self time ({imports['count']} modules, "
      f"the interpreter's own included). Imports by root package (self time summed, the middle run):\n")
    w("| package | self ms |")
    w("| --- | ---: |")
    for name, us in imports["by_root"]:
        w(f"| `{name}` | {us / 1000:.1f} |")
    w("\nTop-level imports by cumulative time:\n")
    w("| import | cumulative ms |")
    w("| --- | ---: |")
    for name, us in imports["top_level"]:
        w(f"| `{name}` | {us / 1000:.1f} |")
    c = p["cprofile"]
    w(f"\ncProfile of the driver (`python -m cProfile -m dockrun.cli run ...`; the forked supervisor is not "
      f"profiled), {p['cprofile_wall_s']:.3f} s wall with the profiler on; `time.sleep`: {c['sleep_calls']} calls, "
      f"{c['sleep_s']:.3f} s. Top 15 by cumulative time (frames every call passes through left out: runpy, "
      f"click's dispatch, `exec`, the import machinery):\n")
    w("| ncalls | tottime s | cumtime s | function |")
    w("| ---: | ---: | ---: | --- |")
    for ncalls, tt, ct, func in c["rows"]:
        w(f"| {ncalls} | {tt:.3f} | {ct:.3f} | `{func}` |")
    w("\nTop 15 by own time (tottime):\n")
    w("| ncalls | tottime s | cumtime s | function |")
    w("| ---: | ---: | ---: | --- |")
    for ncalls, tt, ct, func in c["own"]:
        w(f"| {ncalls} | {tt:.3f} | {ct:.3f} | `{func}` |")
    w("")


# --- main ---------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke check: 2 counted rounds, small sweeps and stores")
    ap.add_argument("--repeat", type=int, help="counted rounds per section (default 5; --quick 2)")
    ap.add_argument("--warmup", type=int, default=1, help="uncounted rounds before them (default 1)")
    ap.add_argument("--machine", default=platform.node().split(".")[0] or "machine")
    ap.add_argument("--out", type=Path, help="the results file (default bench/results/<date>-<machine>.md; "
                                             "--quick: a temporary file)")
    ap.add_argument("--base-image", default=os.environ.get("DOCKRUN_BASE_IMAGE") or "dockrun-base:bookworm")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the MLflow venv lives")
    ap.add_argument("--mlflow-sweeps", default="8x2", type=lambda s: s.split(","),
                    help="the sweeps (RUNSxWORKERS, comma-separated) MLflow takes part in (default 8x2)")
    ap.add_argument("--large-mb", type=int, help="size of the large project (default 1024; --quick 50)")
    ap.add_argument("--list-runs", type=int, help="runs in the store for `runs list` (default 10000; --quick 1000)")
    ap.add_argument("--only", type=lambda s: s.split(","), help="comma-separated sections: cli,warm,param,code,"
                                                                "cold,git,rss,sweeps,large,runs_list,profile")
    args = ap.parse_args()
    args.repeat = args.repeat or (2 if args.quick else 5)
    args.large_mb = args.large_mb or (50 if args.quick else 1024)
    args.list_runs = args.list_runs or (1000 if args.quick else 10_000)
    args.sweeps = [(8, 2), (8, 4)] if args.quick else [(8, 2), (8, 4), (32, 2), (32, 4), (32, 8)]
    args.command = "python bench/suite.py" + "".join(f" {x}" for x in sys.argv[1:])
    started = datetime.datetime.now(datetime.timezone.utc)
    if args.out is None:
        if args.quick:
            args.out = Path(tempfile.gettempdir()) / f"dockrun-bench-quick-{started:%Y%m%d-%H%M%S}.md"
        else:
            args.out = BENCH / "results" / f"{started:%Y-%m-%d}-{args.machine}.md"
            n = 2
            while args.out.exists():  # never overwrite a checked-in result
                args.out = BENCH / "results" / f"{started:%Y-%m-%d}-{args.machine}-{n}.md"
                n += 1
    before = bench_images()
    work = Path(tempfile.mkdtemp(prefix="dockrun-bench-"))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    try:
        suite = Suite(args, work)
        suite.run()
        write_report(suite, args.out, started, time.perf_counter() - t0, load0, os.getloadavg())
        print(f"wrote {args.out}")
    finally:
        for ref in sorted(bench_images() - before):
            subprocess.run(["docker", "rmi", ref], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def bench_images() -> set[str]:
    """dockrun-bench-* image references (repository:tag) on the engine."""
    out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter",
                          "reference=dockrun-bench-*"], capture_output=True, text=True, check=True).stdout
    return {line for line in out.split() if line and "<none>" not in line}


if __name__ == "__main__":
    main()
