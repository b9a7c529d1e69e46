"""The Kubernetes backend without a cluster: MLflow's config and template read and filled as MLflow
does, bad configs as one line and exit 2, and what pod and Job states mean (from objects shaped as
the API returns them)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, write_project
from dockrun.backends.kubernetes.config import kube_settings
from dockrun.backends.kubernetes.job import JobParts, job_manifest, job_name, kept_outputs
from dockrun.backends.kubernetes.state import verdict
from dockrun.errors import ConfigError
from test_kubernetes_e2e import MLFLOW_TEMPLATE


def _settings(tmp_path: Path, template: str = MLFLOW_TEMPLATE, **config: str):
    (tmp_path / "job.yaml").write_text(template)
    return kube_settings({"repository-uri": "registry.example.com/team/proj", "kube-job-template-path": "job.yaml",
                          **config}, tmp_path)


def test_mlflow_template_is_filled_as_mlflow_fills_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path, **{"kube-context": "prod"})
    parts = JobParts("0123456789abcdef", "My Project_1", "registry.example.com/team/proj:k@sha256:aa",
                     "python train.py --alpha 0.5", {"MLFLOW_RUN_ID": "r1"}, ("MLFLOW_TRACKING_TOKEN",))
    job = job_manifest(settings, parts)
    assert settings.context == "prod"
    assert job["metadata"]["name"] == job_name("My Project_1", "0123456789abcdef") == "my-project-1-0123456789abcdef"
    assert job["metadata"]["namespace"] == "mlflow" and job["spec"]["backoffLimit"] == 0
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "my-project-1" and container["image"] == parts.image
    assert container["command"][:2] == ["sh", "-c"] and container["command"][2].endswith("python train.py --alpha 0.5")
    env = container["env"]
    assert all(isinstance(e, dict) for e in env)  # MLflow's "{appended with ...}" placeholder is not sent
    assert {"name": "MLFLOW_RUN_ID", "value": "r1"} in env
    assert {"name": "DOCKRUN_RUN_ID", "value": "0123456789abcdef"} in env
    assert {"name": "MLFLOW_TRACKING_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": job["metadata"]["name"], "key": "MLFLOW_TRACKING_TOKEN"}}} in env
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert settings.template["metadata"]["name"].startswith("{"), "the template itself was modified"
    assert kept_outputs(job) is None


def test_a_volume_at_the_outputs_folder_keeps_them(tmp_path: Path) -> None:
    template = MLFLOW_TEMPLATE.replace("        resources:", "        volumeMounts:\n"
                                       "        - {name: outputs, mountPath: /dockrun}\n        resources:")
    job = job_manifest(_settings(tmp_path, template), JobParts("r", "p", "i", "true"))
    assert kept_outputs(job) == "outputs"


@pytest.mark.parametrize(("config", "message"), [
    ({}, "repository-uri is required"),
    ({"repository-uri": "r.example.com/a/b"}, "kube-job-template-path is required"),
    ({"repository-uri": "r.example.com/a/b:v1", "kube-job-template-path": "job.yaml"}, "without a tag"),
    ({"repository-uri": "r.example.com/a/b", "kube-job-template-path": "missing.yaml"},
     "kube-job-template-path 'missing.yaml': no such file"),
    ({"repository-uri": "r.example.com/a/b", "kube-job-template-path": "job.yaml", "kube-ctx": "x"},
     "unknown field(s) kube-ctx"),
    ({"repository-uri": "r.example.com/a/b", "kube-job-template-path": "job.yaml", "kube-context": 3},
     "kube-context: expected a non-empty string"),
])
def test_bad_configs_name_the_field(tmp_path: Path, config: dict, message: str) -> None:
    (tmp_path / "job.yaml").write_text(MLFLOW_TEMPLATE)
    with pytest.raises(ConfigError, match=None) as e:
        kube_settings(config, tmp_path)
    assert message in str(e.value)


@pytest.mark.parametrize(("template", "message"), [
    ("kind: Deployment\n", "expected kind: Job"),
    ("[1, 2]\n", "a YAML mapping"),
    ("kind: Job\nspec: {template: {spec: {containers: []}}}\n", "containers: expected a list"),
    ("a: [\n", "not valid YAML"),
    ("kind: Job\nspec: {template: {spec: {containers: [{env: [1]}]}}}\n", "env: expected a list"),
])
def test_bad_templates_name_the_file_and_field(tmp_path: Path, template: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        _settings(tmp_path, template)
    assert message in str(e.value) and "job.yaml" in str(e.value)


def test_cli_bad_config_is_one_line_exit_2_before_any_work(tmp_path: Path, home: Path) -> None:
    project = write_project(tmp_path / "p", {"MLproject": "name: p\nentry_points:\n  main: {command: 'true'}\n"})
    (tmp_path / "k.json").write_text(json.dumps({"repository-uri": "r.example.com/a/b"}))
    r = subprocess.run([sys.executable, "-m", "dockrun.cli", "run", str(project), "-b", "kubernetes", "-c",
                        str(tmp_path / "k.json")], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "kube-job-template-path" in r.stderr, r.stderr
    assert not (home / "runs").exists()


def test_options_the_backend_cannot_honour_are_refused(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", {"MLproject": "name: p\nentry_points:\n  main: {command: 'true'}\n"})
    r = subprocess.run([sys.executable, "-m", "dockrun.cli", "run", str(project), "-b", "kubernetes", "-c", "{}",
                        "--dev"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "--dev: not supported by backend kubernetes" in r.stderr, r.stderr


def test_without_the_extra_one_line_says_what_to_install(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", {"MLproject": "name: p\nentry_points:\n  main: {command: 'true'}\n"})
    (tmp_path / "job.yaml").write_text(MLFLOW_TEMPLATE)
    config = json.dumps({"repository-uri": "r.example.com/a/b", "kube-job-template-path": "job.yaml"})
    code = ("import sys; sys.modules['kubernetes'] = None; from dockrun.cli import main; "
            f"sys.argv = ['dockrun', 'run', {str(project)!r}, '-b', 'kubernetes', '-c', {config!r}]; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "pip install 'dockrun[kubernetes]'" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


def _pod(waiting: str | None = None, terminated: dict | None = None, conditions: list | None = None) -> dict:
    state = {"waiting": {"reason": waiting, "message": f"{waiting} detail"}} if waiting else \
        {"terminated": terminated} if terminated else {"running": {"startedAt": "t"}}
    return {"metadata": {"name": "p1", "creationTimestamp": "t"},
            "status": {"containerStatuses": [{"state": state}], "conditions": conditions or []}}


def test_states_map_to_the_run() -> None:
    job = {"status": {}}
    assert verdict(job, []) == verdict(job, [])
    assert not verdict(job, []).started
    assert verdict(job, [_pod()]).started
    pull = verdict(job, [_pod("ImagePullBackOff")])
    assert pull.fatal and pull.stuck == "the cluster cannot pull the image (ImagePullBackOff: ImagePullBackOff detail)"
    unsched = verdict(job, [{"metadata": {"name": "p"}, "status": {"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 Insufficient memory."}]}}])
    assert not unsched.fatal and "Insufficient memory" in unsched.stuck
    complete = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    done = verdict(complete, [_pod(terminated={"exitCode": 0})])
    assert (done.over, done.status, done.exit_code) == (True, "FINISHED", 0)
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}
    v = verdict(failed, [_pod(terminated={"exitCode": 3})])
    assert (v.status, v.exit_code, v.reason) == ("FAILED", 3, "command exited with status 3")
    oom = verdict(failed, [_pod(terminated={"exitCode": 137, "reason": "OOMKilled"})])
    assert "OOMKilled" in oom.reason and "memory" in oom.reason
    deadline = verdict({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                                   "message": "Job was active longer than specified deadline"}]}}, [])
    assert deadline.reason == "the Job failed: Job was active longer than specified deadline"


def test_repo_has_the_registry_line() -> None:
    text = (REPO / "dockrun" / "backends" / "__init__.py").read_text()
    assert '"kubernetes": "dockrun.backends.kubernetes.backend:KubernetesBackend"' in text


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user: {token: "t"}
contexts:
- name: dev
  context: {cluster: c, user: u, namespace: team-a}
- name: prod
  context: {cluster: c, user: u}
current-context: dev
"""


def test_contexts_and_namespaces_are_resolved_as_kubectl_does(tmp_path: Path) -> None:
    from dockrun.backends.kubernetes.cluster import Cluster

    (tmp_path / "config").write_text(KUBECONFIG)
    env = {"KUBECONFIG": str(tmp_path / "config")}
    assert Cluster(None, env).default_namespace == "team-a"  # the current context's namespace
    assert Cluster("prod", env).default_namespace == "default"
    with pytest.raises(ConfigError, match=r"kube-context 'staging': not in .*config \(it has: dev, prod\)"):
        Cluster("staging", env)
    with pytest.raises(ConfigError, match="no cluster credentials"):
        Cluster(None, {"KUBECONFIG": str(tmp_path / "missing")})


def test_a_local_tracking_store_is_refused_before_the_cluster_is_contacted(tmp_path: Path, home: Path) -> None:
    project = write_project(tmp_path / "p", {"MLproject": "name: p\nentry_points:\n  main: {command: 'true'}\n"})
    (tmp_path / "job.yaml").write_text(MLFLOW_TEMPLATE)
    (tmp_path / "config").write_text(KUBECONFIG)  # a server on port 1: contacting it would fail differently
    config = json.dumps({"repository-uri": "r.example.com/a/b", "kube-job-template-path": "job.yaml"})
    r = subprocess.run([sys.executable, "-m", "dockrun.cli", "run", str(project), "-b", "kubernetes", "-c", config,
                        "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], capture_output=True, text=True,
                       cwd=tmp_path, env={**os.environ, "KUBECONFIG": str(tmp_path / "config")})
    assert r.returncode == 2 and "cannot be reached from the cluster" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "mlflow.db").exists()
