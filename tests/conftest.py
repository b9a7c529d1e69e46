"""Shared fixtures. e2e tests use the real Docker engine and a local base image; images are
cached by the engine, so an environment is built once per session and reused by every test."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BASE = "dockrun-base:bookworm"


# The skips CI accepts, by test (node ID, parameters left out), each with its reason. Under CI=true
# any other skip fails the test (pytest_runtest_makereport below); the list is printed at the end.
CI_MAY_SKIP = {
    "tests/test_images_e2e.py::test_conda_yaml_with_micromamba":
        "no micromamba image can be had here (no Docker Hub, no conda channel but the session's own): "
        "the conda path CI runs is py-rattler's (test_conda_e2e.py), the micromamba template is golden-tested",
}


def in_ci() -> bool:
    """Whether this is CI: CI=true (any case) or 1, as CI services set it. The one reading of CI."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def unavailable(why: str) -> None:
    """An engine or server an end-to-end test needs is missing: on a developer's machine the test
    skips, saying why; in CI (every CI service sets CI=true) it fails, so a broken CI machine can
    never pass by running nothing."""
    if in_ci():
        pytest.fail(f"CI=true, and {why}", pytrace=False)
    pytest.skip(why)


def check_golden(path: Path, text: str) -> None:
    """``text`` must be the golden file's. DOCKRUN_UPDATE_GOLDEN=1 rewrites it instead, on a
    developer's machine only: under CI it would make every golden test pass, so it is refused."""
    if os.environ.get("DOCKRUN_UPDATE_GOLDEN") == "1":
        if in_ci():
            pytest.fail("DOCKRUN_UPDATE_GOLDEN=1 under CI=true: CI compares golden files, it never rewrites them",
                        pytrace=False)
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} changed; review and regenerate with DOCKRUN_UPDATE_GOLDEN=1"


def _may_skip(nodeid: str) -> bool:
    return nodeid.split("[", 1)[0] in CI_MAY_SKIP


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    text = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return text.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Under CI=true a skip (pytest.skip, importorskip, a skip or skipif mark) is a failure unless
    the test is on CI_MAY_SKIP: a suite cannot go green in CI by running less."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and in_ci() and not _may_skip(item.nodeid):
        report.outcome = "failed"
        report.longrepr = (f"CI=true: the test skipped ({_reason(report)}), and it is not on CI_MAY_SKIP in "
                           "tests/conftest.py")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """The same for a whole module skipped while it is collected (a module-level importorskip)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and not _may_skip(report.nodeid):
        report.outcome = "failed"
        report.longrepr = f"CI=true: {report.nodeid} skipped while collected ({_reason(report)})"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The allow-list, with what it let skip in this run: what CI did not test is said, every time."""
    skipped = {r.nodeid.split("[", 1)[0] for r in terminalreporter.stats.get("skipped", [])}
    terminalreporter.section("skips CI allows (tests/conftest.py CI_MAY_SKIP)")
    for nodeid, why in CI_MAY_SKIP.items():
        seen = "skipped" if nodeid in skipped else "did not skip"
        terminalreporter.write_line(f"{seen:12}  {nodeid}: {why}")


def _engine_ok() -> str | None:
    if not shutil.which("docker"):
        return "no docker CLI on PATH"
    r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    return None if r.returncode == 0 else "no Docker engine answers (run docker/start-engine.sh as root)"


@pytest.fixture(scope="session")
def base_image() -> str:
    """The base image for built environments: $DOCKRUN_BASE_IMAGE or the one docker/ builds."""
    why = _engine_ok()
    if why:
        unavailable(why)
    image = os.environ.get("DOCKRUN_BASE_IMAGE") or DEFAULT_BASE
    r = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    if r.returncode != 0:
        unavailable(f"base image {image} missing: build it with docker/build-base-image.sh")
    return image


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated DOCKRUN_HOME for the test (run records, outputs, locks, clone cache)."""
    h = tmp_path / "dockrun-home"
    monkeypatch.setenv("DOCKRUN_HOME", str(h))
    return h


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(home: Path, base_image: str):
    """Run the real `dockrun` command in a subprocess, as a user would (its entry point: `run` through
    the warm-start helper once one is up)."""

    def run(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600) -> Result:
        full_env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image, **(env or {})}
        p = subprocess.run([sys.executable, "-m", "dockrun", *args], cwd=cwd or REPO, env=full_env,
                           capture_output=True, text=True, timeout=timeout)
        return Result(p.returncode, p.stdout, p.stderr)

    return run


def dockrun_containers(run_id: str | None = None) -> list[str]:
    label = f"dockrun.run-id={run_id}" if run_id else "dockrun.run-id"
    r = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label={label}"],
                       capture_output=True, text=True, check=True)
    return r.stdout.split()


@pytest.fixture
def no_leaks(base_image: str, home: Path):
    """Fails the test if it leaves a dockrun container behind. In CI (nothing else on the engine)
    every new dockrun container counts; on a shared machine, only those of runs in this test's
    DOCKRUN_HOME, so that another session's running containers are not taken for this test's."""
    before = set(dockrun_containers())
    yield
    left = set(dockrun_containers()) - before
    if left and not in_ci():
        ours = {p.name for p in (home / "runs").iterdir()} if (home / "runs").is_dir() else set()
        left = {c for c in left if _run_label(c) in ours}
    assert not left, f"containers left behind: {left}"


def _run_label(container: str) -> str:
    r = subprocess.run(["docker", "inspect", "-f", '{{index .Config.Labels "dockrun.run-id"}}', container],
                       capture_output=True, text=True)
    return r.stdout.strip()


def wait_until(done, timeout: float = 60) -> bool:
    """Polls ``done`` until it holds (True) or ``timeout`` passes (False): waiting for an event the
    test can only look at, never a sleep that guesses how long it takes."""
    import time

    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    address: str  # 127.0.0.1:PORT
    log: Path

    def uploads(self) -> int:
        """How many blob or manifest uploads the registry has served so far."""
        text = self.log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if '"PUT ' in line or '"PATCH ' in line
                   or ("http.request.method=PUT" in line) or ("http.request.method=PATCH" in line))


def start_registry(root: Path, port: int) -> subprocess.Popen:
    """A real registry v2 (Debian's docker-registry) on 127.0.0.1:``port``, storing under ``root``."""
    binary = shutil.which("docker-registry")
    if not binary:
        unavailable("docker-registry is not installed (apt-get install docker-registry)")
    config = root / "config.yml"
    config.write_text(textwrap.dedent(f"""
        version: 0.1
        log: {{level: info, formatter: text}}
        storage: {{filesystem: {{rootdirectory: {root / "data"}}}, delete: {{enabled: true}}}}
        http: {{addr: "127.0.0.1:{port}"}}
    """))
    log = root / "registry.log"
    with open(log, "ab") as f:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=f, stderr=subprocess.STDOUT)
    import time
    import urllib.request

    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"registry did not start: {log.read_text()[-500:]}")


@pytest.fixture(scope="session")
def registry(tmp_path_factory, base_image: str):
    """A real registry v2 (Debian's docker-registry) on 127.0.0.1 with a free port."""
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    proc = start_registry(root, port)
    yield Registry(f"127.0.0.1:{port}", root / "registry.log")
    proc.terminate()
    proc.wait(timeout=10)


def write_project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def image_id(ref: str) -> str | None:
    r = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def image_files_containing(images: list[str], needles: list[str], workdir: Path) -> list[str]:
    """Every file in the layers (and the config) of ``images`` (via `docker save`) that holds one
    of ``needles``: the way to show a secret or a CA never reached an image."""
    import io
    import tarfile

    saved = workdir / "saved-images.tar"
    subprocess.run(["docker", "save", "-o", str(saved), *images], check=True)
    wanted = [n.encode() for n in needles]
    hits = []
    with tarfile.open(saved) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            if member.name.endswith(".tar"):
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for f in layer.getmembers():
                        if f.isfile() and any(n in layer.extractfile(f).read() for n in wanted):
                            hits.append(f"{member.name}:{f.name}")
            elif any(n in data for n in wanted):
                hits.append(member.name)
    saved.unlink()
    return hits


# ---- running dockrun as another user ----------------------------------------------------------

@pytest.fixture(scope="session")
def user_python(tmp_path_factory) -> Path:
    """An interpreter another user can run, with dockrun's runtime dependencies and a copy of the
    package: Debian's /usr/bin/python3 and a world-readable venv (ours may live under /root)."""
    import tempfile

    system = Path("/usr/bin/python3")
    if not system.exists():
        unavailable("/usr/bin/python3 is needed to run dockrun as an unprivileged user")
    root = Path(tempfile.mkdtemp(prefix="dockrun-user-"))
    root.chmod(0o755)
    venv = root / "venv"
    r = subprocess.run([str(system), "-m", "venv", str(venv)], capture_output=True, text=True)
    if r.returncode != 0:
        unavailable(f"Debian's python3 cannot make a venv (python3-venv missing?): {r.stderr.strip()[-200:]}")
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "docker", "jinja2", "PyYAML", "click", "packaging"],
                   check=True, capture_output=True, timeout=600)
    src = root / "src"
    shutil.copytree(REPO / "dockrun", src / "dockrun")
    shutil.copytree(REPO / "templates", src / "templates")
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    yield venv / "bin" / "python"
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class AsUser:
    """`dockrun` run by the uid a file ownership check is about: as root (CI), uid 4321 in the
    docker group (setpriv), since "belongs to the caller" proves nothing when the caller is root;
    as anyone else, that user."""
    uid: int
    gid: int
    prefix: list[str]
    python: Path
    base_image: str
    folders: list[Path]

    def folder(self) -> Path:
        """A folder the user can write (pytest's tmp_path is root's, mode 0700), removed after the test."""
        import tempfile

        made = Path(tempfile.mkdtemp(prefix="dockrun-owner-"))
        made.chmod(0o777)
        self.folders.append(made)
        return made

    def run(self, cwd: Path, *args: str, timeout: int = 600) -> Result:
        subprocess.run(["chmod", "-R", "a+rwX", str(cwd)], check=True)
        if (cwd / "home").is_dir():  # the user's DOCKRUN_HOME stays its own (dockrun refuses one others may write)
            (cwd / "home").chmod(0o700)
        env = {"PATH": os.environ["PATH"], "DOCKRUN_HOME": str(cwd / "home"), "DOCKRUN_BASE_IMAGE": self.base_image,
               "HOME": str(cwd), "PYTHONPATH": str(self.python.parent.parent.parent / "src")}
        p = subprocess.run([*self.prefix, str(self.python), "-m", "dockrun.cli", *args], env=env, cwd=cwd,
                           capture_output=True, text=True, timeout=timeout)
        return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def as_user(user_python: Path, base_image: str):
    import grp

    if os.getuid() == 0:
        if not shutil.which("setpriv"):
            unavailable("setpriv (util-linux) is needed to run dockrun as another user")
        try:
            gid = grp.getgrnam("docker").gr_gid
        except KeyError:
            gid = 0
        user = AsUser(4321, 4321, ["setpriv", "--reuid=4321", "--regid=4321", f"--groups={gid}"], user_python,
                      base_image, [])
    else:
        user = AsUser(os.getuid(), os.getgid(), [], user_python, base_image, [])
    yield user
    for folder in user.folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def databricks_runtime(base_image: str) -> str:
    """The runtime-like image the Databricks emulator (tests/databricks_emulator.py) runs tasks in,
    built once per session from the base image: its ID."""
    from databricks_emulator import RUNTIME

    return RUNTIME.image(base_image)


@pytest.fixture(scope="session")
def mlflow_server(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 for the session, run from an image of the conda-uv example
    with the full MLflow (whose server the example's mlflow-skinny lacks), with the host's network."""
    import time
    import urllib.request

    env = {**os.environ, "DOCKRUN_BASE_IMAGE": base_image, "DOCKRUN_HOME": str(tmp_path_factory.mktemp("h"))}
    server = tmp_path_factory.mktemp("server") / "conda-uv"
    shutil.copytree(REPO / "examples" / "conda-uv", server)
    conda = server / "conda.yaml"
    assert "      - mlflow-skinny\n" in conda.read_text(), "the example's MLflow line moved: update this fixture"
    conda.write_text(conda.read_text().replace("      - mlflow-skinny\n", "      - mlflow\n"))
    built = subprocess.run([sys.executable, "-m", "dockrun.cli", "build", "-q", str(server), "--env-manager", "uv"],
                           env=env, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr
    port = free_port()
    name = f"dockrun-test-mlflow-{port}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "host", "-w", "/tmp",
                    built.stdout.strip(), "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                    "--backend-store-uri", "sqlite:////tmp/mlflow.db", "--workers", "1"],
                   check=True, capture_output=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(900):  # MLflow 3 takes a minute and more to start on a busy 2-core machine
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr[-1500:]
            pytest.fail(f"mlflow server did not come up: {logs}")
        yield url
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@contextmanager
def serve_body(body: bytes) -> Iterator[tuple[str, list[str]]]:
    """A plain HTTP server on 127.0.0.1 (a free port) answering every GET with ``body``: its
    address (host:port) and the paths it was asked for."""
    import http.server
    import threading

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}", asked
    finally:
        httpd.shutdown()
        httpd.server_close()
