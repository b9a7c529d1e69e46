"""`dockrun sweep`'s table shows what each run wrote in metrics.json: the run's file, written (on a
local engine) straight into a folder of this machine. A link the run made there is not followed (it
read any JSON or CSV file of the user's and put its numbers in the table), and the names of the
metrics reach the terminal escaped like every other name not dockrun's own. Through the real CLI
on the real engine."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_project

pytestmark = pytest.mark.usefixtures("no_leaks")

SCRIPT = """
if [ "$1" = 1 ]; then
  echo '{"\\u001b]0;owned\\u0007\\u001b[2Kacc": 1, "loss": 0.5}' > "$DOCKRUN_OUTPUT_DIR/metrics.json"
else
  ln -s "$2" "$DOCKRUN_OUTPUT_DIR/metrics.json"
fi
"""


def test_the_sweep_table_reads_only_the_runs_own_file_and_shows_its_names_escaped(
        cli, tmp_path: Path, base_image: str) -> None:
    secret = tmp_path / "users-own.json"  # a file of the user's the container never sees
    secret.write_text('{"secret_pin": 4242}')
    root = write_project(tmp_path / "proj", {"m.sh": SCRIPT, "MLproject": (
        f"name: swept\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n"
        "    parameters:\n      a: string\n      target: string\n    command: \"sh m.sh {a} {target}\"\n")})
    r = cli("sweep", "-q", str(root), "-P", "a=1,2", "-P", f"target={secret}")
    assert r.code == 0, r.err
    assert "\x1b" not in r.out + r.err and "\x07" not in r.out
    assert "\\x1b]0;owned\\x07\\x1b[2Kacc" in r.out and "loss" in r.out, r.out
    assert "secret_pin" not in r.out and "4242" not in r.out, r.out
