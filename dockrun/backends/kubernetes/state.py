"""What a Job and its pods say about a run (pure): started yet, over and how, or stuck and why.

Read from the objects' conditions and container states, so a pull error, an unschedulable pod or a
missing Secret is a one-line reason instead of a run that stays pending forever.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A node cannot get the image: dockrun pushed it and checked the registry has it, so this is the
# node's access to the registry (address, credentials), not something a wait fixes.
PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
START_ERRORS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True)
class Verdict:
    started: bool = False  # a container of the Job has started
    over: bool = False  # the Job is complete or failed
    status: str = "SCHEDULED"  # the run's status when over: FINISHED | FAILED
    exit_code: int | None = None
    reason: str | None = None
    stuck: str | None = None  # why the pod waits: fatal now (fatal=True) or after a grace time
    fatal: bool = False
    pod: str | None = None  # the pod whose output is the run's (the newest)


def verdict(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Verdict:
    pod = pods[-1] if pods else None
    name = pod["metadata"]["name"] if pod else None
    container = _container(pod)
    terminated = (container.get("state") or {}).get("terminated") or {}
    succeeded = (job.get("status") or {}).get("succeeded")
    started = bool((container.get("state") or {}).get("running") or terminated or succeeded)
    code = terminated.get("exitCode")
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return Verdict(True, True, "FINISHED", 0, None, pod=name)
        if cond.get("type") == "Failed":
            return Verdict(started, True, "FAILED", code, _failure(cond, terminated, code), pod=name)
    stuck, fatal = _stuck(pod, container)
    return Verdict(started, stuck=stuck, fatal=fatal, pod=name)


def job_uid(job: Mapping[str, Any] | None) -> str | None:
    """The Job's UID: what tells it from a Job of the same name made before or after it."""
    return ((job or {}).get("metadata") or {}).get("uid")


def _container(pod: Mapping[str, Any] | None) -> Mapping[str, Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def _failure(cond: Mapping[str, Any], terminated: Mapping[str, Any], code: int | None) -> str:
    if terminated.get("reason") == "OOMKilled":
        return f"the container ran out of memory (OOMKilled, exit code {code}): raise resources.limits.memory"
    if code not in (None, 0):
        return f"command exited with status {code}"
    why = cond.get("message") or cond.get("reason") or "the Job failed"
    return f"the Job failed: {why}"


def _stuck(pod: Mapping[str, Any] | None, container: Mapping[str, Any]) -> tuple[str | None, bool]:
    if pod is None:
        return None, False
    waiting = (container.get("state") or {}).get("waiting") or {}
    reason, message = waiting.get("reason"), (waiting.get("message") or "").splitlines()
    detail = f"{reason}: {message[0]}" if message else str(reason)
    if reason in PULL_ERRORS:
        return f"the cluster cannot pull the image ({detail})", True
    if reason in START_ERRORS:
        return f"the container cannot start ({detail})", True
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if (cond.get("type"), cond.get("status"), cond.get("reason")) == ("PodScheduled", "False", "Unschedulable"):
            return f"the pod cannot be scheduled: {(cond.get('message') or 'Unschedulable').strip()}", False
    return None, False
