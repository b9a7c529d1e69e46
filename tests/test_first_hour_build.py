"""A new user's first hour, the builds: outside a terminal (a CI log, a pipe, the sweep driver) a build
is one line per image with its time, not the engine's log; a failure shows its failing step's own
output once and ends in one line; --verbose shows everything. Through the real CLI."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from conftest import REPO, free_port, image_id, unavailable

ENGINE_LINES = re.compile(r"^(Step \d+/\d+ : | ---> |Removing intermediate container |Successfully (built|tagged) )")


def _hello(tmp_path: Path) -> Path:
    root = tmp_path / "hello"
    shutil.copytree(REPO / "examples" / "hello", root)
    return root


def test_a_code_only_build_is_one_line_with_its_time_among_the_runs_output(cli, tmp_path: Path, no_leaks) -> None:
    root = _hello(tmp_path)
    assert cli("build", "-q", str(root)).code == 0  # the environment is there: what follows is code only
    (root / "train.py").write_text((root / "train.py").read_text() + f"# {os.urandom(8).hex()}\n")  # new code
    r = cli("run", str(root), "-P", "alpha=0.3")
    assert r.code == 0, r.err
    assert [line for line in r.err.splitlines() if ENGINE_LINES.match(line)] == [], r.err
    stages = [line for line in r.err.splitlines() if line.startswith("building ")]
    assert len(stages) == 1 and re.fullmatch(r"building project image dockrun-hello:\S+ \.\.\. \d+\.\d s",
                                             stages[0]), r.err
    assert "alpha" in r.out  # the run's own output is all that follows

    (root / "train.py").write_text((root / "train.py").read_text() + f"# sweep {os.urandom(8).hex()}\n")
    sweep = cli("sweep", str(root), "-P", "alpha=0.1,0.2", "--parallel", "2")
    assert sweep.code == 0, sweep.err
    assert [line for line in sweep.err.splitlines() if ENGINE_LINES.match(line)] == [], sweep.err
    assert len([line for line in sweep.err.splitlines() if line.startswith("building project image ")]) == 1

    (root / "train.py").write_text((root / "train.py").read_text() + f"# verbose {os.urandom(8).hex()}\n")
    verbose = cli("build", "--verbose", str(root))
    assert verbose.code == 0, verbose.err
    # Everything: how the code layer was made (a commit, no builder steps) and the engine's last line.
    assert any(line.startswith("code layer on ") and "COPY project/" in line for line in verbose.err.splitlines())
    assert "Successfully tagged dockrun-hello:" in verbose.err


def test_a_failing_install_step_shows_its_output_once_and_one_line_naming_the_step(cli, tmp_path: Path) -> None:
    root = _hello(tmp_path)
    # No such version (or, offline, no index): the install step fails either way, after printing why.
    (root / "python_env.yaml").write_text('python: "3.11"\ndependencies:\n  - tabulate==0.0.0.dev987654321\n')
    r = cli("build", str(root))
    assert r.code == 1
    lines = r.err.strip().splitlines()
    # The build container's path (the default here) or the classic builder's: either way the stage
    # line, the failing step's own output once, and one line that ends with its last line.
    assert re.fullmatch(r"building environment image dockrun-env:\S+ \(uv\)[^.]* \.\.\. failed after \d+\.\d s",
                        lines[0]), r.err
    assert r.err.count("uv pip install") <= 1, r.err  # the command at most once: in a step's own line
    assert r.err.count("No solution found") == 1, r.err  # the step's output once
    assert [line for line in lines[1:] if ENGINE_LINES.match(line) and not line.startswith("Step ")] == [], r.err
    error = lines[-1]
    assert re.fullmatch(r"dockrun: error: building \S+.* failed (at step \d+/\d+ )?\(.*exit code \d+\): .+",
                        error), r.err
    assert error.endswith(lines[-2].strip())  # the step's last line of output says why
    assert all(len(line) > 2 for line in lines), r.err  # lines are whole, not the engine's pieces

    quiet = cli("build", "-q", str(root))  # -q: no progress, but a failure still says why
    assert quiet.code == 1 and quiet.err.strip().splitlines() == lines[1:], quiet.err


def test_images_list_fits_120_columns_when_an_image_has_several_names(cli, tmp_path: Path) -> None:
    root = _hello(tmp_path)
    (root / "train.py").write_text((root / "train.py").read_text() + f"# {os.urandom(8).hex()}\n")
    built = cli("build", "-q", str(root))
    assert built.code == 0, built.err
    ref = built.out.strip()
    # Set later: what is here is tagged under the registry's name, not built or pulled again.
    registry = f"127.0.0.1:{free_port()}/a-rather-long-team-name/and-a-group"
    again = cli("build", "-q", str(root), env={"DOCKRUN_REGISTRY": registry})
    try:
        assert again.code == 0 and again.out.strip() == f"{registry}/{ref}", again.err
        listed = cli("images", "list")
        assert listed.code == 0, listed.err
        lines = listed.out.splitlines()
        assert max(len(line) for line in lines) <= 120, listed.out
        row = next(i for i, line in enumerate(lines) if line.startswith(ref + " "))
        assert lines[row + 1] == f"  {registry}/{ref}", listed.out  # its other name, on a line of its own
    finally:  # the names this test gave (the environment image's registry name too), and its code image
        names = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                               text=True).stdout.split()
        subprocess.run(["docker", "rmi", *(n for n in names if n.startswith(registry + "/")), ref],
                       capture_output=True)


def test_gpus_on_an_engine_without_a_gpu_runtime_is_one_line_before_anything_is_built(cli, home: Path,
                                                                                      tmp_path: Path) -> None:
    runtimes = subprocess.run(["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True)
    if "nvidia" in runtimes.stdout.lower():
        unavailable("this engine has an NVIDIA runtime: the no-GPU case cannot be seen here")
    root = _hello(tmp_path)
    (root / "train.py").write_text((root / "train.py").read_text() + f"# {os.urandom(8).hex()}\n")  # would build
    for args in (("run", str(root), "-A", "gpus=all"), ("shell", str(root), "-A", "gpus=all", "--", "true")):
        r = cli(*args)
        assert r.code == 2, r.err
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            "dockrun: error: --docker-args gpus=all: this Docker engine has no GPU runtime (its runtimes: "), r.err
        assert "nvidia-ctk runtime configure" in lines[0]
    assert not (home / "runs").exists()


def test_a_tag_run_before_runs_its_last_commit_when_the_repository_has_moved(cli, tmp_path: Path,
                                                                             base_image: str) -> None:
    from git_fixtures import commit, git

    work, bare = tmp_path / "work", tmp_path / "repo.git"
    work.mkdir()
    git("init", "-q", cwd=work)
    first = commit(work, {"MLproject": f"name: moved\ndocker_env:\n  image: {base_image}\n"
                                       "entry_points:\n  main:\n    command: \"python3 -c 'print(1 + 1)'\"\n"}, "one")
    git("tag", "v1", cwd=work)
    git("clone", "-q", "--bare", str(work), str(bare))
    uri = f"file://{bare}"
    r = cli("run", uri, "-v", "v1")
    assert r.code == 0 and r.out.strip() == "2", r.err

    bare.rename(tmp_path / "elsewhere.git")  # the repository moved away: git says "not found"
    pinned = cli("run", uri, "-v", first)
    assert pinned.code == 0 and pinned.out.strip() == "2", pinned.err
    tagged = cli("run", uri, "-v", "v1")
    assert tagged.code == 0 and tagged.out.strip() == "2", tagged.err
    assert tagged.err.strip().splitlines() == [
        f"dockrun: warning: {uri}: repository not found; using commit {first[:12]}, which v1 named when last reached"]
    never = cli("run", uri, "-v", "v2")  # never resolved: still the error
    assert never.code == 2 and never.err.strip() == f"dockrun: error: {uri}: repository not found"


def test_a_tag_docker_cannot_take_is_one_line_before_anything_is_built(cli, tmp_path: Path) -> None:
    project = _hello(tmp_path)
    (project / "marker.txt").write_text(str(tmp_path))  # a source key no image has yet
    name = f"dockrun-tag-check-{os.getpid()}"
    # `--tag registry:5000/ml/forecast:$GIT_SHA` (the README's line) with GIT_SHA unset; capitals.
    for tag in (f"127.0.0.1:5000/ml/{name}:", f"Team/{name}:v1", f"-{name}"):
        r = cli("build", str(project), "--tag", tag)
        assert r.code == 2, r.err
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"dockrun: error: --tag {tag!r}: expected"), r.err
        assert r.out == ""
    assert image_id(f"127.0.0.1:5000/ml/{name}") is None  # not tagged `latest` instead
    ok = cli("build", str(project), "--tag", f"127.0.0.1:5000/ml/{name}:v1.0_rc-1", "-q")
    assert ok.code == 0 and ok.out.strip() == f"127.0.0.1:5000/ml/{name}:v1.0_rc-1", ok.err
    built = cli("build", str(project), "-q").out.strip()
    subprocess.run(["docker", "rmi", ok.out.strip(), built], capture_output=True)
