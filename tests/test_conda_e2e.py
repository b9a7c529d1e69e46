"""The conda path: conda.yaml installed with py-rattler from PyPI (no micromamba image, no public
conda channel), end to end through the real CLI against a real channel; how the installer is
chosen; the template; and the canonical conda specs checked against py-rattler's own parser."""
from __future__ import annotations

import os
import re
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conda_channel import Channel, conda_channel_fixture  # noqa: F401 - the session fixture
from conftest import image_files_containing, unavailable, write_project
from dockrun.config import load_settings
from dockrun.errors import ConfigError
from dockrun.images.build import env_context
from dockrun.images.conda_spec import canonical_conda
from dockrun.images.environment import env_spec, environment_key
from dockrun.images.plan import env_dockerfile, env_scripts
from dockrun.project.spec import load_project

# These tests are about the py-rattler path: a DOCKRUN_MICROMAMBA_IMAGE set on the machine must not
# switch them to micromamba.
RATTLER = {"DOCKRUN_MICROMAMBA_IMAGE": ""}
MLPROJECT = "name: conda-demo\nconda_env: conda.yaml\nentry_points:\n  main: dockrun-demo\n"


def _project(tmp_path: Path, deps: list[str], channels: str = "[conda-forge]", extra: str = "") -> Path:
    conda = f"channels: {channels}\ndependencies:\n" + "".join(f"  - {d!r}\n" for d in deps) + extra
    # A fresh marker per test: a new source key, so the run builds its project image here.
    return write_project(tmp_path / "conda-demo", {"MLproject": MLPROJECT, "conda.yaml": conda,
                                                   "marker.txt": uuid.uuid4().hex})


# ---- end to end: the real CLI, a real channel, the rattler installer ----------------------------

@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize(("spec", "channels", "version"), [
    ("dockrun-demo 1.2.*", "[conda-forge]", "1.2.0"),
    ("dockrun-demo=1.2", "[conda-forge]", "1.2.0"),
    ("dockrun-demo>=1.1,<1.3", "[conda-forge]", "1.2.0"),
    # The channel only in the spec: conda adds it; it is renamed by the map like any other.
    ("conda-forge::dockrun-demo", "[]", "1.3.0"),
])
def test_each_spec_form_installs_the_version_it_names(cli, conda_channel: Channel, tmp_path: Path,
                                                       spec: str, channels: str, version: str) -> None:
    r = cli("run", str(_project(tmp_path, [spec], channels)), env={**conda_channel.env, **RATTLER}, timeout=900)
    assert r.code == 0, r.err[-2000:]
    assert r.out.strip() == f"dockrun-demo {version}"
    assert "(conda)" in r.err  # the environment image was built by the rattler path


@pytest.mark.usefixtures("no_leaks")
def test_an_unsolvable_spec_is_one_line_naming_it(cli, conda_channel: Channel, tmp_path: Path) -> None:
    r = cli("run", str(_project(tmp_path, ["dockrun-demo 9.*"])), "--env-manager", "conda",
            env={**conda_channel.env, **RATTLER}, timeout=900)
    assert r.code == 1
    line = r.err.strip().splitlines()[-1]
    assert line.startswith("dockrun: error: building dockrun-env:"), r.err[-2000:]
    assert "conda environment: cannot install dockrun-demo 9.*" in line and conda_channel.url.rstrip("/") in line


@pytest.mark.usefixtures("no_leaks")
def test_a_pip_section_without_python_is_one_line(cli, conda_channel: Channel, tmp_path: Path) -> None:
    project = _project(tmp_path, ["dockrun-demo=1.1"], extra="  - pip: [tabulate]\n")
    r = cli("run", str(project), env={**conda_channel.env, **RATTLER}, timeout=900)
    assert r.code == 1
    assert "a pip: section needs python in the conda dependencies" in r.err.strip().splitlines()[-1]


def test_no_ca_marker_in_any_layer(conda_channel: Channel, home: Path, base_image: str, tmp_path: Path) -> None:
    """The host's CA bundle and index settings reach the install stage only: `docker save` the built
    image and search every layer and config for them."""
    ca = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    if not ca.is_file():
        unavailable(f"no host CA bundle at {ca} to test with")
    marker = f"# dockrun-test-marker {uuid.uuid4().hex}"
    secret = f"tok-{uuid.uuid4().hex}"
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(marker + "\n" + ca.read_text())
    project = _project(tmp_path, ["dockrun-demo>=1.1"])
    env = {**os.environ, **conda_channel.env, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image,
           "SSL_CERT_FILE": str(bundle), "PIP_CERT": str(bundle), "REQUESTS_CA_BUNDLE": str(bundle),
           "PIP_EXTRA_INDEX_URL": f"https://user:{secret}@127.0.0.1:9/simple"}
    env.pop("DOCKRUN_MICROMAMBA_IMAGE", None)
    r = subprocess.run(["python3", "-m", "dockrun.cli", "build", str(project), "--rebuild"], env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert image_files_containing([r.stdout.strip()], [marker, secret], tmp_path) == []


def test_env_manager_micromamba_needs_its_image(cli, tmp_path: Path) -> None:
    r = cli("run", str(_project(tmp_path, ["dockrun-demo"])), "--env-manager", "micromamba",
            env={"DOCKRUN_MICROMAMBA_IMAGE": ""})
    assert r.code == 2
    assert r.err.startswith("dockrun: error: --env-manager micromamba: DOCKRUN_MICROMAMBA_IMAGE is not set")


# ---- which installer, the key, the template (no Docker) ------------------------------------------

CONDA = "name: x\nchannels: [conda-forge]\ndependencies: [python=3.11, numpy=1.26, {pip: [mlflow>=2]}]\n"
MAMBA = "mambaorg/micromamba:1.5.10-bookworm-slim"


def _spec(tmp_path: Path, manager: str, environ: dict[str, str]):
    root = write_project(tmp_path / uuid.uuid4().hex, {"conda.yaml": CONDA})
    return env_spec(load_project(root), load_settings(environ), manager)


def test_rattler_unless_a_micromamba_image_is_set(tmp_path: Path) -> None:
    for manager in ("auto", "conda"):
        plain = _spec(tmp_path, manager, {})
        assert (plain.kind, plain.micromamba_image) == ("conda", None)
        assert (plain.base_image, plain.installer_image) == ("debian:bookworm-slim", "python:3.12-slim")
        mamba = _spec(tmp_path, manager, {"DOCKRUN_MICROMAMBA_IMAGE": MAMBA})
        assert (mamba.kind, mamba.micromamba_image, mamba.installer_image) == ("micromamba", MAMBA, None)
        assert environment_key(plain) != environment_key(mamba)  # the installer is part of the key
    based = _spec(tmp_path, "auto", {"DOCKRUN_BASE_IMAGE": "corp/base:1"})
    assert (based.base_image, based.installer_image) == ("corp/base:1", "corp/base:1")
    assert _spec(tmp_path, "micromamba", {"DOCKRUN_MICROMAMBA_IMAGE": MAMBA}).kind == "micromamba"
    with pytest.raises(ConfigError, match="DOCKRUN_MICROMAMBA_IMAGE is not set.*--env-manager conda"):
        _spec(tmp_path, "micromamba", {})


def test_conda_template(tmp_path: Path) -> None:
    from test_templates import _check, _plan

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
    plan, s = _plan(tmp_path, {"conda.yaml": CONDA}, {"SSL_CERT_FILE": str(ca),
                                                      "PIP_INDEX_URL": "https://u:tok@mirror.example/simple"})
    text = env_dockerfile(plan, s)
    _check("env-conda.Dockerfile", text)
    # pinned in the script both build paths run: same key, same installer
    assert re.search(r"py-rattler==\d+\.\d+\.\d+", env_scripts(plan)["tools.sh"])
    final = text.rsplit("\nFROM ", 1)[1]
    assert "ca.pem" not in final and "ARG" not in final and "tok" not in text
    with env_context(plan, s) as ctx, tarfile.open(fileobj=ctx) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "conda_install.py", "dockrun-ca.pem", "env.sh",
                                          "environment.json", "tools.sh"]
        _check("environment.json", tar.extractfile("environment.json").read().decode())


# ---- canonical specs, with py-rattler's MatchSpec as the oracle ----------------------------------

def _parsed(text: str) -> tuple:
    from rattler import MatchSpec

    m = MatchSpec(text)
    return (m.name.normalized, str(m.version) if m.version else None, m.build,
            m.channel.base_url if m.channel else None)


def _canonical(spec: str) -> str:
    import yaml

    with tempfile.TemporaryDirectory() as d:
        root = write_project(Path(d), {"conda.yaml": "dependencies:\n  - " + repr(spec) + "\n"})
        text, _ = canonical_conda(root, "conda.yaml")
    (line,) = yaml.safe_load(text)["dependencies"]
    return line


FORMS = ["dockrun-demo 1.2.*", "dockrun-demo=1.2", "dockrun-demo>=1.1,<1.3", "dockrun-demo >=1.1, <1.3",
         "conda-forge::dockrun-demo", "conda-forge::xgboost 2.0 py311_0", "tabulate==0.9.0=pyhd8ed1ab_0",
         "numpy 1.26.*", "Pandas=2.1", "python 3.11", "scipy!=1.11.0", "openssl 3.*"]


@pytest.mark.parametrize("spec", FORMS)
def test_canonical_line_means_what_the_original_meant(spec: str) -> None:
    assert _parsed(_canonical(spec)) == _parsed(spec)


_name = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4})?", fullmatch=True)
_ver = st.lists(st.integers(0, 30).map(str), min_size=1, max_size=3).map(".".join)
_op = st.sampled_from(["=", "==", ">=", "<=", ">", "<", "!="])
_spaced = st.sampled_from(["", " "])


@st.composite
def conda_specs(draw) -> str:
    channel = draw(st.sampled_from(["", "conda-forge::", "bioconda::", "my.chan::"]))
    name = draw(_name)
    form = draw(st.sampled_from(["bare", "space", "space-build", "op", "range", "exact-build"]))
    if form == "bare":
        rest = ""
    elif form == "space":
        rest = " " + draw(_ver) + draw(st.sampled_from(["", ".*"]))
    elif form == "space-build":
        rest = " " + draw(_ver) + " " + draw(st.from_regex(r"[a-z]{1,4}[0-9]{0,3}_[0-9]", fullmatch=True))
    elif form == "op":
        rest = draw(_spaced) + draw(_op) + draw(_ver)
    elif form == "range":
        rest = draw(_spaced) + ">=" + draw(_ver) + "," + draw(_spaced) + "<" + draw(_ver)
    else:
        rest = "==" + draw(_ver) + "=" + draw(st.from_regex(r"[a-z]{1,4}_[0-9]", fullmatch=True))
    return channel + name + rest


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conda_specs())
def test_generated_specs_keep_their_meaning(spec: str) -> None:
    assert _parsed(_canonical(spec)) == _parsed(spec), spec


# ---- conda lock: `dockrun lock` writes conda's explicit list; a build installs exactly it --------

@pytest.mark.usefixtures("no_leaks")
def test_lock_pins_the_older_version_and_the_build_installs_it(cli, conda_channel: Channel, tmp_path: Path) -> None:
    env = {**conda_channel.env, **RATTLER}
    root = _project(tmp_path, ["dockrun-demo>=1.1"])
    r = cli("run", "-q", str(root), env=env, timeout=900)
    assert (r.code, r.out.strip()) == (0, "dockrun-demo 1.3.0"), r.err[-2000:]  # unlocked: the newest

    # The lock of an environment that asks for 1.1, handed over without its header (a lock
    # without one is trusted as is): the project, which allows 1.3, installs 1.1.
    older = _project(tmp_path / "older", ["dockrun-demo=1.1"])
    r = cli("lock", "-q", str(older), env=env, timeout=900)
    assert r.code == 0, r.err[-2000:]
    lock = Path(r.out.strip())
    assert lock == older / "conda-lock.txt"
    text = lock.read_text()
    body = [line for line in text.splitlines() if not line.startswith("# ")]
    assert body[0] == "@EXPLICIT" and len(body) == 2
    assert re.fullmatch(re.escape(conda_channel.url) + r"noarch/dockrun-demo-1\.1\.0-\S+\.conda#[0-9a-f]{32}", body[1])
    assert "# platform: linux-64" in text.splitlines() and "dockrun-lock-input:" in text
    (root / "conda-lock.txt").write_text("".join(line + "\n" for line in text.splitlines()
                                                 if "dockrun-lock-input" not in line))
    r = cli("run", "-q", str(root), env=env, timeout=900)
    assert (r.code, r.out.strip()) == (0, "dockrun-demo 1.1.0"), r.err[-2000:]

    # An MD5 that is not the channel's fails the build, naming the lock.
    md5 = body[1].rsplit("#", 1)[1]
    (root / "conda-lock.txt").write_text(text.replace(md5, "0" * 32).replace(
        re.search(r"dockrun-lock-input: \S+\n", text).group(0), ""))
    r = cli("run", "-q", str(root), env=env, timeout=900)
    assert r.code == 1
    line = r.err.strip().splitlines()[-1]
    assert line.startswith("dockrun: error: building dockrun-env:") and "conda-lock.txt: dockrun-demo-1.1.0" in line
    assert f"MD5 {'0' * 32} in the lock, {md5} in the channel" in line

    # A lock written for another conda.yaml is refused before anything is built.
    (older / "conda.yaml").write_text((older / "conda.yaml").read_text().replace("=1.1", "=1.2"))
    r = cli("run", "-q", str(older), env=env)
    assert r.code == 2
    assert r.err.splitlines() == ["dockrun: error: conda-lock.txt: out of date: conda.yaml changed since it was "
                                  "written; run `dockrun lock` again (or delete it)"]
    r = cli("lock", "-q", str(older), env=env, timeout=900)  # locking again replaces it
    assert r.code == 0 and "dockrun-demo-1.2.0-" in (older / "conda-lock.txt").read_text()


@pytest.mark.usefixtures("no_leaks")
def test_an_unsolvable_lock_is_one_line_and_leaves_the_lock_alone(cli, conda_channel: Channel,
                                                                 tmp_path: Path) -> None:
    root = _project(tmp_path, ["dockrun-demo 9.*"])
    (root / "conda-lock.txt").write_text("@EXPLICIT\n")
    r = cli("lock", "-q", str(root), env={**conda_channel.env, **RATTLER}, timeout=900)
    assert r.code == 1
    assert r.err.splitlines()[-1].startswith("dockrun: error: dockrun lock: conda environment: cannot install "
                                             "dockrun-demo 9.*")
    assert (root / "conda-lock.txt").read_text() == "@EXPLICIT\n"
    assert sorted(p.name for p in root.iterdir()) == ["MLproject", "conda-lock.txt", "conda.yaml", "marker.txt"]
