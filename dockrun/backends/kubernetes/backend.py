"""The Kubernetes backend's seam: the project image (built with the same keys as a local run) is
pushed to ``repository-uri`` when the registry lacks it, MLflow's Job template is filled in and the
Job created; a watcher process follows it and keeps its output.

Path parameters cannot be host files (the cluster cannot see them): remote URIs are passed as given.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ...config import check_durations
from ...locks import write_atomic
from ...options import honoured_by
from ...project.params import Placement
from ...store.liveness import start_token
from ...store.records import RunStore, new_run_id
from ...tracking.runs import ProjectRun, Tracked, start_project_run
from ..handle import new_record, shielded
from ..local.launch import start_owner
from ..outcome import record_end
from .config import KubeSettings, kube_settings
from .job import LABEL_RUN, SECRET_VARS, JobParts, job_manifest, kept_outputs, namespace, outputs_dir
from .state import job_uid

if TYPE_CHECKING:
    from ...request import PreparedRun, RunRequest
    from .batch import KubeSweep
    from .run import KubernetesRun

# The image holds the project at /project (as a local run); host paths do not exist on a node.
ON_CLUSTER = Placement(project_dir="/project", host_paths=False, name="the cluster")


class KubernetesBackend:
    name = "kubernetes"
    options = honoured_by(name)
    placement = ON_CLUSTER
    default_tracking_uri = None  # MLflow's rules; a server (or Databricks) the pods can reach

    def local_store_refusal(self, environ: Mapping[str, str]) -> str | None:
        return "the cluster; give --tracking-uri http(s)://... (a tracking server) or databricks"

    def __init__(self, sweep: KubeSweep | None = None):
        self._sweep = sweep  # a sweep's runs share a cluster client, one image push and one owner

    @contextmanager
    def batch(self, sweep_id: str, home: Path) -> Iterator[KubernetesBackend]:
        """This backend for the runs of one sweep (batch.py), until it has submitted its last."""
        from .batch import KubeSweep

        sweep = KubeSweep(home, sweep_id, lambda folder: start_owner("kubernetes-sweep", home, sweep_id, True, folder))
        try:
            yield KubernetesBackend(sweep)
        finally:
            sweep.close()

    def configure(self, request: RunRequest, environ: Mapping[str, str]) -> KubeSettings:
        from .cluster import check_installed

        settings = kube_settings(request.backend_config, request.cwd)
        check_durations("DOCKRUN_K8S_", environ)  # the owner waits on them: a typo is refused here, not there
        check_installed()
        return settings

    def submit(self, prepared: PreparedRun, log: Callable[[str], None]) -> KubernetesRun:
        from .cluster import Cluster
        from .run import KubernetesRun

        settings: KubeSettings = prepared.backend_config
        sweep = self._sweep
        cluster = sweep.cluster(settings.context) if sweep else Cluster(settings.context)
        ns = namespace(settings, cluster.default_namespace)
        run_id = new_run_id()
        parts = JobParts(run_id, prepared.project.name, f"{settings.repository}:check", prepared.rendered.command,
                         labels=sweep.labels if sweep else {})

        def check_and_push() -> str:
            # The cluster checks the filled-in template (namespace, fields, permissions) before a long build.
            cluster.create_job(ns, job_manifest(settings, parts), dry_run=True)
            return push_image(prepared, settings.repository, log)

        image = sweep.image(prepared.plan.project_image, check_and_push) if sweep else check_and_push()
        # As `mlflow run -b kubernetes`: the MLflow run is started before the Job is created.
        tracked = start_project_run(prepared.tracking, ProjectRun(
            run_id, prepared.source, prepared.entry_point, prepared.request.parameters, prepared.env.mlflow_env,
            "kubernetes", image, image.rpartition("@")[2]), os.environ)
        env, secrets = job_env(tracked, os.environ)
        parts = dataclasses.replace(parts, image=image, env=env, secret_env=tuple(secrets))
        manifest = job_manifest(settings, parts)
        name = manifest["metadata"]["name"]
        store = RunStore(prepared.settings.home)
        kept = kept_outputs(manifest)
        outputs = f"{outputs_dir(run_id)} in the Job's pod" + (f" (volume {kept})" if kept else " (not kept)")
        store.insert(dataclasses.replace(
            new_record(prepared, run_id, outputs), image=image, driver_pid=os.getpid(),
            driver_start=start_token(os.getpid()), remote_run_id=f"{ns}/{name}", **tracked.record))
        run_dir = store.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with shielded():
                if secrets:
                    cluster.create_secret(ns, name, secrets)
                job = cluster.create_job(ns, manifest)
                if secrets:
                    cluster.own_secret(ns, name, job)
                # The Job's UID, not only its name: its pods are found by it, and a Job of the same
                # name made by someone else is never taken for this one.
                write_atomic(run_dir / "kubernetes.json", json.dumps(
                    {"context": settings.context, "namespace": ns, "job": name, "uid": job_uid(job)}))
                if sweep:
                    pid, token = sweep.follow(run_id, ns, settings.context)
                else:
                    pid = start_owner("kubernetes", store.home, run_id, prepared.request.synchronous, run_dir)
                    token = start_token(pid)
                store.update(run_id, supervisor_pid=pid, supervisor_start=token)
        except BaseException as e:
            with shielded():
                made = cluster.job(ns, name)  # created, even if the answer was lost, when it carries our run ID
                if made and ((made["metadata"].get("labels") or {}).get(LABEL_RUN) == run_id):
                    cluster.delete_job(ns, name, job_uid(made))
                if secrets:
                    cluster.delete_secret(ns, name)
                record_end(store, run_id, "FAILED", None, f"could not start: {e}".splitlines()[0])
            raise
        log(f"created Job {ns}/{name}")
        return KubernetesRun(store, run_id, cluster)

    def attach(self, store: RunStore, run_id: str) -> KubernetesRun:
        from .run import KubernetesRun

        return KubernetesRun(store, run_id)


def push_image(prepared: PreparedRun, repository: str, log: Callable[[str], None]) -> str:
    """Build what is missing (the same keys as a local run), push the project image to
    ``repository`` unless the registry already has this image under that tag; the reference pinned
    by the digest of the image built here."""
    from ...engine.lean import connect
    from ...images.build import ensure_images, push_pinned

    plan = prepared.plan
    docker = connect()
    ensure_images(plan, prepared.source.root, prepared.settings, docker, prepared.request.rebuild, log)
    ref = f"{repository}:{plan.project_image.rpartition(':')[2]}"
    docker.tag(plan.project_image, ref)
    # Pinned by the digest of the image built here, whatever the tag names by the time a node pulls.
    return f"{ref}@{push_pinned(docker, ref, log)}"


def job_env(tracked: Tracked, environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The variables MLflow appends to the template's env, and those that go to the run's Secret
    instead (credentials)."""
    env = dict(tracked.env)
    if tracked.run_id and environ.get("KUBE_MLFLOW_TRACKING_URI"):  # as MLflow: the URI the cluster reaches it by
        env.update(cluster_tracking_uri(environ["KUBE_MLFLOW_TRACKING_URI"]))
    secrets = {k: v for k, v in env.items() if k in SECRET_VARS}
    return {k: v for k, v in env.items() if k not in secrets}, secrets


def cluster_tracking_uri(uri: str) -> dict[str, str]:
    """``KUBE_MLFLOW_TRACKING_URI`` as the pod's variables: a ``user:password@`` in it becomes
    MLflow's basic-auth variables (the URI's own pair wins, as in MLflow), which go to the run's
    Secret; the URI in the Job's plain env never holds them."""
    from ...tracking.target import split_userinfo

    plain, pair = split_userinfo(uri)
    if pair is None:
        return {"MLFLOW_TRACKING_URI": uri}
    return {"MLFLOW_TRACKING_URI": plain, "MLFLOW_TRACKING_USERNAME": pair[0], "MLFLOW_TRACKING_PASSWORD": pair[1]}
