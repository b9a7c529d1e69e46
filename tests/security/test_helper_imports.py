"""Helper processes (the local fork server, a Kubernetes run's watcher) import nothing from the
folder the user ran dockrun in: a project someone else wrote may hold a ``json.py`` or an
``argparse.py``, and a helper holds the engine's, the cluster's and the tracking server's
credentials.

Run the way a user runs dockrun: the installed ``dockrun`` script (here: the same two lines in a
script of its own folder, so its folder, not the working one, is first on the path) or a driver
script elsewhere, with the working folder holding modules that leave a mark when imported."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, write_project

# A module of the working folder that leaves a mark, then loads the real one in its place (so the
# process goes on as it would have: the mark alone tells that it was imported).
TRAP = textwrap.dedent("""
    import importlib.machinery, importlib.util, os, sys
    with open({marker!r}, "a") as _f:
        _f.write(f"{{__name__}} imported by pid {{os.getpid()}}: {{sys.argv}}\\n")
    _here = os.path.dirname(os.path.abspath(__file__))
    _path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    _spec = importlib.machinery.PathFinder.find_spec(__name__, _path)
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules[__name__] = _mod
    _spec.loader.exec_module(_mod)
""")


def trapped_folder(root: Path) -> tuple[Path, Path]:
    """A working folder with trap modules; (folder, marker file)."""
    folder = root / "workdir"
    folder.mkdir()
    marker = root / "imported-from-workdir.txt"
    for name in ("json", "argparse", "runpy", "signal"):
        (folder / f"{name}.py").write_text(TRAP.format(marker=str(marker)))
    return folder, marker


def env_for(home: Path, base_image: str) -> dict[str, str]:
    # This checkout's dockrun (an absolute path, as a user's PYTHONPATH or install would give it).
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image, "PYTHONPATH": path}


def dockrun_script(root: Path) -> Path:
    """What pip installs as the ``dockrun`` console script, in a folder of its own."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    script = bin_dir / "dockrun"
    script.write_text("import sys\nfrom dockrun.warmstart.client import main\nsys.exit(main())\n")
    return script


def test_the_fork_server_imports_nothing_from_the_working_folder(tmp_path: Path, home: Path,
                                                                 base_image: str) -> None:
    # Several threads submitting at once (a sweep driver) start their supervisors through the fork
    # server, a helper process started in the driver's working folder.
    folder, marker = trapped_folder(tmp_path)
    project = write_project(tmp_path / "project", {"MLproject": """
        name: imports
        entry_points:
          main:
            parameters: {n: {type: int, default: 0}}
            command: "echo run {n}"
    """})
    driver = tmp_path / "driver" / "sweep.py"
    driver.parent.mkdir()
    driver.write_text(textwrap.dedent(f"""
        from concurrent.futures import ThreadPoolExecutor
        import dockrun

        def one(n):
            return dockrun.execute({str(project)!r}, parameters={{"n": n}}, synchronous=False,
                                   log=lambda line: None)

        with ThreadPoolExecutor(2) as pool:
            handles = list(pool.map(one, range(3)))
        assert all(h.wait() for h in handles), [h.get_status() for h in handles]
        print("done")
    """))
    p = subprocess.run([sys.executable, str(driver)], cwd=folder, env=env_for(home, base_image),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "done" in p.stdout
    assert not marker.exists(), marker.read_text()


@pytest.mark.parametrize("pythonpath", [None, ":/nonexistent", "/nonexistent:", "."])
@pytest.mark.parametrize("module", ["dockrun.backends.local.launch", "dockrun.backends.owner"])
def test_a_helper_runs_the_callers_own_dockrun(tmp_path: Path, module: str, pythonpath: str | None) -> None:
    # The helper's command line, as dockrun builds it, from a working folder holding a `dockrun`
    # package of its own: the helper must not take it (nor the working folder's other files).
    folder, marker = trapped_folder(tmp_path)
    fake = folder / "dockrun"
    fake.mkdir()
    (fake / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('fake dockrun imported')\n")
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); "
             "from dockrun.backends.module_command import module_command; "
             "print('\\0'.join(module_command(sys.argv[2])))")
    argv = subprocess.run([sys.executable, "-c", probe, str(REPO), module], capture_output=True, text=True,
                          check=True, cwd=tmp_path).stdout.rstrip("\n").split("\0")
    # The helper's own --help: it has started, imported its module and parsed its arguments.
    # (The fork server reads requests from stdin and ends at EOF.)
    # An empty PYTHONPATH entry (`export PYTHONPATH=$PYTHONPATH:/x` with it unset) or "." names the
    # working folder too.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    p = subprocess.run([*argv, "--help"], cwd=folder, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    if module.endswith("owner"):
        assert p.stdout.startswith("usage: python -m dockrun.backends.owner"), p.stdout
    assert not marker.exists(), marker.read_text()
