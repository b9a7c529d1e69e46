"""Thin adapter over the `kubernetes` client (the `dockrun[kubernetes]` extra): the only module that
talks to a cluster. Credentials are found as kubectl finds them (KUBECONFIG or ~/.kube/config and
its context, else the pod's service account); API failures become dockrun errors naming the cause.
No client state is global: each Cluster has its own configuration.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ...errors import ConfigError, RemoteError
from .state import job_uid

INSTALL_HINT = "pip install 'dockrun[kubernetes]'"


def _client() -> Any:  # lazy: only a Kubernetes run pays for importing the client
    try:
        import kubernetes
    except ImportError:
        raise ConfigError(f"--backend kubernetes needs the Kubernetes client: {INSTALL_HINT}") from None
    return kubernetes


def check_installed() -> None:
    _client()


def _short(e: Exception) -> str:
    """The API server's own message (its Status body), else the exception's first line."""
    body = getattr(e, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body).splitlines()[0]
        except (ValueError, AttributeError):
            pass
    reason = getattr(e, "reason", None)
    return str(reason or e).splitlines()[0] if (reason or str(e)) else type(e).__name__


class Cluster:
    def __init__(self, context: str | None = None, environ: Mapping[str, str] | None = None):
        k8s = _client()
        environ = os.environ if environ is None else environ
        self.context = context
        config = k8s.client.Configuration()
        kubeconfig = environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        files = [f for f in kubeconfig.split(os.pathsep) if f and os.path.isfile(f)]
        if files and context:
            known = _contexts(k8s, files[0])
            if known is not None and context not in known:
                raise ConfigError(f"--backend-config: kube-context {context!r}: not in {files[0]} (it has: "
                                  f"{', '.join(sorted(known)) or 'no contexts'})")
        try:
            if files:
                k8s.config.load_kube_config(config_file=files[0] if len(files) == 1 else None, context=context,
                                            client_configuration=config, persist_config=False)
            elif environ.get("KUBERNETES_SERVICE_HOST"):
                if context:
                    raise ConfigError(f"--backend-config: kube-context {context!r}: no kubeconfig found "
                                      "(KUBECONFIG, ~/.kube/config)")
                k8s.config.load_incluster_config(client_configuration=config)
            else:
                raise ConfigError("--backend kubernetes: no cluster credentials: no kubeconfig (KUBECONFIG, "
                                  "~/.kube/config) and not inside a pod")
        except k8s.config.ConfigException as e:
            raise ConfigError(f"kubeconfig: {str(e).splitlines()[0]}") from None
        self.default_namespace = _context_namespace(k8s, context, files) or "default"
        self._api = k8s.client.ApiClient(config)
        self.batch = k8s.client.BatchV1Api(self._api)
        self.core = k8s.client.CoreV1Api(self._api)
        self._k8s = k8s

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        k8s = self._k8s
        try:
            return fn(*args, **kwargs)
        except k8s.client.ApiException as e:
            if e.status == 404 and "namespaces" in _short(e):
                raise ConfigError(f"{what}: {_short(e)} (metadata.namespace of the Job template)") from None
            if e.status in (401, 403):
                raise ConfigError(f"{what}: the cluster refused ({e.status}): {_short(e)}") from None
            if e.status == 422 or e.status == 400:
                raise ConfigError(f"{what}: the cluster refused the Job: {_short(e)}") from None
            raise RemoteError(f"{what}: {_short(e)}") from None
        except Exception as e:  # transport: connection refused, TLS, timeouts
            if isinstance(e, ConfigError):
                raise
            raise RemoteError(f"{what}: cannot reach the cluster: {_short(e)}") from None

    # ---- jobs ------------------------------------------------------------------------------
    def create_job(self, ns: str, manifest: Mapping[str, Any], dry_run: bool = False) -> Mapping[str, Any]:
        kwargs = {"dry_run": "All"} if dry_run else {}
        job = self._call("creating the Job", self.batch.create_namespaced_job, ns, manifest, **kwargs)
        return self._api.sanitize_for_serialization(job)

    def job(self, ns: str, name: str) -> Mapping[str, Any] | None:
        """The Job's state, or None once it is gone."""
        k8s = self._k8s
        try:
            return self._api.sanitize_for_serialization(self.batch.read_namespaced_job(name, ns))
        except k8s.client.ApiException as e:
            if e.status == 404:
                return None
            raise RemoteError(f"reading Job {name}: {_short(e)}") from None
        except Exception as e:  # noqa: BLE001 - transport errors
            raise RemoteError(f"reading Job {name}: cannot reach the cluster: {_short(e)}") from None

    def delete_job(self, ns: str, name: str, uid: str, grace_s: int = 10) -> None:
        """Delete the Job (that one: a Job of the same name made since is left alone) and, before it
        is gone, its pods (foreground propagation); the pods get ``grace_s`` seconds after SIGTERM,
        as `docker stop` gives a container."""
        k8s = self._k8s
        body = k8s.client.V1DeleteOptions(propagation_policy="Foreground",
                                          preconditions=k8s.client.V1Preconditions(uid=uid))
        try:
            self.batch.delete_namespaced_job(name, ns, body=body)
        except k8s.client.ApiException as e:
            if e.status not in (404, 409):  # 409: the name is another Job's now
                raise RemoteError(f"deleting Job {name}: {_short(e)}") from None
        for pod in self.pods(ns, uid):
            try:
                self.core.delete_namespaced_pod(pod["metadata"]["name"], ns, grace_period_seconds=grace_s)
            except k8s.client.ApiException as e:
                if e.status != 404:
                    raise RemoteError(f"deleting pod {pod['metadata']['name']}: {_short(e)}") from None

    def delete_job_and_wait(self, ns: str, name: str, uid: str, timeout_s: float = 120, grace_s: int = 10) -> None:
        """Delete the Job and its pods (``grace_s``: as delete_job); return when neither is left."""
        import time

        self.delete_job(ns, name, uid, grace_s)
        deadline = time.monotonic() + timeout_s
        while job_uid(self.job(ns, name)) == uid or self.pods(ns, uid):
            if time.monotonic() > deadline:
                raise RemoteError(f"Job {ns}/{name} was deleted but is still there after {timeout_s:.0f} s")
            time.sleep(0.5)

    def pods(self, ns: str, uid: str) -> list[Mapping[str, Any]]:
        """The pods of the Job whose UID is ``uid``, oldest first. By UID, not by name: anyone who may
        create pods in the namespace can label one ``job-name=...``; the Job's controller labels its
        own with the Job's UID and names the Job as their controlling owner."""
        found = self._call("listing the pods of the Job", self.core.list_namespaced_pod, ns,
                           label_selector=f"controller-uid={uid}")
        pods = [self._api.sanitize_for_serialization(p) for p in found.items]
        pods = [p for p in pods if any(ref.get("uid") == uid and ref.get("controller")
                                       for ref in p["metadata"].get("ownerReferences") or [])]
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    def watch(self, ns: str, kind: str, selector: str, timeout_s: int = 60) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """``(ADDED | MODIFIED | DELETED, object)`` for the Jobs or pods (``kind``: "jobs" or "pods")
        matching the label selector: every one there is first, then each change as the cluster
        reports it, without end. A watch the server closes is resumed from the last version seen;
        one whose version has expired (410) lists again, so nothing is missed."""
        k8s = self._k8s
        list_fn = self.batch.list_namespaced_job if kind == "jobs" else self.core.list_namespaced_pod
        version = None
        while True:
            if version is None:
                listed = self._call(f"listing the {kind} of {selector}", list_fn, ns, label_selector=selector)
                version = listed.metadata.resource_version
                for item in listed.items:
                    yield "ADDED", self._api.sanitize_for_serialization(item)
            try:
                for event in k8s.watch.Watch().stream(list_fn, ns, label_selector=selector, resource_version=version,
                                                      timeout_seconds=timeout_s):
                    obj = event["raw_object"]
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        yield event["type"], obj
            except k8s.client.ApiException as e:
                if e.status != 410:
                    raise RemoteError(f"watching the {kind} of {selector}: {_short(e)}") from None
                version = None
            except Exception as e:  # noqa: BLE001 - transport errors
                raise RemoteError(f"watching the {kind} of {selector}: cannot reach the cluster: {_short(e)}") from None

    def events(self, ns: str, pod: str) -> list[Mapping[str, Any]]:
        found = self._call(f"reading the events of pod {pod}", self.core.list_namespaced_event, ns,
                           field_selector=f"involvedObject.name={pod}")
        return [self._api.sanitize_for_serialization(e) for e in found.items]

    def log_stream(self, ns: str, pod: str) -> Iterator[bytes]:
        """The pod's output as it is written (stdout and stderr together, as the cluster keeps it),
        until the container ends."""
        resp = self._call(f"reading the log of pod {pod}", self.core.read_namespaced_pod_log, pod, ns,
                          follow=True, _preload_content=False)
        try:
            yield from resp.stream(4096, decode_content=False)
        finally:
            resp.release_conn()

    def log(self, ns: str, pod: str) -> bytes:
        resp = self._call(f"reading the log of pod {pod}", self.core.read_namespaced_pod_log, pod, ns,
                          _preload_content=False)
        return resp.data

    # ---- secrets -----------------------------------------------------------------------------
    def create_secret(self, ns: str, name: str, values: Mapping[str, str]) -> None:
        k8s = self._k8s
        body = k8s.client.V1Secret(metadata=k8s.client.V1ObjectMeta(name=name), string_data=dict(values),
                                   type="Opaque")
        self._call("creating the run's Secret", self.core.create_namespaced_secret, ns, body)

    def own_secret(self, ns: str, name: str, job: Mapping[str, Any]) -> None:
        """Make the Secret the Job's: it goes when the Job goes."""
        meta = job["metadata"]
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"]}
        self._call("linking the Secret to its Job", self.core.patch_namespaced_secret, name, ns,
                   {"metadata": {"ownerReferences": [owner]}})

    def delete_secret(self, ns: str, name: str) -> None:
        k8s = self._k8s
        try:
            self.core.delete_namespaced_secret(name, ns)
        except k8s.client.ApiException:
            pass


def _contexts(k8s: Any, path: str) -> set[str] | None:
    try:
        return {c.get("name") for c in k8s.config.list_kube_config_contexts(config_file=path)[0]}
    except Exception:  # noqa: BLE001 - unreadable: load_kube_config says why
        return None


def _context_namespace(k8s: Any, context: str | None, files: list[str]) -> str | None:
    """The namespace the kubeconfig's context names, as kubectl uses it when a manifest has none."""
    if not files:
        path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
        return open(path).read().strip() if os.path.isfile(path) else None
    try:
        contexts, current = k8s.config.list_kube_config_contexts(config_file=files[0])
    except Exception:  # noqa: BLE001 - the load above succeeded; a namespace is a nicety
        return None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    return ((chosen or {}).get("context") or {}).get("namespace")
