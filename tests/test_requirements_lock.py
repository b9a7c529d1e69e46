"""The test dependencies tox installs (requirements/test.txt) are pinned, hash-checked and cover
what setup.py asks for: a dependency added to setup.py without regenerating the file would
otherwise be installed unpinned by tox's package step, and the suite would again depend on the day."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO


def _setup_requirements() -> list[Requirement]:
    """install_requires and the test extra, read from setup.py's text (nothing is executed)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: k.value for k in call.keywords}
    extras = ast.literal_eval(kw["extras_require"])
    return [Requirement(r) for r in ast.literal_eval(kw["install_requires"]) + extras["test"]]


def _pins(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes), from a `uv pip compile --generate-hashes` file."""
    text = path.read_text()
    pins: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", block)
        if m:
            name = canonicalize_name(m.group(1).split("[")[0])
            pins.setdefault(name, (m.group(2), block.count("--hash=sha256:")))
    return pins


def test_every_requirement_of_setup_py_is_pinned_with_hashes() -> None:
    pins = _pins(REPO / "requirements" / "test.txt")
    assert pins and all(hashes for _, hashes in pins.values()), "every pin carries its hashes"
    for req in _setup_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is not in requirements/test.txt: regenerate it (the command is at its top)"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"requirements/test.txt pins {name}=={pins[name][0]}, which {req} excludes: regenerate it")
    assert "ruff" in _pins(REPO / "requirements" / "lint.txt")


def test_tox_installs_the_pinned_set_and_latest_is_separate() -> None:
    import configparser

    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini")
    assert tox["testenv"]["deps"].strip() == "-r requirements/test.txt" and "extras" not in tox["testenv"]
    assert "latest" not in tox["tox"]["envlist"] and tox["testenv:latest"]["extras"].strip() == "test"
