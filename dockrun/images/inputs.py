"""What installs an environment, as files: the same for the classic build's context and for
dockrun's build container (images/cached_build.py)."""
from __future__ import annotations

import json

from .kinds import kind_of
from .plan import ImagePlan, env_scripts


def env_inputs(plan: ImagePlan) -> dict[str, bytes]:
    """What installs the environment, by file name: the canonical environment file and lock (the
    names the kind gives them), its installer and the install scripts. Both build paths use exactly
    these (the classic context, dockrun's build container)."""
    env, kind = plan.env, kind_of(plan.env.kind)
    files = {name: text.encode() for name, text in env_scripts(plan).items() if name != "os.sh"}
    if env.lock is not None and kind.lock_file:
        files[kind.lock_file] = "".join(r + "\n" for r in env.lock).encode()
    if kind.env_file and not (env.lock is not None and kind.lock_replaces_env_file):
        files[kind.env_file] = _env_file(kind.env_file, plan)
    if kind.installer is not None:
        files[kind.installer.name] = kind.installer.read_bytes()
    return files


def _env_file(name: str, plan: ImagePlan) -> bytes:
    """The canonical environment in the format its file name says."""
    if name.endswith(".txt"):  # requirement lines
        return "".join(r + "\n" for r in plan.env.requirements).encode()
    assert plan.env.conda is not None
    if name.endswith(".json"):  # for an installer whose stage has no YAML parser
        import yaml  # here: a code-only rebuild has no environment file to read

        return json.dumps(yaml.safe_load(plan.env.conda), indent=1, sort_keys=True).encode()
    return plan.env.conda.encode()
