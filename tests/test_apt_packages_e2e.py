"""OS packages in the environment (issue 24, item 9), through the real CLI on the real engine: the
default environment carries the OpenMP runtime common ML wheels load, so a LightGBM project runs
with no extra file (it failed with `libgomp.so.1: cannot open shared object file`); an apt.txt
beside the environment file adds packages, as repo2docker reads it, and is part of the key."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from conftest import write_project
from dockrun.config import load_settings
from dockrun.images.environment import env_spec, environment_key
from dockrun.project.spec import load_project

TRAIN = """
import numpy as np
import lightgbm as lgb

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 4))
y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
params = {"objective": "binary", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1, "num_threads": 2}
booster = lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=10)
print("lightgbm accuracy", round(float(((booster.predict(X) > 0.5) == y).mean()), 2))
"""


def _project(tmp_path: Path, files: dict[str, str], name: str) -> Path:
    return write_project(tmp_path / name, {
        "MLproject": f"name: {name}\nentry_points:\n  main:\n    command: python main.py\n",
        "marker.txt": uuid.uuid4().hex, **files})


@pytest.mark.usefixtures("no_leaks")
def test_a_lightgbm_project_runs_with_no_extra_file(cli, tmp_path: Path) -> None:
    project = _project(tmp_path, {"requirements.txt": "lightgbm\nnumpy\n", "main.py": TRAIN}, "lgbm")
    r = cli("run", str(project), timeout=1500)
    assert r.code == 0, r.err[-3000:]
    assert "libgomp" not in r.err
    line = r.out.strip().splitlines()[-1]
    assert line.startswith("lightgbm accuracy ") and float(line.split()[-1]) > 0.8


@pytest.mark.usefixtures("no_leaks")
def test_an_apt_txt_package_is_there_in_the_run(cli, tmp_path: Path) -> None:
    project = _project(tmp_path, {
        "requirements.txt": "six==1.16.0\n",
        "apt.txt": "# what the run calls\njq\n\n",
        "main.py": "import subprocess\nprint(subprocess.run(['jq', '-n', '{a: 1} | .a'], capture_output=True, "
                   "text=True, check=True).stdout.strip())\n"}, "aptjq")
    r = cli("run", str(project), timeout=1500)
    assert r.code == 0, r.err[-3000:]
    assert r.out.strip().splitlines()[-1] == "1"


def test_apt_txt_is_part_of_the_key_canonically(tmp_path: Path) -> None:
    def key(files: dict[str, str]) -> str:
        root = write_project(tmp_path / uuid.uuid4().hex, {"requirements.txt": "six\n", **files})
        return environment_key(env_spec(load_project(root), load_settings({})))

    plain = key({})
    assert key({"apt.txt": "jq\n"}) != plain
    assert key({"apt.txt": "jq\ncurl\n"}) == key({"apt.txt": "# tools\ncurl\n\njq\njq\n"})
    assert key({"apt.txt": "\n# nothing\n"}) == plain


@pytest.mark.usefixtures("no_leaks")
def test_a_bad_apt_txt_line_is_one_line_naming_it(cli, tmp_path: Path) -> None:
    project = _project(tmp_path, {"requirements.txt": "six\n", "apt.txt": "jq\nrm -rf /\n", "main.py": ""}, "aptbad")
    r = cli("build", str(project))
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        "dockrun: error: apt.txt: line 2: 'rm -rf /' is not a Debian package name "
        "(expected one name per line, such as jq or libgomp1=12.2.0-14)"]
