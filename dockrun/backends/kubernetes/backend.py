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

from ...errors import ConfigError
from ...locks import write_atomic
from ...project.params import Placement
from ...store.liveness import start_token
from ...store.records import RunStore, new_run_id
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
    options = frozenset({"entry_point", "version", "parameters", "backend_config", "env_manager", "synchronous",
                         "experiment_name", "experiment_id", "run_name", "tracking_uri", "mlflow_run_id",
                         "base_image", "rebuild"})
    placement = ON_CLUSTER

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
        check_installed()
        return settings

    def submit(self, prepared: PreparedRun, log: Callable[[str], None]) -> KubernetesRun:
        from .cluster import Cluster
        from .run import KubernetesRun

        settings: KubeSettings = prepared.backend_config
        check_tracking(prepared)
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
        tracked = tracking_env(prepared, run_id, image)
        secrets = tracked.secrets
        parts = dataclasses.replace(parts, image=image, env=tracked.env, secret_env=tuple(secrets))
        manifest = job_manifest(settings, parts)
        name = manifest["metadata"]["name"]
        store = RunStore(prepared.settings.home)
        kept = kept_outputs(manifest)
        outputs = f"{outputs_dir(run_id)} in the Job's pod" + (f" (volume {kept})" if kept else " (not kept)")
        store.insert(dataclasses.replace(
            new_record(prepared, run_id, outputs), image=image, driver_pid=os.getpid(),
            driver_start=start_token(os.getpid()), remote_run_id=f"{ns}/{name}",
            tracking_uri=tracked.uri, mlflow_run_id=tracked.run_id, experiment_id=tracked.experiment_id))
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
    from ...engine.client import Docker
    from ...images.build import ensure_images, push_pinned

    plan = prepared.plan
    docker = Docker()
    ensure_images(plan, prepared.source.root, prepared.settings, docker, prepared.request.rebuild, log)
    ref = f"{repository}:{plan.project_image.rpartition(':')[2]}"
    docker.tag(plan.project_image, ref)
    # Pinned by the digest of the image built here, whatever the tag names by the time a node pulls.
    return f"{ref}@{push_pinned(docker, ref, log)}"


@dataclasses.dataclass(frozen=True)
class Tracked:
    """A run's MLflow run, as the Job sees it."""

    uri: str | None = None  # where dockrun reports the run's end
    experiment_id: str | None = None
    run_id: str | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)  # appended to the template's env
    secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)  # in the run's Secret instead


def check_tracking(prepared: PreparedRun) -> None:
    """A local store (a file or sqlite database here) cannot be reached from a pod."""
    from ...tracking.target import STORE

    target = prepared.tracking
    if target is not None and target.kind == STORE:
        raise ConfigError(f"tracking: the local store {target.uri} cannot be reached from the cluster; give "
                          "--tracking-uri http(s)://... (a tracking server) or databricks")


def tracking_env(prepared: PreparedRun, run_id: str, image: str) -> Tracked:
    """Start the run's MLflow run (as `mlflow run -b kubernetes` does before creating the Job) and
    give the variables MLflow appends to the template's env; credentials go to a Secret."""
    target = prepared.tracking
    if target is None:
        return Tracked()
    from ...tracking.runs import start_tracked_run
    from ...tracking.tags import logged_params, login_name, project_tags

    tags = project_tags(prepared.source, prepared.entry_point.name, prepared.env.kind, image, image.rpartition("@")[2],
                        login_name(), run_id)
    tags["mlflow.project.backend"] = "kubernetes"
    started = start_tracked_run(target, os.environ, tags, logged_params(prepared.entry_point,
                                                                        prepared.request.parameters))
    env = dict(started.env)
    if os.environ.get("KUBE_MLFLOW_TRACKING_URI"):  # as MLflow: the URI the cluster reaches the server by
        env.update(cluster_tracking_uri(os.environ["KUBE_MLFLOW_TRACKING_URI"]))
    secrets = {k: v for k, v in env.items() if k in SECRET_VARS}
    plain = {k: v for k, v in env.items() if k not in secrets}
    return Tracked(target.uri, started.experiment_id, started.run_id, plain, secrets)


def cluster_tracking_uri(uri: str) -> dict[str, str]:
    """``KUBE_MLFLOW_TRACKING_URI`` as the pod's variables: a ``user:password@`` in it becomes
    MLflow's basic-auth variables (the URI's own pair wins, as in MLflow), which go to the run's
    Secret; the URI in the Job's plain env never holds them."""
    from ...tracking.target import split_userinfo

    plain, pair = split_userinfo(uri)
    if pair is None:
        return {"MLFLOW_TRACKING_URI": uri}
    return {"MLFLOW_TRACKING_URI": plain, "MLFLOW_TRACKING_USERNAME": pair[0], "MLFLOW_TRACKING_PASSWORD": pair[1]}
