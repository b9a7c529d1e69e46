"""Images for CI and teams: `dockrun build`, a real registry, no duplicate builds, no secrets in
layers, housekeeping. Real engine, real registry."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conda_channel import conda_channel_fixture  # noqa: F401 - the session fixture
from conftest import image_files_containing, image_id, unavailable, write_project

pytestmark = pytest.mark.usefixtures("no_leaks")


def project_files(marker: str) -> dict[str, str]:
    return {
        "MLproject": """
            name: images-e2e
            python_env: python_env.yaml
            entry_points:
              main: "python -c 'import tabulate; print(\\"ran\\", tabulate.__version__)'"
        """,
        "python_env.yaml": "python: '3.11'\ndependencies: [tabulate==0.9.0]\n",
        "marker.txt": marker,  # a fresh source key per test: images nobody has built yet
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "images-e2e", project_files(str(uuid.uuid4())))


def _rmi(*refs: str) -> None:
    subprocess.run(["docker", "rmi", "-f", *refs], capture_output=True)


def test_build_prints_only_the_reference(cli, project: Path) -> None:
    r = cli("build", str(project))
    assert r.code == 0, r.err
    ref = r.out.strip()
    assert r.out == ref + "\n" and ref.startswith("dockrun-images-e2e:")
    assert image_id(ref)
    labels = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", ref],
                            capture_output=True, text=True, check=True).stdout
    assert '"dockrun.project":"images-e2e"' in labels and "dockrun.env-hash" in labels
    again = cli("build", str(project))
    assert again.out == r.out and "building" not in again.err


def test_push_twice_uploads_once_then_other_machine_pulls(cli, project: Path, registry) -> None:
    env = {"DOCKRUN_REGISTRY": f"{registry.address}/team"}
    first = cli("build", str(project), "--push", env=env)
    assert first.code == 0, first.err
    ref = first.out.strip()
    assert ref.startswith(f"{registry.address}/team/dockrun-images-e2e:")
    uploads = registry.uploads()
    assert uploads > 0
    second = cli("build", str(project), "--push", env=env)
    assert second.code == 0, second.err
    assert "already in the registry" in second.err and registry.uploads() == uploads

    # Another machine: no local images at all. `dockrun run` pulls and builds nothing.
    env_ref = next(line.split()[-1] for line in first.err.splitlines() if "dockrun-env:" in line
                   and line.startswith("pushing "))
    _rmi(ref, env_ref)
    assert image_id(ref) is None
    run = cli("run", str(project), env=env)
    assert run.code == 0, run.err
    assert "ran 0.9.0" in run.out
    assert "pulled" in run.err and "building" not in run.err


def test_build_tag_and_push_custom_reference(cli, project: Path, registry) -> None:
    target = f"{registry.address}/ci/myproject:{uuid.uuid4().hex[:8]}"
    r = cli("build", str(project), "--tag", target, "--push")
    assert r.code == 0, r.err
    assert r.out.strip() == target
    # The registry itself has the tag, and it names this very image (its config is the image ID).
    import urllib.request

    repo, tag = target.split("/", 1)[1].rsplit(":", 1)
    ask = urllib.request.Request(f"http://{registry.address}/v2/{repo}/manifests/{tag}",
                                 headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(ask, timeout=30) as reply:
        manifest = json.loads(reply.read())
    assert manifest["config"]["digest"] == image_id(target)


def test_four_processes_one_build(project: Path, home: Path, base_image: str) -> None:
    env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}
    procs = [subprocess.Popen([sys.executable, "-m", "dockrun.cli", "run", str(project)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-500:] for r in results]
    assert all("ran 0.9.0" in out for out, _ in results)
    builds = sum(err.count("building project image") for _, err in results)
    assert builds == 1, [err for _, err in results]


def test_no_secret_in_any_layer(project: Path, home: Path, base_image: str, tmp_path: Path) -> None:
    """Build with a CA bundle and an index URL carrying a token; `docker save` the image and
    search every layer and config for them."""
    secret = f"tok-{uuid.uuid4().hex}"
    ca = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    if not ca.is_file():
        unavailable(f"no host CA bundle at {ca} to test with")
    bundle = tmp_path / "bundle.pem"
    marker = f"# dockrun-test-marker {uuid.uuid4().hex}\n"
    bundle.write_text(marker + ca.read_text())
    # A different python_env so the environment image is built here, with these settings.
    (project / "python_env.yaml").write_text(
        f"python: '3.11'\ndependencies: [tabulate==0.9.0]  # {uuid.uuid4().hex}\nbuild_dependencies: [pip]\n")
    env = {**os.environ, "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image,
           "SSL_CERT_FILE": str(bundle), "PIP_CERT": str(bundle), "REQUESTS_CA_BUNDLE": str(bundle),
           "PIP_EXTRA_INDEX_URL": f"https://user:{secret}@127.0.0.1:9/simple"}
    r = subprocess.run([sys.executable, "-m", "dockrun.cli", "build", str(project), "--rebuild"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert image_files_containing([r.stdout.strip()], [secret, marker.strip()], tmp_path) == []


def test_conda_yaml_with_uv_runs_the_scientific_stack(cli) -> None:
    """examples/conda-uv: numpy, pandas, scikit-learn and pip: [mlflow-skinny, ...] from a conda.yaml, installed
    with uv (conda names translated, the python pin picks the interpreter)."""
    from conftest import REPO

    r = cli("run", str(REPO / "examples" / "conda-uv"), "--env-manager", "uv", "-P", "C=0.5", timeout=900)
    assert r.code == 0, r.err[-2000:]
    assert "accuracy    0.9778" in r.out and "mlflow " in r.out


def test_conda_yaml_with_micromamba(cli, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The micromamba path (`--env-manager micromamba`), built and run for real only where
    DOCKRUN_MICROMAMBA_IMAGE names an image with /bin/micromamba (e.g. mambaorg/micromamba): it is
    not a default, and Docker Hub is not reachable everywhere. Without it this test skips; the conda
    path CI runs is py-rattler's (tests/test_conda_e2e.py). The channel is the session's local one."""
    image = os.environ.get("DOCKRUN_MICROMAMBA_IMAGE")
    if not image:
        pytest.skip("DOCKRUN_MICROMAMBA_IMAGE is not set, so the micromamba path is not run (the conda path "
                    "with py-rattler is, in test_conda_e2e.py; the micromamba template is golden-tested)")
    if image_id(image) is None and subprocess.run(["docker", "pull", image], capture_output=True).returncode:
        unavailable(f"DOCKRUN_MICROMAMBA_IMAGE={image} is neither present nor pullable")
    project = write_project(tmp_path / "condaproj", {
        "MLproject": "name: condaproj\nconda_env: conda.yaml\nentry_points: {main: dockrun-demo}\n",
        "conda.yaml": "channels: [conda-forge]\ndependencies: [dockrun-demo=1.2]\n",
        "marker.txt": str(uuid.uuid4()),
    })
    channel = request.getfixturevalue("conda_channel")  # only now: built only when it will be used
    r = cli("run", str(project), "--env-manager", "micromamba", env=channel.env, timeout=1200)
    assert r.code == 0, r.err[-2000:]
    assert r.out.strip() == "dockrun-demo 1.2.0" and "(micromamba)" in r.err


def test_images_list_and_prune(cli, tmp_path: Path) -> None:
    name = f"prune-{uuid.uuid4().hex[:8]}"
    project = write_project(tmp_path / name, {"MLproject": f"name: {name}\nentry_points: {{main: 'true'}}\n"})
    assert cli("run", str(project)).code == 0
    listing = cli("images", "list")
    assert listing.code == 0 and name in listing.out and "LAST USED" in listing.out.splitlines()[0]
    ref = next(line.split()[0] for line in listing.out.splitlines() if name in line)
    kept = cli("images", "prune", "--project", name)  # used just now: not older than 30 days
    assert kept.code == 0 and kept.out.startswith("nothing to remove") and image_id(ref)
    pruned = cli("images", "prune", "--older-than", "0", "--project", name)
    assert pruned.code == 0 and pruned.out.strip() == f"removed {ref}"
    assert image_id(ref) is None and name not in cli("images", "list").out


def test_setting_a_registry_tags_what_is_here_instead_of_building_it(cli, project: Path, registry) -> None:
    local = cli("build", str(project))
    assert local.code == 0, local.err
    env = {"DOCKRUN_REGISTRY": f"{registry.address}/team"}
    r = cli("run", str(project), env=env)
    assert r.code == 0, r.err
    assert "building" not in r.err and "tagged it" in r.err
    assert "ran 0.9.0" in r.out
    prefixed = f"{registry.address}/team/{local.out.strip()}"
    assert image_id(prefixed) == image_id(local.out.strip())
    _rmi(prefixed)


def test_push_after_setting_a_registry_pushes_what_was_built_before_it(cli, project: Path, registry) -> None:
    # The README's order: `dockrun build` first, then DOCKRUN_REGISTRY set and `build --push`.
    local = cli("build", str(project))
    assert local.code == 0, local.err
    team = f"{registry.address}/team"
    pushed = cli("build", str(project), "--push", env={"DOCKRUN_REGISTRY": team})
    assert pushed.code == 0, pushed.err
    assert "building" not in pushed.err
    # "pushing REF", or "REF is already in the registry" when another test pushed this environment.
    env_ref = next(word for word in pushed.err.split() if word.startswith(f"{team}/dockrun-env:"))
    repo, tag = env_ref.split("/", 1)[1].rsplit(":", 1)
    import urllib.request

    with urllib.request.urlopen(f"http://{registry.address}/v2/{repo}/tags/list", timeout=30) as reply:
        assert tag in json.loads(reply.read())["tags"]
    _rmi(pushed.out.strip(), env_ref)
