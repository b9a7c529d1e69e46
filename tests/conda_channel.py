"""A real conda channel for the conda path's end-to-end tests, built once per session.

py-rattler-build makes a `noarch: generic` package `dockrun-demo` in three versions, each with a
`dockrun-demo` script that prints its version; `python3 -m http.server` serves the folder on the
docker0 gateway, the one host address a `docker build` step reaches. Tests point conda-forge at it
with DOCKRUN_CONDA_CHANNEL_MAP, so no public channel is ever asked.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import unavailable
from docker_bridge import serve_on_bridge

VERSIONS = ("1.1.0", "1.2.0", "1.3.0")
RECIPE = """
package:
  name: dockrun-demo
  version: "{version}"
build:
  noarch: generic
  script:
    - mkdir -p $PREFIX/bin
    - printf '#!/bin/sh\\necho "dockrun-demo {version}"\\n' > $PREFIX/bin/dockrun-demo
    - chmod +x $PREFIX/bin/dockrun-demo
"""


@dataclass(frozen=True)
class Channel:
    url: str  # http://<gateway>:<port>/, as a build step sees it

    @property
    def env(self) -> dict[str, str]:
        """What a dockrun run needs so that `conda-forge` means this channel."""
        return {"DOCKRUN_CONDA_CHANNEL_MAP": f"conda-forge={self.url}"}


def build_channel(folder: Path) -> Path:
    try:
        from rattler_build import Stage0Recipe
    except ImportError:
        unavailable("py-rattler-build is not installed (pip install -e '.[test]')")
    out = folder / "channel"
    for version in VERSIONS:
        recipe = folder / version / "recipe.yaml"
        recipe.parent.mkdir(parents=True)
        recipe.write_text(RECIPE.format(version=version))
        Stage0Recipe.from_file(str(recipe)).run_build(output_dir=str(out), channels=[], no_include_recipe=True)
    assert sorted(p.name.split("-")[2] for p in (out / "noarch").glob("*.conda")) == list(VERSIONS)
    return out


@pytest.fixture(scope="session", name="conda_channel")
def conda_channel_fixture(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[Channel]:
    folder = build_channel(tmp_path_factory.mktemp("conda-channel"))
    with serve_on_bridge(folder, "noarch/repodata.json") as url:
        yield Channel(url)
