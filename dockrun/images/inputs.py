"""What installs an environment, as files: the same for the classic build's context and for
dockrun's build container (images/cached_build.py)."""
from __future__ import annotations

import json

from .plan import CONDA_INSTALLER, ImagePlan, env_scripts


def env_inputs(plan: ImagePlan) -> dict[str, bytes]:
    """What installs the environment, by file name: the canonical environment file (or the
    canonical lock, which replaces it), the conda installer and the install scripts. Both build
    paths use exactly these (the classic context, dockrun's build container)."""
    files = {name: text.encode() for name, text in env_scripts(plan).items() if name != "os.sh"}
    if plan.env.kind == "uv" and plan.env.lock is not None:
        files["requirements.lock"] = "".join(r + "\n" for r in plan.env.lock).encode()
    elif plan.env.kind == "uv":
        files["requirements.txt"] = "".join(r + "\n" for r in plan.env.requirements).encode()
    if plan.env.kind == "conda" and plan.env.lock is not None:  # conda's explicit list, as conda_install reads it
        files["conda-lock.txt"] = "".join(r + "\n" for r in plan.env.lock).encode()
    if plan.env.kind == "micromamba":
        assert plan.env.conda is not None
        files["environment.yml"] = plan.env.conda.encode()
    if plan.env.kind == "conda":  # the installer reads JSON: its stage has no YAML parser
        import yaml  # here: a code-only rebuild has no environment file to read

        assert plan.env.conda is not None
        files["environment.json"] = json.dumps(yaml.safe_load(plan.env.conda), indent=1, sort_keys=True).encode()
        files["conda_install.py"] = CONDA_INSTALLER.read_bytes()
    return files
