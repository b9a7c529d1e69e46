"""What a Kubernetes run trusts, on a real single-node cluster (tests/kube_cluster.py) with a real
registry: helpers import nothing from the working folder, a co-tenant's pod labelled like the run's
cannot fake its output, a tag someone else pushed is not what the Job runs, and the credentials in
KUBE_MLFLOW_TRACKING_URI go to the run's Secret, not the Job's plain env."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import free_port, write_project
from dockrun.store.records import RunStore
from kube_cluster import Kube, kube  # noqa: F401 - the fixture
from security.test_helper_imports import dockrun_script, env_for, trapped_folder
from security.test_registry_tag import local_digests, push_other_image_as
from test_kubernetes_e2e import MLFLOW_TEMPLATE, _config, _env

HOST_NETWORK = MLFLOW_TEMPLATE.replace("    spec:\n      containers:", "    spec:\n      hostNetwork: true\n"
                                       "      containers:")
GATE = """
import sys, time, urllib.request
print("real output of the run", flush=True)
while True:  # until the test opens the gate (the pod shares the node's loopback)
    try:
        urllib.request.urlopen(sys.argv[1], timeout=2)
        break
    except Exception:
        time.sleep(0.2)
print("real end of the run", flush=True)
"""


@pytest.fixture(scope="module")
def namespace(kube: Kube) -> str:  # noqa: F811 - the fixture
    kube.kubectl("create", "namespace", "mlflow")
    return "mlflow"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    # No environment to install: the base image's python3 runs it.
    return write_project(tmp_path / "trust", {
        "MLproject": """
            name: trust
            entry_points:
              main: "python3 -c 'print(6 * 7)'"
              gate:
                parameters: {url: string}
                command: "python3 gate.py {url}"
        """,
        "gate.py": GATE,
        "marker.txt": uuid.uuid4().hex,  # a project image of this test's own
    })


def _job(kube: Kube, ns: str, name: str) -> dict:  # noqa: F811
    r = kube.kubectl("-n", ns, "get", "job", name, "-o", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _wait_for(what: str, check, timeout_s: float = 180) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_the_watcher_imports_nothing_from_the_working_folder(kube: Kube, namespace: str, project: Path,  # noqa: F811
                                                             tmp_path: Path, home: Path, base_image: str) -> None:
    folder, marker = trapped_folder(tmp_path)
    config = _config(folder, f"{kube.registry}/team/trust")
    script = dockrun_script(tmp_path)
    env = {**env_for(home, base_image), **_env(kube)}
    p = subprocess.run([sys.executable, str(script), "run", str(project), "-b", "kubernetes", "-c", config],
                       cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "42" in p.stdout
    assert not marker.exists(), marker.read_text()


@pytest.mark.parametrize("fake_kind", ["output", "pull error"])
def test_a_pod_labelled_like_the_runs_cannot_fake_its_output_or_end_it(
        kube: Kube, namespace: str, cli, project: Path, tmp_path: Path, home: Path, fake_kind: str) -> None:  # noqa: F811
    opened = threading.Event()

    class Gate(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if opened.is_set() else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Gate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = _config(tmp_path, f"{kube.registry}/team/trust", HOST_NETWORK)
        r = cli("run", str(project), "-b", "kubernetes", "-c", config, "-e", "gate", "-P",
                f"url=http://127.0.0.1:{server.server_address[1]}/go", "--detach", cwd=tmp_path, env=_env(kube))
        assert r.code == 0, r.err
        run_id = r.out.strip().splitlines()[-1]
        ns, name = RunStore(home).get(run_id).remote_run_id.split("/")
        job = _job(kube, ns, name)
        # A co-tenant who may create pods in the namespace: one labelled with the run's Job's name,
        # which prints output of its own, or cannot pull its image (a stuck pod of the run's would
        # end the run and delete its Job). (A pod that also copied the Job's controller-uid label
        # would match the Job's selector and be adopted by the Job controller: Kubernetes itself
        # then counts it as the Job's, and holds it to the Job's parallelism.)
        image = job["spec"]["template"]["spec"]["containers"][0]["image"]
        if fake_kind == "pull error":
            image = f"{kube.registry}/team/not-there:{uuid.uuid4().hex[:8]}"
        fake = {"apiVersion": "v1", "kind": "Pod", "metadata": {
                    "name": f"{name}-fake", "namespace": ns, "labels": {"job-name": name}},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "fake", "image": image, "command": ["sh", "-c", "echo FAKE OUTPUT from a co-tenant"]}]}}
        created = kube.kubectl("apply", "-f", "-", input=json.dumps(fake))
        assert created.returncode == 0, created.stderr

        def fake_is(state: str) -> bool:
            r = kube.kubectl("-n", ns, "get", "pod", f"{name}-fake", "-o",
                             "jsonpath={.status.phase} {.status.containerStatuses[0].state.waiting.reason}")
            return state in r.stdout.split()

        if fake_kind == "output":
            _wait_for("the fake pod to finish", lambda: fake_is("Succeeded"))
        else:
            _wait_for("the fake pod's pull error", lambda: fake_is("ErrImagePull") or fake_is("ImagePullBackOff"))
        opened.set()  # the run's own pod may end now
        waited = cli("runs", "wait", run_id, env=_env(kube), timeout=300)
        logs = cli("runs", "logs", run_id, env=_env(kube))
        assert waited.code == 0, waited.out + waited.err + logs.err
        assert "real output of the run" in logs.out and "real end of the run" in logs.out
        assert "FAKE OUTPUT" not in logs.out + logs.err and "cannot pull" not in logs.err
        assert RunStore(home).get(run_id).status == "FINISHED"
        kube.kubectl("-n", ns, "delete", "pod", f"{name}-fake", "--wait=false")
    finally:
        opened.set()
        server.shutdown()


def test_the_job_runs_the_image_built_here_not_a_planted_tag(kube: Kube, namespace: str, cli, project: Path,  # noqa: F811
                                                             tmp_path: Path, home: Path) -> None:
    built = cli("build", str(project))
    assert built.code == 0, built.err
    tag = built.out.strip().rpartition(":")[2]
    ref = f"{kube.registry}/team/trust:{tag}"
    subprocess.run(["docker", "tag", built.out.strip(), ref], check=True)
    planted = push_other_image_as(ref, tmp_path)
    config = _config(tmp_path, f"{kube.registry}/team/trust")
    r = cli("run", str(project), "-b", "kubernetes", "-c", config, cwd=tmp_path, env=_env(kube))
    assert r.code == 0, r.err
    assert "42" in r.out
    assert f"the registry has another image under {ref} ({planted}); pushing the one built here over it" in r.err
    rec = RunStore(home).list(1)[0]
    image = _job(kube, *rec.remote_run_id.split("/"))["spec"]["template"]["spec"]["containers"][0]["image"]
    pinned = image.rpartition("@")[2]
    assert image == rec.image == f"{ref}@{pinned}"
    assert pinned != planted and pinned in local_digests(ref)


def test_credentials_in_kube_mlflow_tracking_uri_go_to_the_secret(
        kube: Kube, namespace: str, cli, project: Path, tmp_path: Path, home: Path, mlflow_server: str) -> None:  # noqa: F811
    password = f"pw-SENTINEL-{uuid.uuid4().hex}"
    in_cluster = mlflow_server.replace("http://", f"http://kube-user:{password}@")
    config = _config(tmp_path, f"{kube.registry}/team/trust", HOST_NETWORK)
    r = cli("run", str(project), "-b", "kubernetes", "-c", config, "--tracking-uri", mlflow_server,
            "--experiment-name", "k8s-secret", cwd=tmp_path, env=_env(kube, KUBE_MLFLOW_TRACKING_URI=in_cluster))
    assert r.code == 0, r.err
    assert password not in r.out + r.err
    rec = RunStore(home).list(1)[0]
    ns, name = rec.remote_run_id.split("/")
    job = _job(kube, ns, name)
    assert password not in json.dumps(job)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == mlflow_server
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": name, "key":
                                                                             "MLFLOW_TRACKING_PASSWORD"}
    secret = json.loads(kube.kubectl("-n", ns, "get", "secret", name, "-o", "json").stdout)
    assert base64.b64decode(secret["data"]["MLFLOW_TRACKING_PASSWORD"]).decode() == password
    assert base64.b64decode(secret["data"]["MLFLOW_TRACKING_USERNAME"]).decode() == "kube-user"
