"""Every `dockrun` line of the README's tour, run as written (in a copy of the repository's
examples, so `dockrun lock` writes there), with the exit code its comment promises: the README
cannot drift from what the tool does."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def tour_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("## A tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.strip().splitlines() if line.strip()]


def expected_code(line: str) -> int:
    comment = line.partition("#")[2]
    found = re.search(r"\bexits? (\d+)", comment)
    return int(found.group(1)) if found else 0


def test_the_tour_has_the_lines_users_copy() -> None:
    lines = tour_lines()
    assert len(lines) >= 10 and all(re.match(r"^([A-Z_]+=\S+ )?dockrun ", line) for line in lines), lines


def test_every_tour_line_works_as_written(tmp_path: Path, home: Path, base_image: str, no_leaks) -> None:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}
    # The shell's `dockrun` is this checkout's, whatever is installed.
    prelude = f'dockrun() {{ {sys.executable} -m dockrun "$@"; }}\n'
    last_run = ""
    for line in tour_lines():
        command = line.split("  #", 1)[0].strip()
        if "RUN_ID" in command:
            assert last_run, "the tour shows a run before it names RUN_ID"
            command = command.replace("RUN_ID", last_run)
        r = subprocess.run(["bash", "-c", prelude + command], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=900, stdin=subprocess.DEVNULL)
        shown = f"{line}\nexit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        assert r.returncode == expected_code(line), shown
        assert "Traceback" not in r.stderr, line
        runs = sorted((home / "runs").iterdir(), key=lambda p: p.stat().st_mtime) if (home / "runs").is_dir() else []
        if runs:
            last_run = runs[-1].name
    assert (tmp_path / "examples" / "scripts" / "requirements.lock").is_file()
