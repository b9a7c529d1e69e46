"""The kinds of environment, as one table: what each installs from, how (which templates and
scripts), and where it ends up in the image (pure data).

A kind's name is ``EnvSpec.kind``: it is in the environment key, the run records and MLflow's
``mlflow.project.env`` tag. To add a kind: a row here (and its name in ``MANAGERS`` if users ask for
it with ``--env-manager``), its template(s) in templates/, and, if it reads the project's files in a
new way, a rule in environment.env_spec that fills its EnvSpec.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..options import ENV_MANAGERS  # noqa: F401 - re-exported: the names are the option table's

# The templates every built kind shares (templates/): the project image on top of the environment,
# and beside a kind's install script the tools it runs (uv, py-rattler) and its OS packages (apt.txt).
PROJECT_TEMPLATE = "project.Dockerfile.j2"
TOOLS_SCRIPT = "tools.sh.j2"
OS_SCRIPT = "os-packages.sh.j2"
# The conda kind's installer (py-rattler): shipped in the build context, keyed like a template.
CONDA_INSTALLER = Path(__file__).with_name("conda_install.py")


@dataclass(frozen=True)
class EnvKind:
    name: str
    # What it installs: "requirements" (PEP 508 lines, EnvSpec.requirements), "conda" (a conda
    # environment, EnvSpec.conda), or None: nothing, the image is used as it is.
    reads: str | None = None
    dockerfile: str | None = None  # the classic builder's template; None: no environment image is built
    # The install script both build paths run (the classic Dockerfile's stages, dockrun's build
    # container), with tools.sh installing ``tool`` and os-packages.sh; None: the Dockerfile does it all.
    script: str | None = None
    tool: str | None = None
    installer: Path | None = None  # a program of dockrun's the install runs (in the context and the key)
    # The canonical environment file and lock in the build context; its format follows its name
    # (.txt: requirement lines, .json / .yml: the conda environment).
    env_file: str | None = None
    lock_file: str | None = None
    lock_replaces_env_file: bool = False  # a locked install reads the lock alone
    prefix: str = ""  # where the environment lives in the image (local code is installed into it)
    mlflow_env: str = ""  # MLflow's name for how the environment was made (mlflow.project.env)

    @property
    def needs_build(self) -> bool:
        return self.dockerfile is not None

    @property
    def templates(self) -> tuple[str, ...]:
        """The templates that install it, in the order their text enters the environment key."""
        if self.dockerfile is None:
            return ()
        return (self.dockerfile, *((self.script, TOOLS_SCRIPT, OS_SCRIPT) if self.script else ()))


UV = EnvKind("uv", reads="requirements", dockerfile="env-uv.Dockerfile.j2", script="env-uv.sh.j2", tool="uv",
             env_file="requirements.txt", lock_file="requirements.lock", lock_replaces_env_file=True,
             prefix="/opt/dockrun/venv", mlflow_env="uv")
CONDA = EnvKind("conda", reads="conda", dockerfile="env-conda.Dockerfile.j2", script="env-conda.sh.j2",
                tool="py-rattler", installer=CONDA_INSTALLER, env_file="environment.json",
                lock_file="conda-lock.txt", prefix="/opt/dockrun/conda", mlflow_env="conda")
MICROMAMBA = EnvKind("micromamba", reads="conda", dockerfile="env-micromamba.Dockerfile.j2",
                     env_file="environment.yml", prefix="/opt/dockrun/conda", mlflow_env="conda")
DOCKER = EnvKind("docker", mlflow_env="docker")  # docker_env: its image as it is
SYSTEM = EnvKind("system", mlflow_env="local")  # the base image's own Python, nothing installed

KINDS = {kind.name: kind for kind in (UV, CONDA, MICROMAMBA, DOCKER, SYSTEM)}

# The kind each --env-manager name (options.ENV_MANAGERS, "auto" aside) asks for.
# MLflow's mean what they mean under `mlflow run`: local = the image's own Python, nothing installed;
# virtualenv = a Python environment (uv makes it); conda = the conda path (py-rattler, or micromamba
# where DOCKRUN_MICROMAMBA_IMAGE is set). "auto" (the project's files decide) is not a kind.
MANAGERS = {"local": SYSTEM, "virtualenv": UV, "conda": CONDA, "uv": UV, "micromamba": MICROMAMBA, "none": SYSTEM}
# What "auto" picks for what a project declares (ProjectSpec.env_kind); a conda file goes to
# micromamba instead where DOCKRUN_MICROMAMBA_IMAGE is set (environment.env_spec).
AUTO = {"conda": CONDA, "python": UV, "requirements": UV, "docker": DOCKER, "none": SYSTEM}


def kind_of(name: str) -> EnvKind:
    """The row of ``EnvSpec.kind``."""
    return KINDS[name]
