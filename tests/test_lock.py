"""Lock files: `dockrun lock` writes requirements.lock; a present lock is what the environment
installs, and part of its key. Unit tests need no Docker; the e2e test resolves from PyPI."""
from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import REPO, check_golden, write_project
from dockrun.config import load_settings
from dockrun.errors import ConfigError, ProjectError
from dockrun.images import templates
from dockrun.images.build import env_context
from dockrun.images.environment import env_spec, environment_key
from dockrun.images.plan import env_dockerfile, env_scripts, plan_images
from dockrun.images.requirements_lock import lock_header, lock_input_digest
from dockrun.locking import UV_PIN, lock_project
from dockrun.project.folder import resolve_folder
from dockrun.project.spec import load_project
from dockrun.request import RunRequest

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = load_settings({"DOCKRUN_BASE_IMAGE": "base:1"})
ENV = "python: '3.11'\ndependencies: ['tabulate>=0.8']\n"
A, B, C = "a" * 64, "b" * 64, "c" * 64
LOCK = f"tabulate==0.9.0 \\\n    --hash=sha256:{A} \\\n    --hash=sha256:{B}\n    # via -r requirements.in\n"


def spec_of(root: Path, files: dict[str, str], manager: str = "auto"):
    write_project(root, files)
    return env_spec(load_project(root), SETTINGS, manager)


def key_of(root: Path, files: dict[str, str]) -> str:
    return environment_key(spec_of(root, files))


def test_a_lock_beside_the_environment_file_is_installed_and_keyed(tmp_path: Path) -> None:
    plain = spec_of(tmp_path / "a", {"python_env.yaml": ENV})
    locked = spec_of(tmp_path / "b", {"python_env.yaml": ENV, "requirements.lock": LOCK})
    assert plain.lock is None
    assert locked.lock == (f"tabulate==0.9.0 --hash=sha256:{A} --hash=sha256:{B}",)
    assert locked.requirements == plain.requirements == ("tabulate>=0.8",)
    assert environment_key(locked) != environment_key(plain)


def test_same_lock_same_key_however_it_is_written(tmp_path: Path) -> None:
    first = key_of(tmp_path / "a", {"python_env.yaml": ENV, "requirements.lock": LOCK})
    # One line, hashes swapped, the name in another case, other comments and blank lines.
    again = f"# mine\n\nTabulate==0.9.0 --hash=sha256:{B}  --hash sha256:{A}\n"
    assert key_of(tmp_path / "b", {"python_env.yaml": ENV, "requirements.lock": again}) == first


@pytest.mark.parametrize("changed", [LOCK.replace("0.9.0", "0.8.10"), LOCK.replace(B, C)],
                         ids=["pin", "hash"])
def test_a_changed_pin_or_hash_is_a_new_key(tmp_path: Path, changed: str) -> None:
    first = key_of(tmp_path / "a", {"python_env.yaml": ENV, "requirements.lock": LOCK})
    assert key_of(tmp_path / "b", {"python_env.yaml": ENV, "requirements.lock": changed}) != first


def test_requirements_txt_lock_in_the_root_and_python_env_lock_beside_its_file(tmp_path: Path) -> None:
    assert spec_of(tmp_path / "a", {"requirements.txt": "tabulate\n", "requirements.lock": LOCK}).lock
    nested = {"MLproject": "python_env: env/python_env.yaml\n", "env/python_env.yaml": ENV}
    assert spec_of(tmp_path / "b", {**nested, "requirements.lock": LOCK}).lock is None  # not beside it
    assert spec_of(tmp_path / "c", {**nested, "env/requirements.lock": LOCK}).lock


def test_conda_projects_ignore_a_lock(tmp_path: Path) -> None:
    files = {"conda.yaml": "dependencies: [tabulate]\n", "requirements.lock": "not a lock at all\n"}
    assert spec_of(tmp_path / "a", files, manager="uv").lock is None


def test_a_lock_written_for_other_requirements_is_refused(tmp_path: Path) -> None:
    header = lock_header("python_env.yaml", lock_input_digest("3.11", ("tabulate>=0.8",)))
    assert spec_of(tmp_path / "a", {"python_env.yaml": ENV, "requirements.lock": header + LOCK}).lock
    edited = ENV.replace("'tabulate>=0.8'", "'tabulate>=0.8', six")
    with pytest.raises(ProjectError, match=r"requirements.lock: out of date: python_env.yaml changed"):
        spec_of(tmp_path / "b", {"python_env.yaml": edited, "requirements.lock": header + LOCK})
    with pytest.raises(ProjectError, match="out of date"):  # the Python version is part of it too
        spec_of(tmp_path / "c", {"python_env.yaml": ENV.replace("3.11", "3.12"), "requirements.lock": header + LOCK})


@pytest.mark.parametrize(("lock", "expected"), [
    (f"tabulate>=0.8 --hash=sha256:{A}\n", "not pinned to one version"),
    (f"tabulate==0.9.* --hash=sha256:{A}\n", "not pinned to one version"),
    ("tabulate==0.9.0\n", "has no --hash"),
    (f"--index-url https://x/simple\ntabulate==0.9.0 --hash=sha256:{A}\n", "option '--index-url'"),
    ("tabulate==0.9.0 ; python_version >>> '3' --hash=sha256:x\n", "not a valid requirement"),
    ("\udcff\n", "not a text file"),
])
def test_bad_locks_are_one_line_errors(tmp_path: Path, lock: str, expected: str) -> None:
    with pytest.raises(ProjectError, match=re.escape(expected)) as e:
        write_project(tmp_path, {"requirements.txt": "tabulate\n"})
        (tmp_path / "requirements.lock").write_bytes(lock.encode("utf-8", "surrogateescape"))
        env_spec(load_project(tmp_path), SETTINGS)
    assert str(e.value).startswith("requirements.lock: ") and "\n" not in str(e.value)


def test_the_build_context_carries_the_lock_and_the_template_requires_hashes(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"python_env.yaml": ENV, "requirements.lock": LOCK})
    project = load_project(root)
    env = env_spec(project, SETTINGS)
    plan = plan_images(project, resolve_folder(str(root)), env, SETTINGS)
    with env_context(plan, SETTINGS) as ctx, tarfile.open(fileobj=ctx) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "env.sh", "requirements.lock", "tools.sh"]
        assert tar.extractfile("requirements.lock").read().decode() == env.lock[0] + "\n"
    text = env_dockerfile(plan, SETTINGS)
    check_golden(GOLDEN / "env-uv-locked.Dockerfile", text)
    assert "COPY env.sh requirements.lock" in text and "requirements.txt" not in text
    script = env_scripts(plan)["env.sh"]  # what both build paths run
    assert "set -- --require-hashes --no-deps --requirement /tmp/dockrun/in/requirements.lock" in script
    assert "requirements.txt" not in script


def test_lock_resolves_with_the_uv_the_template_installs() -> None:
    assert f"pip install --quiet {UV_PIN}\n" in templates.template_source("tools.sh.j2")


@pytest.mark.parametrize("uri", ["https://github.com/org/repo.git", "proj.tar.gz"])
def test_lock_needs_a_local_folder(uri: str) -> None:
    with pytest.raises(ConfigError, match="must be a local folder, not a Git URI or an archive"):
        lock_project(RunRequest(uri=uri))


@pytest.mark.parametrize("files", [{"MLproject": "docker_env: {image: img:1}\n"}, {"train.py": ""}],
                         ids=["docker", "none"])
def test_lock_is_for_python_and_conda_environments_only(tmp_path: Path, files: dict[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKRUN_HOME", str(tmp_path / "home"))
    root = write_project(tmp_path / "p", files)
    p = subprocess.run([sys.executable, "-m", "dockrun.cli", "lock", str(root)], cwd=REPO,
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.splitlines() == ["dockrun: error: dockrun lock: lock files are for python and conda "
                                     "environments (python_env.yaml, requirements.txt, conda.yaml); this "
                                     "project's environment is none of them"]
    assert sorted(f.name for f in root.iterdir()) == sorted(files)  # nothing written


def test_a_conda_lock_with_micromamba_is_one_line(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"conda.yaml": "dependencies: [numpy]\n", "conda-lock.txt": "@EXPLICIT\n"})
    with pytest.raises(ConfigError, match=r"^conda-lock.txt: installing a conda lock needs the py-rattler"):
        env_spec(load_project(root), load_settings({"DOCKRUN_MICROMAMBA_IMAGE": "m:1"}))


# ---- end to end: PyPI through the host's CA, as FACTS.md says --------------------------------

def test_lock_then_run_installs_exactly_the_lock_and_a_tampered_hash_fails(cli, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {
        "python_env.yaml": "python: '3.11'\ndependencies: ['tabulate>=0.8']\n",
        "MLproject": """
            name: locked
            python_env: python_env.yaml
            entry_points:
              main:
                command: "python -c 'import tabulate; print(\\"tabulate\\", tabulate.__version__)'"
        """,
    })
    r = cli("lock", "-q", str(root))
    assert r.code == 0, r.err
    lock = root / "requirements.lock"
    assert r.out.strip() == str(lock)
    text = lock.read_text()
    pinned = re.search(r"^tabulate==(\S+) \\$", text, re.M)
    assert pinned, text
    assert re.search(r"--hash=sha256:[0-9a-f]{64}", text)

    r = cli("run", "-q", str(root))
    assert r.code == 0, r.err
    assert r.out.strip() == f"tabulate {pinned.group(1)}"

    # An older version than the resolver picks for tabulate>=0.8, from a lock written for it and
    # handed over without its header (a lock without one is trusted as is): the run installs it.
    other = write_project(tmp_path / "old", {"requirements.txt": "tabulate==0.8.10\n"})
    assert cli("lock", "-q", str(other)).code == 0
    lock.write_text("".join(line + "\n" for line in (other / "requirements.lock").read_text().splitlines()
                            if "dockrun-lock-input" not in line))
    r = cli("run", "-q", str(root))
    assert r.code == 0, r.err
    assert r.out.strip() == "tabulate 0.8.10"

    lock.write_text(re.sub(r"sha256:[0-9a-f]{8}", "sha256:00000000", text))
    r = cli("run", "-q", str(root))
    assert r.code == 1
    errors = [line for line in r.err.splitlines() if line.startswith("dockrun: error:")]
    assert len(errors) == 1 and r.err.splitlines()[-1] == errors[0]
    assert "building dockrun-env:" in errors[0] and "Hash mismatch" in r.err


def test_an_unresolvable_environment_leaves_the_lock_as_it_was(cli, tmp_path: Path, base_image: str) -> None:
    root = write_project(tmp_path / "p", {"requirements.txt": "tabulate==99.0\n", "requirements.lock": LOCK})
    r = cli("lock", "-q", str(root))
    assert r.code == 1
    assert r.err.splitlines()[-1] == ("dockrun: error: dockrun lock: resolving the requirements in "
                                      f"{base_image} "
                                      "failed (exit 1)")
    assert "tabulate==99.0" in r.err  # uv's reason, before the error line
    assert (root / "requirements.lock").read_text() == LOCK


def test_a_requirements_file_with_hashes_is_installed_as_a_lock(tmp_path: Path) -> None:
    """pip-compile --generate-hashes output (once refused as "an option") is a lock already."""
    from conftest import write_project
    from dockrun.config import load_settings
    from dockrun.images.environment import env_spec
    from dockrun.project.spec import load_project

    compiled = ("#\n# This file is autogenerated by pip-compile\n#\ntabulate==0.9.0 \\\n"
                "    --hash=sha256:0095b12bf5966de529c0feb1fa08671671b3368eec77d7ef7ab114be2c068b3c \\\n"
                "    --hash=sha256:024ca478df22e9340661486f85298cff5f6dcdba14f3813e8830015b9ed1948f\n"
                "    # via -r requirements.in\n")
    root = write_project(tmp_path / "p", {"requirements.txt": compiled})
    spec = env_spec(load_project(root), load_settings({"DOCKRUN_BASE_IMAGE": "b:1"}))
    assert spec.requirements == () and spec.lock == (
        "tabulate==0.9.0 --hash=sha256:0095b12bf5966de529c0feb1fa08671671b3368eec77d7ef7ab114be2c068b3c "
        "--hash=sha256:024ca478df22e9340661486f85298cff5f6dcdba14f3813e8830015b9ed1948f",)


# ---- conda locks (conda's explicit list, conda-lock.txt) ------------------------------------

CONDA_ENV = "channels: [conda-forge]\ndependencies: ['dockrun-demo>=1.1']\n"
URL = "https://conda.example/conda-forge/noarch/dockrun-demo-1.1.0-h0_0.conda"
URL2 = "https://conda.example/conda-forge/linux-64/libx-2.0-h1_0.tar.bz2"
CONDA_LOCK = f"# platform: linux-64\n@EXPLICIT\n{URL}#{'1' * 32}\n{URL2}#{'2' * 32}\n"


def test_a_conda_lock_is_installed_and_keyed_however_it_is_written(tmp_path: Path) -> None:
    plain = spec_of(tmp_path / "a", {"conda.yaml": CONDA_ENV})
    locked = spec_of(tmp_path / "b", {"conda.yaml": CONDA_ENV, "conda-lock.txt": CONDA_LOCK})
    assert plain.lock is None and plain.kind == locked.kind == "conda"
    assert locked.lock == ("# platform: linux-64", "@EXPLICIT", f"{URL2}#{'2' * 32}", f"{URL}#{'1' * 32}")  # sorted
    assert environment_key(locked) != environment_key(plain)
    reordered = f"# mine\n@EXPLICIT\n\n{URL2}#{'2' * 32}\n# platform: linux-64\n{URL}#{'1' * 32}\n"
    assert environment_key(spec_of(tmp_path / "c", {"conda.yaml": CONDA_ENV, "conda-lock.txt": reordered})) \
        == environment_key(locked)
    other_md5 = CONDA_LOCK.replace("1" * 32, "3" * 32)
    assert environment_key(spec_of(tmp_path / "d", {"conda.yaml": CONDA_ENV, "conda-lock.txt": other_md5})) \
        != environment_key(locked)
    # beside the conda file it belongs to, not elsewhere
    nested = {"MLproject": "conda_env: env/conda.yaml\n", "env/conda.yaml": CONDA_ENV}
    assert spec_of(tmp_path / "e", {**nested, "conda-lock.txt": CONDA_LOCK}).lock is None
    assert spec_of(tmp_path / "f", {**nested, "env/conda-lock.txt": CONDA_LOCK}).lock


def test_the_conda_build_context_carries_the_lock(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"conda.yaml": CONDA_ENV, "conda-lock.txt": CONDA_LOCK})
    project = load_project(root)
    env = env_spec(project, SETTINGS)
    plan = plan_images(project, resolve_folder(str(root)), env, SETTINGS)
    with env_context(plan, SETTINGS) as ctx, tarfile.open(fileobj=ctx) as tar:
        assert "conda-lock.txt" in tar.getnames()
        assert tar.extractfile("conda-lock.txt").read().decode() == "".join(line + "\n" for line in env.lock)
    text = env_dockerfile(plan, SETTINGS)
    assert "COPY env.sh conda_install.py environment.json conda-lock.txt /tmp/dockrun/in/" in text
    assert "/opt/dockrun/installed.json /tmp/dockrun/in/conda-lock.txt\n" in env_scripts(plan)["env.sh"]


def test_a_stale_conda_lock_is_refused(tmp_path: Path) -> None:
    from dockrun.images.conda_lock import conda_lock_digest, conda_lock_header
    from dockrun.images.conda_spec import canonical_conda

    root = write_project(tmp_path / "a", {"conda.yaml": CONDA_ENV})
    header = conda_lock_header("conda.yaml", conda_lock_digest(canonical_conda(root, "conda.yaml")[0]))
    (root / "conda-lock.txt").write_text(header + CONDA_LOCK)
    assert env_spec(load_project(root), SETTINGS).lock
    # A channel map (a mirror) is not an edit of the file: the lock stays valid.
    assert env_spec(load_project(root), load_settings({"DOCKRUN_CONDA_CHANNEL_MAP": "conda-forge=https://m/cf"})).lock
    (root / "conda.yaml").write_text(CONDA_ENV.replace(">=1.1", ">=1.2"))
    with pytest.raises(ProjectError, match=r"^conda-lock.txt: out of date: conda.yaml changed since it was written"):
        env_spec(load_project(root), SETTINGS)


@pytest.mark.parametrize(("lock", "expected"), [
    (f"{URL}#{'1' * 32}\n", "conda-lock.txt: no @EXPLICIT line"),
    (f"@EXPLICIT\n{URL}\n", "conda-lock.txt: line 2: expected a package as URL#MD5"),
    (f"@EXPLICIT\n{URL}#abc\n", "conda-lock.txt: line 2: expected a package as URL#MD5"),
    ("@EXPLICIT\ndockrun-demo=1.1\n", "conda-lock.txt: line 2: expected a package as URL#MD5"),
    ("\udcff\n", "conda-lock.txt: not a text file"),
])
def test_bad_conda_locks_are_one_line_errors(tmp_path: Path, lock: str, expected: str) -> None:
    root = write_project(tmp_path, {"conda.yaml": CONDA_ENV})
    (root / "conda-lock.txt").write_bytes(lock.encode("utf-8", "surrogateescape"))
    with pytest.raises(ProjectError, match=re.escape(expected)) as e:
        env_spec(load_project(root), SETTINGS)
    assert "\n" not in str(e.value)


def test_conda_lock_solves_with_the_installer_the_template_installs() -> None:
    from dockrun.locking import RATTLER_PIN

    assert f"pip install --quiet {RATTLER_PIN}\n" in templates.template_source("tools.sh.j2")
