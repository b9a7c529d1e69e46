"""Images for CI and teams: `dockrun build`, a real registry, no duplicate builds, no secrets in
layers, housekeeping. Real engine, real registry."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from conftest import image_id, write_project

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
    inspect = subprocess.run(["docker", "manifest", "inspect", "--insecure", target], capture_output=True, text=True)
    assert inspect.returncode == 0 or "pushing " + target in r.err


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
        pytest.skip("no host CA bundle to test with")
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
    ref = r.stdout.strip()
    saved = tmp_path / "image.tar"
    subprocess.run(["docker", "save", "-o", str(saved), ref], check=True)
    needles = [secret.encode(), marker.strip().encode()]
    with tarfile.open(saved) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            if member.name.endswith(".tar"):
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for f in layer.getmembers():
                        if f.isfile():
                            content = layer.extractfile(f).read()
                            assert not any(n in content for n in needles), f"{member.name}:{f.name}"
            else:
                assert not any(n in data for n in needles), member.name


def test_conda_yaml_with_uv_runs_the_scientific_stack(cli) -> None:
    """examples/conda-uv: numpy, pandas, scikit-learn and pip: [mlflow] from a conda.yaml, installed
    with uv (conda names translated, the python pin picks the interpreter)."""
    from conftest import REPO

    r = cli("run", str(REPO / "examples" / "conda-uv"), "--env-manager", "uv", "-P", "C=0.5", timeout=900)
    assert r.code == 0, r.err[-2000:]
    assert "accuracy    0.9778" in r.out and "mlflow " in r.out


def test_conda_yaml_with_micromamba(cli, tmp_path: Path) -> None:
    """The micromamba path, built and run for real where a micromamba image is configured (an image
    with /bin/micromamba, e.g. mambaorg/micromamba, and a reachable conda channel)."""
    image = os.environ.get("DOCKRUN_MICROMAMBA_IMAGE")
    if not image:
        pytest.skip("DOCKRUN_MICROMAMBA_IMAGE is not set: no micromamba binary or conda channel can be "
                    "fetched on this machine (its rendered Dockerfile is golden-tested instead)")
    if image_id(image) is None and subprocess.run(["docker", "pull", image], capture_output=True).returncode:
        pytest.skip(f"micromamba image {image} is neither present nor pullable")
    project = write_project(tmp_path / "condaproj", {
        "conda.yaml": "channels: [conda-forge]\ndependencies: [python=3.11, tabulate]\n",
        "run.py": "import sys, tabulate; print('conda python', sys.version_info[:2], sys.prefix)\n",
    })
    r = cli("run", str(project), "-e", "run.py", timeout=1200)
    assert r.code == 0, r.err[-2000:]
    assert "conda python (3, 11) /opt/dockrun/conda" in r.out


def test_images_list_and_prune(cli, tmp_path: Path) -> None:
    name = f"prune-{uuid.uuid4().hex[:8]}"
    project = write_project(tmp_path / name, {"MLproject": f"name: {name}\nentry_points: {{main: 'true'}}\n"})
    assert cli("run", str(project)).code == 0
    listing = cli("images", "list")
    assert listing.code == 0 and name in listing.out and "LAST USED" in listing.out.splitlines()[0]
    ref = next(line.split()[0] for line in listing.out.splitlines() if name in line)
    kept = cli("images", "prune", "--project", name)  # used just now: not older than 30 days
    assert kept.code == 0 and kept.out == "" and image_id(ref)
    pruned = cli("images", "prune", "--older-than", "0", "--project", name)
    assert pruned.code == 0 and pruned.out.strip() == f"removed {ref}"
    assert image_id(ref) is None and name not in cli("images", "list").out
