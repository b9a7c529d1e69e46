"""`-b kubernetes` end to end on a real single-node cluster (tests/kube_cluster.py): build, push to
a loopback registry the node pulls from, run as a Job with MLflow's documented template, stream
the output; failure, Ctrl-C, a rerun that pushes nothing, logs after the Job is gone, and the
one-line errors for what cannot work (a pull error, an unschedulable pod, a missing namespace)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import write_project
from dockrun.store.liveness import alive
from dockrun.store.records import RunRecord, RunStore
from kube_cluster import Kube, RefusingProxy, kube  # noqa: F401 - the fixture

# MLflow's documented Job template (docs: "Execute a project on Kubernetes"), as users have it.
MLFLOW_TEMPLATE = """
apiVersion: batch/v1
kind: Job
metadata:
  name: "{replaced with MLflow Project name}"
  namespace: mlflow
spec:
  ttlSecondsAfterFinished: 100
  backoffLimit: 0
  template:
    spec:
      containers:
      - name: "{replaced with MLflow Project name}"
        image: "{replaced with URI of Docker image created during Project execution}"
        command: ["{replaced with MLflow Project entry point command}"]
        env: ["{appended with MLFLOW_TRACKING_URI, MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_ID}"]
        resources:
          limits:
            memory: 512Mi
          requests:
            memory: 256Mi
      restartPolicy: Never
"""

PROJECT = {
    "MLproject": """
        name: k8s-e2e
        python_env: python_env.yaml
        entry_points:
          main:
            parameters: {alpha: float}
            command: "python train.py --alpha {alpha}"
          data:
            parameters: {data: path}
            command: "cat {data}"
          fail: "python -c 'import sys; print(\\"failing now\\"); sys.exit(3)'"
          sleep: "echo started; sleep 300"
          nap:
            parameters: {alpha: float}
            command: "echo started {alpha}; [ {alpha} = 0 ] || sleep $NAP"
    """,
    "python_env.yaml": """
        python: "3.11"
        dependencies: [tabulate==0.9.0]
    """,
    "train.py": """
        import argparse, os
        from tabulate import tabulate
        p = argparse.ArgumentParser()
        p.add_argument("--alpha", type=float)
        a = p.parse_args()
        print(tabulate([["alpha", a.alpha], ["run", os.environ["DOCKRUN_RUN_ID"]]]))
        print("mlflow run", os.environ.get("MLFLOW_RUN_ID", "-"))
    """,
}


@pytest.fixture(scope="module")
def namespace(kube: Kube) -> str:  # noqa: F811 - the fixture
    kube.kubectl("create", "namespace", "mlflow")
    return "mlflow"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "k8s-e2e", PROJECT)


def _config(tmp_path: Path, repository: str, template: str = MLFLOW_TEMPLATE, **extra: str) -> str:
    (tmp_path / "kubernetes_job_template.yaml").write_text(textwrap.dedent(template))
    config = {"kube-context": "dockrun-k8s", "repository-uri": repository,
              "kube-job-template-path": "kubernetes_job_template.yaml", **extra}
    (tmp_path / "kubernetes_config.json").write_text(json.dumps(config))
    return "kubernetes_config.json"


def _env(kube: Kube, **more: str) -> dict[str, str]:  # noqa: F811
    return {"KUBECONFIG": kube.kubeconfig, "DOCKRUN_K8S_POLL_S": "0.2", **more}


def _last_run(home: Path):
    return RunStore(home).list(1)[0]


def test_run_as_a_job_then_rerun_pushes_nothing_and_logs_outlive_the_job(
        kube: Kube, namespace: str, cli, project: Path, tmp_path: Path, home: Path) -> None:  # noqa: F811
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e")
    r = cli("run", str(project), "-b", "kubernetes", "-c", config, "-P", "alpha=0.25", cwd=tmp_path, env=_env(kube))
    assert r.code == 0, r.err
    rec = _last_run(home)
    assert "alpha  0.25" in r.out and rec.run_id in r.out  # the pod's output, streamed
    assert rec.status == "FINISHED" and rec.exit_code == 0 and rec.backend == "kubernetes"
    assert rec.image.startswith(f"{kube.registry}/team/k8s-e2e:") and "@sha256:" in rec.image
    assert rec.remote_run_id.startswith("mlflow/k8s-e2e-")
    job = json.loads(kube.kubectl("-n", "mlflow", "get", "job", rec.remote_run_id.split("/")[1], "-o", "json").stdout)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == rec.image and container["name"] == "k8s-e2e"
    assert container["resources"]["limits"]["memory"] == "512Mi"  # the template's own fields are kept
    assert {e["name"] for e in container["env"]} >= {"DOCKRUN_RUN_ID", "DOCKRUN_OUTPUT_DIR"}

    uploads = kube.uploads()
    again = cli("run", str(project), "-b", "kubernetes", "-c", config, "-P", "alpha=0.5", cwd=tmp_path, env=_env(kube))
    assert again.code == 0, again.err
    assert kube.uploads() == uploads, "a rerun with nothing changed pushed to the registry"
    assert "already in the registry" in again.err and "alpha  0.5" in again.out

    # The Job and its pods gone (as ttlSecondsAfterFinished does it): the run and its log stay.
    kube.kubectl("-n", "mlflow", "delete", "job", rec.remote_run_id.split("/")[1], "--wait=true")
    shown = cli("runs", "show", rec.run_id)
    assert shown.code == 0 and json.loads(shown.out)["status"] == "FINISHED"
    logs = cli("runs", "logs", rec.run_id)
    assert logs.code == 0 and "alpha  0.25" in logs.out


def test_failing_entry_point_exits_1_with_its_output(
        kube: Kube, namespace: str, cli, project: Path, tmp_path: Path, home: Path) -> None:  # noqa: F811
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e")
    r = cli("run", str(project), "-b", "kubernetes", "-c", config, "-e", "fail", cwd=tmp_path, env=_env(kube))
    assert r.code == 1, r.err
    assert "failing now" in r.out
    assert "exited with status 3" in r.err and "Traceback" not in r.err
    rec = _last_run(home)
    assert rec.status == "FAILED" and rec.exit_code == 3


def test_ctrl_c_deletes_the_job_and_its_pods(kube: Kube, namespace: str, project: Path, tmp_path: Path,  # noqa: F811
                                             home: Path, base_image: str) -> None:
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e")
    env = {**os.environ, **_env(kube), "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}
    # SIGINT at its default, as a terminal's Ctrl-C finds it: a test runner started in the background
    # (a CI script's job) ignores it, and a child would inherit that.
    p = subprocess.Popen([sys.executable, "-m", "dockrun.cli", "run", str(project), "-b", "kubernetes", "-c", config,
                          "-e", "sleep"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stdout.readline() == b"started\n"  # the command runs in its pod
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert b"Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(b"was cancelled and its Job deleted"), err
    rec = _last_run(home)
    assert kube.left("mlflow", rec.run_id) == [], "a Job or pod outlived the cancelled run"
    assert rec.status == "KILLED" and rec.over


def test_a_killed_driver_takes_its_job_with_it(kube: Kube, namespace: str, project: Path, tmp_path: Path,  # noqa: F811
                                              home: Path, base_image: str) -> None:
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e")
    env = {**os.environ, **_env(kube), "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}
    p = subprocess.Popen([sys.executable, "-m", "dockrun.cli", "run", str(project), "-b", "kubernetes", "-c", config,
                          "-e", "sleep"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"started\n"
        p.kill()  # kill -9: no chance to cancel; the run's watcher sees its driver gone
        p.wait()
        store = RunStore(home)
        run_id = store.list(1)[0].run_id
        deadline = time.monotonic() + 120
        while not store.get(run_id).over:
            assert time.monotonic() < deadline, "the run outlived its driver"
            time.sleep(0.5)
    finally:
        p.kill()
    rec = store.get(run_id)
    assert rec.status == "FAILED" and "driver process vanished" in rec.reason
    assert kube.left("mlflow", run_id) == []


def test_detached_run_waits_and_cancels_from_another_process(
        kube: Kube, namespace: str, cli, project: Path, tmp_path: Path, home: Path) -> None:  # noqa: F811
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e")
    r = cli("run", str(project), "-b", "kubernetes", "-c", config, "-e", "sleep", "--detach", cwd=tmp_path,
            env=_env(kube))
    assert r.code == 0, r.err
    run_id = r.out.strip().splitlines()[-1]
    deadline = time.monotonic() + 120
    while "started" not in cli("runs", "logs", run_id, env=_env(kube)).out:
        assert time.monotonic() < deadline, "the detached run never started"
        time.sleep(0.5)
    cancelled = cli("runs", "cancel", run_id, env=_env(kube))
    assert cancelled.code == 0 and "KILLED" in cancelled.out, cancelled.err
    assert kube.left("mlflow", run_id) == []


def test_pull_error_is_one_line_and_leaves_no_job(
        kube: Kube, namespace: str, cli, project: Path, tmp_path: Path, home: Path) -> None:  # noqa: F811
    # A registry the engine may push to and the node may not pull from: the cluster's own registry
    # behind another front door (which holds the layers already: the push is a manifest).
    proxy = RefusingProxy(int(kube.registry.rsplit(":", 1)[1]))
    try:
        config = _config(tmp_path, f"127.0.0.1:{proxy.port}/team/k8s-e2e")
        r = cli("run", str(project), "-b", "kubernetes", "-c", config, "-P", "alpha=1", cwd=tmp_path, env=_env(kube))
    finally:
        proxy.close()
    assert r.code == 1, r.err
    assert "cannot pull the image" in r.err and "Traceback" not in r.err
    rec = _last_run(home)
    assert kube.left("mlflow", rec.run_id) == []
    assert "cannot pull the image" in (rec.reason or "")


def test_unschedulable_pod_fails_with_the_schedulers_reason(
        kube: Kube, namespace: str, cli, project: Path, tmp_path: Path, home: Path) -> None:  # noqa: F811
    template = MLFLOW_TEMPLATE.replace("memory: 512Mi", "memory: 900Ti").replace("memory: 256Mi", "memory: 900Ti")
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e", template)
    r = cli("run", str(project), "-b", "kubernetes", "-c", config, "-P", "alpha=1", cwd=tmp_path,
            env=_env(kube, DOCKRUN_K8S_PENDING_TIMEOUT_S="3"))
    assert r.code == 1, r.err
    assert "cannot be scheduled" in r.err and "Insufficient memory" in r.err
    assert kube.left("mlflow", _last_run(home).run_id) == []


def test_missing_namespace_is_one_line_before_anything_is_built(
        kube: Kube, cli, project: Path, tmp_path: Path, home: Path) -> None:  # noqa: F811
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e", MLFLOW_TEMPLATE.replace("namespace: mlflow",
                                                                                        "namespace: nowhere"))
    uploads = kube.uploads()
    r = cli("run", str(project), "-b", "kubernetes", "-c", config, "-P", "alpha=1", cwd=tmp_path, env=_env(kube))
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "nowhere" in lines[0] and "namespace" in lines[0], r.err
    assert kube.uploads() == uploads and RunStore(home).list(5) == []


def test_local_path_parameter_is_refused_naming_it(kube: Kube, cli, project: Path, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "local.csv").write_text("1\n")
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e")
    r = cli("run", str(project), "-b", "kubernetes", "-c", config, "-e", "data", "-P", "data=local.csv",
            cwd=tmp_path, env=_env(kube))
    assert r.code == 2
    assert "'data'" in r.err and "s3://" in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_git_source_runs_on_the_cluster(kube: Kube, namespace: str, cli, project: Path, tmp_path: Path,  # noqa: F811
                                        home: Path) -> None:
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=project, check=True)
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e")
    r = cli("run", f"file://{project}", "-b", "kubernetes", "-c", config, "-P", "alpha=2", cwd=tmp_path,
            env=_env(kube))
    assert r.code == 0, r.err
    assert "alpha  2" in r.out and _last_run(home).commit_sha


def test_tracked_run_logs_into_the_server_with_credentials_in_a_secret(
        kube: Kube, namespace: str, cli, project: Path, tmp_path: Path, home: Path, mlflow_server: str) -> None:  # noqa: F811
    # The server listens on the host's loopback: the Job's pod shares the node's network to reach it.
    template = MLFLOW_TEMPLATE.replace("    spec:\n      containers:", "    spec:\n      hostNetwork: true\n"
                                       "      containers:")
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e", template)
    r = cli("run", str(project), "-b", "kubernetes", "-c", config, "-P", "alpha=3", "--tracking-uri", mlflow_server,
            "--experiment-name", "k8s", cwd=tmp_path, env=_env(kube, MLFLOW_TRACKING_TOKEN="tok-SENTINEL-k8s"))
    assert r.code == 0, r.err
    rec = _last_run(home)
    assert f"mlflow run {rec.mlflow_run_id}" in r.out
    with urllib.request.urlopen(f"{mlflow_server}/api/2.0/mlflow/runs/get?run_id={rec.mlflow_run_id}") as resp:
        run = json.loads(resp.read())["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert run["info"]["status"] == "FINISHED" and tags["mlflow.project.backend"] == "kubernetes"
    job = kube.kubectl("-n", "mlflow", "get", "job", rec.remote_run_id.split("/")[1], "-o", "json").stdout
    assert "tok-SENTINEL-k8s" not in job and "secretKeyRef" in job  # the token is in the run's Secret


def test_a_sweep_runs_on_the_cluster_with_one_push(
        kube: Kube, namespace: str, cli, project: Path, tmp_path: Path, home: Path) -> None:  # noqa: F811
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e")
    r = cli("sweep", str(project), "-b", "kubernetes", "-c", config, "-P", "alpha=0.1,0.2,0.3", "--parallel", "2",
            "-q", cwd=tmp_path, env=_env(kube))
    assert r.code == 0, r.err
    rows = [line.split() for line in r.out.strip().splitlines()[2:]]
    assert [row[1] for row in rows] == ["FINISHED"] * 3 and [row[2] for row in rows] == ["0.1", "0.2", "0.3"]
    records = RunStore(home).list(10)
    assert len(records) == 3 and {rec.backend for rec in records} == {"kubernetes"}
    assert len({rec.image for rec in records}) == 1  # one image, pinned by digest, for every run
    # One owner process followed every Job of the sweep (by its label), not a watcher per run.
    assert len({(rec.supervisor_pid, rec.supervisor_start) for rec in records}) == 1
    sweep_id = r.out.split()[1]
    labelled = kube.kubectl("-n", "mlflow", "get", "jobs", "-l", f"dockrun.sweep={sweep_id}", "-o", "name").stdout
    assert len(labelled.split()) == 3
    for rec in records:  # each pod's output, kept in its run's log
        assert f"alpha  {rec.parameters['alpha']}" in cli("runs", "logs", rec.run_id).out


NAP_TEMPLATE = MLFLOW_TEMPLATE.replace(
    'env: ["{appended with MLFLOW_TRACKING_URI, MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_ID}"]',
    'env: [{name: NAP, value: "300"}]')


def test_ctrl_c_of_a_sweep_deletes_every_job_and_resume_runs_only_the_rest(
        kube: Kube, namespace: str, cli, project: Path, tmp_path: Path, home: Path,  # noqa: F811
        base_image: str) -> None:
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e", NAP_TEMPLATE)
    env = {**os.environ, **_env(kube), "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}
    p = subprocess.Popen([sys.executable, "-m", "dockrun", "sweep", str(project), "-b", "kubernetes", "-c", config,
                          "-e", "nap", "-P", "alpha=0,1,2", "--parallel", "2", "-q"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    store = RunStore(home)
    try:
        deadline = time.monotonic() + 300
        while True:  # the first point has finished, the two others run their command in their pods
            runs = {rec.parameters["alpha"]: rec for rec in store.list(10)}
            napping = [r for a, r in runs.items() if a != "0" and r.status == "RUNNING"
                       and b"started" in (store.run_dir(r.run_id) / "stdout.log").read_bytes()]
            if "0" in runs and runs["0"].status == "FINISHED" and len(napping) == 2:
                break
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() else "not started"
            time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=180)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert b"Traceback" not in err and b"runs were cancelled" in err, err
    sweep_id = err.split(b"--resume ")[1].split()[0].decode()
    cancelled = [r for r in store.list(10) if r.parameters["alpha"] != "0"]
    assert len(cancelled) == 2 and all(r.status == "KILLED" and r.over for r in cancelled)
    # Only the finished run's Job is left (to the template's ttlSecondsAfterFinished, as for any run).
    left = kube.kubectl("-n", "mlflow", "get", "jobs", "-l", f"dockrun.sweep={sweep_id}", "-o", "name")
    assert left.returncode == 0 and left.stdout.split() == [f"job.batch/{runs['0'].remote_run_id.split('/')[1]}"]
    for r in cancelled:
        assert kube.left("mlflow", r.run_id) == [], "a Job or pod outlived the cancelled sweep"
    owner = cancelled[0].supervisor_pid, cancelled[0].supervisor_start
    deadline = time.monotonic() + 60
    while alive(*owner):  # the sweep's owner is gone too: its runs are over and no more will come
        assert time.monotonic() < deadline, "the sweep's owner outlived it"
        time.sleep(0.2)

    (tmp_path / "kubernetes_job_template.yaml").write_text(textwrap.dedent(NAP_TEMPLATE.replace('"300"', '"0"')))
    again = cli("sweep", "--resume", sweep_id, "-q", cwd=tmp_path, env=_env(kube))
    assert again.code == 0, again.err
    rows = {row[2]: row for row in (line.split() for line in again.out.strip().splitlines()[2:])}
    assert {a: row[1] for a, row in rows.items()} == {"0": "FINISHED", "1": "FINISHED", "2": "FINISHED"}
    assert rows["0"][0] == runs["0"].run_id  # what had finished was not run again
    assert len(store.list(10)) == 5  # 3 first, 2 resumed


def test_a_killed_sweep_driver_takes_its_jobs_with_it(kube: Kube, namespace: str, project: Path,  # noqa: F811
                                                      tmp_path: Path, home: Path, base_image: str) -> None:
    config = _config(tmp_path, f"{kube.registry}/team/k8s-e2e", NAP_TEMPLATE)
    env = {**os.environ, **_env(kube), "DOCKRUN_HOME": str(home), "DOCKRUN_BASE_IMAGE": base_image}
    p = subprocess.Popen([sys.executable, "-m", "dockrun", "sweep", str(project), "-b", "kubernetes", "-c", config,
                          "-e", "nap", "-P", "alpha=1,2", "--parallel", "2", "-q"], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = RunStore(home)
    try:
        deadline = time.monotonic() + 300
        while len([r for r in store.list(10) if r.status == "RUNNING"
                   and b"started" in (store.run_dir(r.run_id) / "stdout.log").read_bytes()]) < 2:
            assert p.poll() is None and time.monotonic() < deadline, "the sweep's runs never started"
            time.sleep(0.5)
        p.kill()  # kill -9: no chance to cancel; the sweep's owner sees its driver gone
        p.wait()
        deadline = time.monotonic() + 120
        while not all(r.over for r in store.list(10)):
            assert time.monotonic() < deadline, "the sweep's runs outlived their driver"
            time.sleep(0.5)
    finally:
        p.kill()
    for rec in store.list(10):
        assert rec.status == "FAILED" and "driver process vanished" in rec.reason
        assert kube.left("mlflow", rec.run_id) == []


def test_a_sweeps_owner_waits_for_a_run_file_being_written(tmp_path: Path) -> None:
    """The sweep's owner sees a Job (its watch) while the driver is still writing the run's
    kubernetes.json: it waits for the file rather than failing every run it follows (it did, in
    the 50-run bench: 'watcher error: Expecting value')."""
    from dockrun.backends.kubernetes.batch import SweepWatcher

    store = RunStore(tmp_path / "home")
    run_dir = store.run_dir("r1")
    run_dir.mkdir(parents=True)
    (run_dir / "kubernetes.json").write_text("")  # opened for writing, nothing in it yet
    job = {"metadata": {"name": "p-r1", "uid": "u1", "labels": {"dockrun.run-id": "r1"}}}
    watcher = SweepWatcher(store, None, tmp_path, {"namespace": "mlflow", "sweep_id": "s1"})
    watcher.jobs["r1"] = job
    watcher._adopt()
    assert watcher.followers == {}
    (run_dir / "kubernetes.json").write_text(json.dumps({"namespace": "mlflow", "job": "p-r1", "uid": "u1"}))
    watcher._adopt()
    assert watcher.followers["r1"].uid == "u1"


class _EndedCluster:
    """A cluster whose run has ended: its pod is there, though the sweep's pod watch has not said so."""

    def __init__(self, pod: dict):
        self.pod = pod

    def pods(self, ns: str, uid: str) -> list[dict]:
        return [self.pod]

    def log_stream(self, ns: str, pod: str):  # noqa: ANN201
        yield b"alpha  0.1\n"


def test_a_sweeps_owner_keeps_the_output_of_a_job_whose_end_it_saw_first(tmp_path: Path) -> None:
    """The Jobs' watch may report a Job complete before the pods' watch reports its pod: the run's
    end waits for the pod's output (a sweep run once ended FINISHED with an empty log)."""
    from dockrun.backends.kubernetes.batch import SweepWatcher

    store = RunStore(tmp_path / "home")
    store.insert(RunRecord(run_id="r1", status="SCHEDULED", created=time.time(), uri="/p", source_key="k",
                           project="p", entry_point="main", parameters={}, command="c", image="i", env_key="e",
                           outputs="/o"))
    run_dir = store.run_dir("r1")
    run_dir.mkdir(parents=True)
    (run_dir / "kubernetes.json").write_text(json.dumps({"namespace": "mlflow", "job": "p-r1", "uid": "u1"}))
    job = {"metadata": {"name": "p-r1", "uid": "u1", "labels": {"dockrun.run-id": "r1"}},
           "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    pod = {"metadata": {"name": "p-r1-x", "ownerReferences": [{"uid": "u1", "controller": True}]},
           "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0}}}]}}
    watcher = SweepWatcher(store, _EndedCluster(pod), tmp_path, {"namespace": "mlflow", "sweep_id": "s1"})
    watcher.jobs["r1"] = job  # and no pod seen yet
    watcher._adopt()
    assert watcher.followers["r1"].step(job, watcher._pods_of("r1"))
    assert store.get("r1").status == "FINISHED"
    assert (run_dir / "stdout.log").read_bytes() == b"alpha  0.1\n"
