"""``-b kubernetes -c``: MLflow's kubernetes_config.json, read and checked before anything is built
(pure, but for reading the files it names).

    {"kube-context": "...",            optional: kubeconfig's current context (or in-cluster) if absent
     "repository-uri": "host/repo",    where the image is pushed (the tag is dockrun's image key)
     "kube-job-template-path": "..."}  a batch/v1 Job whose first container runs the command

Keys are MLflow's, unchanged, so an MLflow user's files work as they are.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...options import json_config

KEYS = ("kube-context", "repository-uri", "kube-job-template-path")
# A registry host[:port] then lowercase path components: what docker accepts as a repository.
_PART = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::\d+)?/)?{_PART}(?:/{_PART})*$")


@dataclass(frozen=True)
class KubeSettings:
    context: str | None
    repository: str
    template: Mapping[str, Any]  # the Job template as parsed; never modified (job.py copies it)
    template_path: str  # for messages


def kube_settings(config: Any, cwd: Path | None = None) -> KubeSettings:
    """``config``: a parsed object, a JSON string or the name of a JSON file, as `mlflow run -c`
    takes it. A relative template path is found from ``cwd`` first (as MLflow looks for it), then
    beside the config file."""
    cwd = Path(cwd or Path.cwd())
    config, config_dir = json_config(config, cwd)
    if config is None:
        raise ConfigError("--backend kubernetes needs --backend-config: a kubernetes_config.json with "
                          "repository-uri and kube-job-template-path")
    if not isinstance(config, dict):
        raise ConfigError("--backend-config: expected a JSON object with repository-uri and kube-job-template-path")
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise ConfigError(f"--backend-config: unknown field(s) {', '.join(unknown)} (expected {', '.join(KEYS)})")
    for key in KEYS:
        if key in config and not (isinstance(config[key], str) and config[key]):
            raise ConfigError(f"--backend-config: {key}: expected a non-empty string")
    repository = config.get("repository-uri")
    if not repository:
        raise ConfigError("--backend-config: repository-uri is required: the registry repository the cluster "
                          "pulls the image from, e.g. registry.example.com/team/project")
    if not _REPOSITORY.match(repository):
        raise ConfigError(f"--backend-config: repository-uri {repository!r}: expected a repository without a tag "
                          "(host[:port]/name, lowercase), e.g. registry.example.com/team/project")
    given = config.get("kube-job-template-path")
    if not given:
        raise ConfigError("--backend-config: kube-job-template-path is required: a batch/v1 Job template (YAML)")
    template_file = _find(given, cwd, config_dir)
    return KubeSettings(config.get("kube-context"), repository, _template(template_file), given)


def _find(given: str, cwd: Path, config_dir: Path | None) -> Path:
    candidates = [Path(given).expanduser()] if Path(given).expanduser().is_absolute() else \
        [cwd / given] + ([config_dir / given] if config_dir else [])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"--backend-config: kube-job-template-path {given!r}: no such file")


def _template(path: Path) -> Mapping[str, Any]:
    import yaml

    where = f"{path.name} (kube-job-template-path)"
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a Kubernetes Job (a YAML mapping)")
    if doc.get("kind", "Job") != "Job" or not str(doc.get("apiVersion", "batch/v1")).startswith("batch/"):
        raise ConfigError(f"{where}: expected kind: Job, apiVersion: batch/v1")
    if not isinstance(doc.get("metadata", {}), dict):
        raise ConfigError(f"{where}: metadata: expected a mapping")
    pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") if isinstance(doc.get("spec"), dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    if not (isinstance(containers, list) and containers and isinstance(containers[0], dict)):
        raise ConfigError(f"{where}: spec.template.spec.containers: expected a list with the container to run")
    env = containers[0].get("env")
    if env is not None and not (isinstance(env, list) and all(isinstance(e, dict) or is_placeholder(e) for e in env)):
        raise ConfigError(f"{where}: spec.template.spec.containers[0].env: expected a list of name/value entries")
    return doc


def is_placeholder(value: Any) -> bool:
    """MLflow's documented template writes what is filled in as "{...}" strings, even inside the
    env list (``env: ["{appended with MLFLOW_TRACKING_URI, ...}"]``)."""
    return isinstance(value, str) and value.startswith("{") and value.endswith("}")
