"""The built wheel carries the templates and finds them when installed outside the checkout."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO


def test_wheel_ships_and_renders_templates(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    wheel = next(wheels.glob("dockrun-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "dockrun/_templates/project.Dockerfile.j2" in names
    assert "dockrun/_templates/env-uv.Dockerfile.j2" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # Only what rendering needs (jinja2), then the wheel itself without its other dependencies.
    for args in (["jinja2"], ["--no-deps", str(wheel)]):
        install = subprocess.run([str(py), "-m", "pip", "install", "-q", *args], capture_output=True, text=True,
                                 timeout=600)
        assert install.returncode == 0, install.stderr
    code = ("from dockrun.images import templates; d = templates.templates_dir(); print(d); "
            "print(templates.render('project.Dockerfile.j2', env_image='img:1', workdir='/project', local_code=(), "
            "prefix='', ca_bundle=False, build_args=[]))")
    r = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    first, rest = r.stdout.split("\n", 1)
    assert first.startswith(str(venv)) and first.endswith("dockrun/_templates")
    assert "FROM img:1\nCOPY project/ /project/\n" in rest
