"""`dockrun runs rerun`: the same source, entry point, parameters and image again, through the real
CLI on the real engine."""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

from conftest import REPO, write_project
from docker_bridge import serve_on_bridge
from wheels import pure_wheel


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


def test_a_record_file_reruns_elsewhere_from_the_registry_in_the_same_image(
        cli, tmp_path: Path, home: Path, registry, no_leaks) -> None:
    project = tmp_path / "hello"
    shutil.copytree(REPO / "examples" / "hello", project)
    (project / "marker.txt").write_text(uuid.uuid4().hex)
    env = {"DOCKRUN_REGISTRY": f"{registry.address}/team"}
    pushed = cli("build", str(project), "--push", "-q", env=env)
    assert pushed.code == 0, pushed.err
    first = cli("run", str(project), "-q", "-P", "alpha=0.3", env=env)
    assert first.code == 0, first.err
    [original] = run_ids(home)
    record_file = tmp_path / "record.json"
    record_file.write_text(cli("runs", "show", original).out)
    image = json.loads(record_file.read_text())["image_id"]

    # Another machine: none of this machine's images or records, only the registry and the file.
    subprocess.run(["docker", "rmi", "-f", image], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere-home"
    r = cli("runs", "rerun", str(record_file), env={**env, "DOCKRUN_HOME": str(elsewhere)})
    assert r.code == 0, r.err
    assert f"same image {image}" in r.err and "building" not in r.err
    assert r.out.splitlines()[:5] == first.out.splitlines()[:5]  # the same table: alpha, w, loss


def test_a_reruns_quiet_and_verbose_are_runs_own(cli, tmp_path: Path, home: Path, no_leaks) -> None:
    """`runs rerun -q` and `--verbose` mean what they mean on `run` (argv.OUTPUT_FLAGS' help says
    so): quiet still shows why a build failed, verbose shows the engine's whole log."""
    tag = uuid.uuid4().hex[:12]  # a requirement no other build has: its environment is built here
    wheels = tmp_path / "wheels" / tag
    wheels.mkdir(parents=True)
    wheel = pure_wheel(str(wheels), "rerunpkg", "1.0", {"rerunpkg/__init__.py": ""})
    project = write_project(tmp_path / "p", {"MLproject": f"""
        name: rerun{tag}
        entry_points:
          main:
            command: "python -c 'import rerunpkg; print(1)'"
    """})
    with serve_on_bridge(wheels.parent, f"{tag}/{wheel}") as url:
        (project / "requirements.txt").write_text(f"rerunpkg @ {url}{tag}/{wheel}\n")
        first = cli("run", str(project), "-q")
        assert first.code == 0, first.err
    [original] = run_ids(home)
    # Its images gone and its wheel no longer served: building the same environment again fails
    # (the classic builder: no package cache that still holds the wheel).
    project_image = show(cli, original)["image_id"]
    env_hash = subprocess.run(["docker", "image", "inspect", "-f", '{{index .Config.Labels "dockrun.env-hash"}}',
                               project_image], capture_output=True, text=True, check=True).stdout.strip()
    env_images = subprocess.run(["docker", "images", "-q", "--no-trunc", "--filter",
                                 f"label=dockrun.env-hash={env_hash}"],
                                capture_output=True, text=True, check=True).stdout.split()
    # The project image first: the engine refuses to remove an image another one is built on, and
    # the project image carries the environment's labels too.
    others = [i for i in dict.fromkeys(env_images) if i != project_image]
    subprocess.run(["docker", "rmi", "-f", project_image, *others], check=True, capture_output=True)
    env = {"DOCKRUN_ENV_BUILD": "classic"}

    quiet = cli("runs", "rerun", original, "-q", env=env)
    assert quiet.code == 1, quiet.err
    assert quiet.err.splitlines()[-1].startswith("dockrun: error: building ")
    assert "Failed to download `rerunpkg" in quiet.err  # the failing step's own output, above the error
    assert "rerun of" not in quiet.err and "Step 1/" not in quiet.err

    verbose = cli("runs", "rerun", original, "--verbose", env=env)
    assert verbose.code == 1, verbose.err
    assert "Step 1/" in verbose.err and "Failed to download `rerunpkg" in verbose.err
