"""`dockrun runs rerun`: the same source, entry point, parameters and image again, through the real
CLI on the real engine."""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

from conftest import REPO


def run_ids(home: Path) -> list[str]:
    return sorted((p.name for p in (home / "runs").iterdir()), key=lambda n: (home / "runs" / n).stat().st_mtime)


def show(cli, run_id: str) -> dict:
    r = cli("runs", "show", run_id)
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_a_rerun_repeats_the_run_in_the_same_image_and_says_so(cli, tmp_path: Path, home: Path, no_leaks) -> None:
    project = tmp_path / "hello"
    shutil.copytree(REPO / "examples" / "hello", project)
    (project / "marker.txt").write_text(uuid.uuid4().hex)  # a project image of this test's own
    first = cli("run", str(project), "-q", "-P", "alpha=0.3")
    assert first.code == 0, first.err
    [original] = run_ids(home)
    rec = show(cli, original)
    assert rec["image_id"].startswith("sha256:")

    again = cli("runs", "rerun", original)
    assert again.code == 0, again.err
    assert f"rerun of {original}" in again.err and f"same image {rec['image_id']}" in again.err
    assert again.out == first.out.replace(original, run_ids(home)[-1])
    new = show(cli, run_ids(home)[-1])
    assert new["rerun_of"] == original and new["image_id"] == rec["image_id"]
    assert new["parameters"] == rec["parameters"] and new["source_key"] == rec["source_key"]

    changed = cli("runs", "rerun", original, "-P", "alpha=0.5")
    assert changed.code == 0, changed.err
    assert f"rerun of {original} with alpha=0.5" in changed.err
    assert show(cli, run_ids(home)[-1])["parameters"]["alpha"] == "0.5"
    assert "0.5" in changed.out


def test_a_rerun_whose_image_is_gone_is_rebuilt_and_compared(cli, tmp_path: Path, home: Path, no_leaks) -> None:
    project = tmp_path / "hello"
    shutil.copytree(REPO / "examples" / "hello", project)
    (project / "marker.txt").write_text(uuid.uuid4().hex)
    assert cli("run", str(project), "-q", "-P", "alpha=0.3").code == 0
    [original] = run_ids(home)
    record_file = tmp_path / "record.json"
    record_file.write_text(cli("runs", "show", original).out)
    image = json.loads(record_file.read_text())["image_id"]
    subprocess.run(["docker", "rmi", "-f", image], check=True, capture_output=True)

    r = cli("runs", "rerun", str(record_file))
    assert r.code == 0, r.err
    assert f"the run's image {image[:19]} is gone: building it again from the recorded source" in r.err
    assert "identical environment" in r.err


def test_a_rerun_of_changed_code_or_of_a_dev_run_says_why_it_cannot_be_exact(
        cli, tmp_path: Path, home: Path, no_leaks) -> None:
    project = tmp_path / "hello"
    shutil.copytree(REPO / "examples" / "hello", project)
    assert cli("run", str(project), "-q").code == 0
    [original] = run_ids(home)
    (project / "train.py").write_text((project / "train.py").read_text() + "\n# edited\n")
    r = cli("runs", "rerun", original)
    assert r.code == 2
    assert "is not the code that ran any more" in r.err and len(r.err.strip().splitlines()) == 1
    assert len(run_ids(home)) == 1

    dev = cli("run", "--dev", str(project), "-q")
    assert dev.code == 0, dev.err
    r = cli("runs", "rerun", run_ids(home)[-1])
    assert r.code == 2 and "was a --dev run" in r.err

    missing = cli("runs", "rerun", str(tmp_path / "nosuch.json"))
    assert missing.code == 2 and "no such file" in missing.err
