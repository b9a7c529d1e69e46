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


def check_gpus(docker_args: Any, environ: Mapping[str, str]) -> None:
    """``-A gpus=...`` on an engine with no GPU runtime fails only when the container starts ("could
    not select device driver"), after the build: say so before anything is done. The engine's
    ``Runtimes`` name the NVIDIA one when its toolkit is set up for docker."""
    wanted = [v for k, v in parse_pairs(docker_args) if k == "gpus"]
    if not wanted:
        return
    from ...engine.lean import connect

    runtimes = connect(environ).runtimes()
    if not any("nvidia" in f"{name} {(spec or {}).get('path', '')}".lower() for name, spec in runtimes.items()):
        raise ConfigError(f"--docker-args gpus={wanted[0]}: this Docker engine has no GPU runtime (its runtimes: "
                          f"{', '.join(sorted(runtimes)) or 'none'}); install the NVIDIA Container Toolkit where "
                          "the engine runs and set docker up for it (nvidia-ctk runtime configure --runtime=docker), "
                          "or run without -A gpus")


def _cpus(v: str) -> int:
    return int(float(v) * 1e9)


def _flag(v: str) -> bool:
    """``-A privileged`` or ``privileged=true`` turns a flag on; ``=false`` (or False from the API)
    leaves it off, as docker's own ``--privileged=false`` does."""
    value = v.strip().lower()
    if value in ("", "true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _host(v: str) -> dict[str, str]:
    name, sep, address = v.partition(":")
    if not sep or not name or not address:
        raise ValueError("expected HOST:ADDRESS")
    return {name: address}


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
    "privileged": ("privileged", _flag),
    "t": ("tty", _flag),
    "tty": ("tty", _flag),
    "i": ("stdin_open", _flag),
    "interactive": ("stdin_open", _flag),
    "hostname": ("hostname", str),
    "runtime": ("runtime", str),
    "ulimit": ("ulimits", lambda v: _ulimit(v)),
    "cap-add": ("cap_add", lambda v: [v]),
    "cap-drop": ("cap_drop", lambda v: [v]),
    "security-opt": ("security_opt", lambda v: [v]),
    "add-host": ("extra_hosts", _host),
    "dns": ("dns", lambda v: [v]),
    "read-only": ("read_only", _flag),
}
# Handled by dockrun itself (container.py), not as create() options; every repeat applies.
SPECIAL = {"e", "env", "v", "volume", "user", "u", "workdir", "w", "label", "l", "rm"}
# What dockrun decides and a -A option may not change, with the reason given to the user.
REFUSED = {"name": "dockrun names containers dockrun-<run id> (find them by the dockrun.run-id label)",
           "d": "use dockrun run --detach", "detach": "use dockrun run --detach",
           "entrypoint": "the entry point's command is the container's command"}


def _ulimit(v: str) -> list[Any]:
    import docker

    name, _, limits = v.partition("=")
    soft, _, hard = limits.partition(":")
    return [docker.types.Ulimit(name=name, soft=int(soft), hard=int(hard or soft))]


def without_values(items: list[str] | tuple[str, ...] | Mapping[str, Any]) -> list[str]:
    """-A options as a record keeps them: ``e=NAME=VALUE`` as ``e=NAME`` (a variable's value is often
    a secret; a rerun or a resumed sweep takes it from its own environment, or says it is not set)."""
    pairs = [(k, v.partition("=")[0] if k in ("e", "env") else v) for k, v in parse_pairs(items)]
    return [f"{k}={v}" if v else k for k, v in pairs]


def parse_pairs(items: list[str] | tuple[str, ...] | Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``["shm-size=1g", "t", "e=A=1", "e=B=2"]`` -> ``[("shm-size", "1g"), ("t", ""), ("e", "A=1"),
    ("e", "B=2")]``: repeated keys all apply. From the API, a mapping's list values repeat the key
    and ``False`` is a flag left off."""
    if not items:
        return []
    if isinstance(items, Mapping):
        pairs = []
        for k, v in items.items():
            for one in (v if isinstance(v, (list, tuple)) else [v]):
                pairs.append((str(k), "" if one is None or one is True else "false" if one is False else str(one)))
        return pairs
    out = []
    for item in items:
        key, _, value = item.partition("=")
        out.append((key.strip().lstrip("-"), value))
    return out


def to_create_options(args: list[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """docker-py options, plus the special keys (env, volume, ...) for container.py to merge."""
    options: dict[str, Any] = {}
    special: dict[str, list[str]] = {}
    for key, value in args:
        if key in REFUSED:
            raise ConfigError(f"--docker-args {key}: not accepted: {REFUSED[key]}")
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
        elif isinstance(converted, dict) and isinstance(options.get(option), dict):
            options[option] = {**options[option], **converted}
        elif converted is False:
            options.pop(option, None)  # a flag turned off is not sent at all
        else:
            options[option] = converted
    return options, special
