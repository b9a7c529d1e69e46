"""The Job a run becomes: MLflow's template filled in as MLflow fills it (pure).

What MLflow replaces is replaced here too: ``metadata.name``, the first container's ``name``,
``image`` and ``command``; ``env`` is appended to. Everything else in the template (namespace,
resources, volumes, tolerations, service account, TTL, backoffLimit) is the user's and kept.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import KubeSettings, is_placeholder

OUTPUTS_ROOT = "/dockrun/outputs"  # a template mounts a volume here to keep DOCKRUN_OUTPUT_DIR
LABEL_RUN = "dockrun.run-id"
LABEL_SWEEP = "dockrun.sweep"  # on every Job (and pod) of a sweep: what its owner watches
SECRET_VARS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "DATABRICKS_TOKEN",
               "DATABRICKS_CLIENT_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclass(frozen=True)
class JobParts:
    """What dockrun puts into the template."""

    run_id: str
    project: str
    image: str  # repository:tag@sha256:... : what the node pulls is what was pushed
    command: str  # the rendered, quoted entry point command
    env: Mapping[str, str] = field(default_factory=dict)  # plain values
    secret_env: tuple[str, ...] = ()  # names whose values are in the run's Secret (named like the Job)
    labels: Mapping[str, str] = field(default_factory=dict)  # more labels for the Job and its pods (a sweep's)


def dns_label(text: str, limit: int = 63) -> str:
    """A DNS-1123 label from a project name: lowercase alphanumerics and '-'."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return label or "project"


def job_name(project: str, run_id: str) -> str:
    # Pods carry the Job's name in a label (63 characters at most); the run ID makes it unique.
    return f"{dns_label(project, 63 - len(run_id) - 1)}-{run_id}"


def namespace(settings: KubeSettings, default: str) -> str:
    return str((settings.template.get("metadata") or {}).get("namespace") or default)


def outputs_dir(run_id: str) -> str:
    return f"{OUTPUTS_ROOT}/{run_id}"


def job_manifest(settings: KubeSettings, parts: JobParts) -> dict[str, Any]:
    """The template, filled in: a new dict (the template is left as it was)."""
    job = copy.deepcopy(dict(settings.template))
    job.setdefault("apiVersion", "batch/v1")
    job.setdefault("kind", "Job")
    name = job_name(parts.project, parts.run_id)
    meta = job.setdefault("metadata", {})
    meta["name"] = name
    meta.setdefault("labels", {}).update({**parts.labels, LABEL_RUN: parts.run_id})
    pod = job["spec"]["template"]
    pod.setdefault("metadata", {}).setdefault("labels", {}).update({**parts.labels, LABEL_RUN: parts.run_id})
    pod["spec"].setdefault("restartPolicy", "Never")  # a Job's pods must not restart Always
    container = pod["spec"]["containers"][0]
    container["name"] = dns_label(parts.project)
    container["image"] = parts.image
    # As the local backend runs it (and as the MLproject means it): one shell command line. The
    # output folder is made first, since nothing mounted there may exist yet.
    container["command"] = ["sh", "-c", f'mkdir -p "$DOCKRUN_OUTPUT_DIR" 2>/dev/null; {parts.command}']
    container.pop("args", None)
    env = [e for e in container.get("env") or [] if not is_placeholder(e)]
    given = {e.get("name") for e in env}
    ours = {"DOCKRUN_RUN_ID": parts.run_id, "DOCKRUN_OUTPUT_DIR": outputs_dir(parts.run_id), **parts.env}
    env += [{"name": k, "value": v} for k, v in ours.items() if not (k == "DOCKRUN_OUTPUT_DIR" and k in given)]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": name, "key": k}}} for k in parts.secret_env]
    container["env"] = env
    return job


def kept_outputs(manifest: Mapping[str, Any]) -> str | None:
    """The volume that keeps DOCKRUN_OUTPUT_DIR after the pod, if the template mounts one there."""
    pod = manifest["spec"]["template"]["spec"]
    for mount in pod["containers"][0].get("volumeMounts") or []:
        path = str(mount.get("mountPath", "")).rstrip("/")
        if path and (path == OUTPUTS_ROOT or OUTPUTS_ROOT.startswith(path + "/")):
            return str(mount.get("name"))
    return None
