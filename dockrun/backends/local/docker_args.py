"""Map ``-A KEY[=VALUE]`` (as in ``mlflow run``) onto docker-py ``containers.create`` options."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Callable

from ...errors import ConfigError


def _size(v: str) -> str:
    if not re.match(r"^\d+(\.\d+)?[bkmgBKMG]?$", v):
        raise ValueError("expected a size like 512m or 1g")
    return v


def _gpus(v: str) -> Any:
    import docker

    count = -1 if v in ("all", "") else None
    ids = None
    if count is None:
        if v.isdigit():
            count = int(v)
        else:
            ids = [d for d in re.sub(r"^(\"?device=)", "", v).strip('"').split(",") if d]
    return [docker.types.DeviceRequest(count=count, device_ids=ids, capabilities=[["gpu"]])]


def _cpus(v: str) -> int:
    return int(float(v) * 1e9)


# key -> (docker-py option, converter). Flags without a value get "".
_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "gpus": ("device_requests", _gpus),
    "network": ("network_mode", str),
    "net": ("network_mode", str),
    "shm-size": ("shm_size", _size),
    "memory": ("mem_limit", _size),
    "m": ("mem_limit", _size),
    "memory-swap": ("memswap_limit", _size),
    "cpus": ("nano_cpus", _cpus),
    "cpu-shares": ("cpu_shares", int),
    "cpuset-cpus": ("cpuset_cpus", str),
    "ipc": ("ipc_mode", str),
    "pid": ("pid_mode", str),
    "privileged": ("privileged", lambda v: True),
    "t": ("tty", lambda v: True),
    "tty": ("tty", lambda v: True),
    "i": ("stdin_open", lambda v: True),
    "interactive": ("stdin_open", lambda v: True),
    "hostname": ("hostname", str),
    "runtime": ("runtime", str),
    "ulimit": ("ulimits", lambda v: _ulimit(v)),
    "cap-add": ("cap_add", lambda v: [v]),
    "cap-drop": ("cap_drop", lambda v: [v]),
    "security-opt": ("security_opt", lambda v: [v]),
    "add-host": ("extra_hosts", lambda v: dict([v.split(":", 1)])),
    "dns": ("dns", lambda v: [v]),
    "read-only": ("read_only", lambda v: True),
}
# Handled by dockrun itself, not as create() options.
SPECIAL = {"e", "env", "v", "volume", "user", "u", "workdir", "w", "rm", "name", "label", "l"}


def _ulimit(v: str) -> list[Any]:
    import docker

    name, _, limits = v.partition("=")
    soft, _, hard = limits.partition(":")
    return [docker.types.Ulimit(name=name, soft=int(soft), hard=int(hard or soft))]


def parse_pairs(items: list[str] | tuple[str, ...] | Mapping[str, str] | None) -> dict[str, str]:
    """``["shm-size=1g", "t"]`` or a mapping -> ``{"shm-size": "1g", "t": ""}``."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return {str(k): "" if v is None or v is True else str(v) for k, v in items.items()}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key.strip().lstrip("-")] = value
    return out


def to_create_options(args: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """docker-py options, plus the special keys (env, volume, ...) for execution.py to merge."""
    options: dict[str, Any] = {}
    special: dict[str, list[str]] = {}
    for key, value in args.items():
        if key in SPECIAL:
            special.setdefault(key, []).append(value)
            continue
        if key not in _OPTIONS:
            known = ", ".join(sorted(set(_OPTIONS) | SPECIAL))
            raise ConfigError(f"--docker-args {key}: unknown Docker option (known: {known})")
        option, convert = _OPTIONS[key]
        try:
            converted = convert(value)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"--docker-args {key}={value}: {e}") from None
        if isinstance(converted, list) and isinstance(options.get(option), list):
            options[option] = options[option] + converted
        else:
            options[option] = converted
    return options, special
