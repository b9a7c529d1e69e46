"""What a user can ask of a run, each option defined once: ``RunRequest``'s fields.

A field made with ``option(...)`` carries everything about that option: its command-line flags and
help, which commands take it, which backends honour it, how the CLI's and ``execute()``'s values
become the field's, and how an error names it. From this table follow the click options of every
command (cli.py), the request the CLI and ``execute()`` build, each backend's ``options`` and the
refusal of an option a backend does not honour (prepare.check_options). Adding a run option is one
field here (and the code that acts on it).

Standard library only: the CLI imports this to declare its options, and `dockrun --help` stays fast.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError

# --env-manager's names, MLflow's first; images/kinds.py says which kind each asks for (a test checks
# that every name has its kind). Here: `dockrun --help` must not load images/.
ENV_MANAGERS = ("auto", "local", "virtualenv", "conda", "uv", "micromamba", "none")
COMMANDS = ("run", "sweep", "build", "shell", "lock")  # the commands whose requests come from here
# (`runs rerun` takes its --detach and --trust from here too, for a request made from a record)


@dataclass(frozen=True)
class Option:
    """One option of RunRequest: how the user spells it and who acts on it."""

    flags: tuple[str, ...]  # click's declarations, e.g. ("-e", "--entry-point"); none: set by a face
    help: str | None
    commands: tuple[str, ...]  # the CLI commands that take it
    backends: tuple[str, ...] | None  # the backends that honour it; None: every backend
    label: str  # how an error names it
    is_flag: bool = False
    multiple: bool = False
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    show_default: bool = False
    from_cli: Callable[[Any], Any] | None = None  # the click value -> the field's
    from_python: Callable[[Any], Any] | None = None  # execute()'s value -> the field's
    keyword: str | None = None  # execute()'s keyword (MLflow's name where MLflow has it); None: not one
    refusable: bool = True  # False: chooses the backend rather than asking something of it
    # The faces that keep it to make the request again: "rerun" (a run's record) and "sweep" (a
    # sweep's record, for --resume).
    kept: tuple[str, ...] = ()
    default: Any = None  # the field's (filled in by OPTIONS; a factory's is not needed: those are `multiple`)


def option(*flags: str, default: Any = dataclasses.MISSING, default_factory: Any = dataclasses.MISSING,
           **how: Any) -> Any:
    """A RunRequest field that is an option. ``how``: the fields of ``Option`` (``commands``
    defaults to ("run",) for an option with flags; ``backends`` to every backend; ``label`` to the
    last flag; ``keyword`` to the field's name, filled in by ``OPTIONS``)."""
    how.setdefault("commands", ("run",) if flags else ())
    how.setdefault("backends", None)
    how.setdefault("help", None)
    how.setdefault("label", flags[-1] if flags else "")
    return field(default=default, default_factory=default_factory, metadata={"option": how, "flags": flags})


# ---- how values become a field's ---------------------------------------------------------------

def key_values(values: Sequence[str], flag: str = "-P", shape: str = "KEY=VALUE", again: str = "") -> dict[str, str]:
    """-P KEY=VALUE pairs (a key given twice is an error: which was meant is not ours to guess).
    ``shape`` is what the message says was expected, ``again`` what it adds for a key given twice."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected {shape}")
        if key in out:
            raise ConfigError(f"{flag} {key}: given more than once{again}")
        out[key] = value
    return out


def json_config(value: Any, cwd: Path | None = None) -> tuple[Any, Path | None]:
    """--backend-config as either face gives it: a JSON file (found from ``cwd``), JSON text, or
    (from execute()) the parsed value itself; with the folder of the file it came from (None for
    text). The one reading of it: the CLI and execute() take and refuse the same values."""
    if not isinstance(value, str):
        return value, None
    if not value:
        return None, None
    path = (cwd or current_folder()) / Path(value).expanduser()
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            text, where, folder = f.read(), value, path.parent
    elif value.lstrip()[:1] in ("{", "["):
        text, where, folder = value, "--backend-config", None
    else:  # neither a file nor JSON text: most likely a file name with a typo
        raise ConfigError(f"--backend-config {value}: no such file (expected a JSON file or a JSON object)")
    try:
        return json.loads(text), folder
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON ({e.msg} at line {e.lineno})") from None


def absolute_path(value: str | os.PathLike[str] | None) -> Path | None:
    return Path(value).expanduser().resolve() if value else None


def _negated(flag: bool) -> bool:  # --detach sets synchronous=False
    return not flag


def _str_values(params: Mapping[str, Any] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (params or {}).items()}


def _or_auto(env_manager: str | None) -> str:  # MLflow's default, None, is its own choice: auto
    return env_manager or "auto"


def _docker_args(args: Mapping[str, Any] | list[str] | tuple[str, ...] | None) -> Any:
    if not args:
        return ()
    return dict(args) if isinstance(args, Mapping) else tuple(args)


# ---- the table ----------------------------------------------------------------------------------

ENV_MANAGER_HELP = ("As in mlflow run: local = the image's own Python, nothing installed; virtualenv = a Python "
                    "environment (made with uv); conda = a conda prefix (py-rattler from PyPI; micromamba "
                    "when DOCKRUN_MICROMAMBA_IMAGE is set); micromamba = always micromamba. auto: conda.yaml -> conda, "
                    "python_env.yaml / requirements.txt -> virtualenv, docker_env -> its image. none = local.")
TRUST_HELP = ("Give a project from a Git URI or an archive what it asks of this machine: the host access its "
              "MLproject asks for (docker_env volumes and host variables, local runs) and the credentials in the "
              "host's index and proxy settings (its environment build); without it such a project is refused. A "
              "local folder is always given both.")
DEV_HELP = ("Mount the project folder at the project root instead of baking it into an image: edits are "
            "live on the next run, nothing is built for the code (local folders only).")
IMAGE_BUILDERS = ("local", "kubernetes")  # the backends that build images on this machine's engine


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for, as one frozen value, built once by the CLI or by ``execute()``;
    nothing in it is checked yet. Field order is the order of `dockrun run --help`."""

    uri: str
    entry_point: str = option(
        "-e", "--entry-point", default="main", show_default=True, commands=("run", "sweep", "shell"), kept=("sweep",),
        help="Entry point name or .py/.sh path (shell: the one whose command is in $DOCKRUN_COMMAND "
             "and whose path parameters are mounted).")
    version: str | None = option("-v", "--version", default=None, commands=("run", "sweep", "build", "shell"),
                                 kept=("sweep",),
                                 help="Git commit, branch or tag (Git URIs only).")
    parameters: Mapping[str, str] = option(
        "-P", "--param-list", default_factory=dict, multiple=True, metavar="KEY=VALUE", label="-P",
        help="A parameter (repeatable).", commands=("run", "shell"), from_cli=key_values, from_python=_str_values,
        kept=("rerun", "sweep"))
    docker_args: tuple[str, ...] | Mapping[str, Any] = option(
        "-A", "--docker-args", default=(), multiple=True, metavar="KEY[=VALUE]", label="-A/--docker-args",
        help="A docker run option, e.g. gpus=all, network=host, shm-size=1g (repeatable).",
        commands=("run", "sweep", "shell"), backends=("local",), from_python=_docker_args, kept=("rerun", "sweep"))
    backend: str = option("-b", "--backend", default="local", show_default=True, commands=("run", "sweep"),
                          help="local, databricks or kubernetes.", refusable=False, kept=("sweep",))
    # a JSON file name or text, or (from execute()) a mapping: read by the backend that takes it
    # (json_config), so that a kubernetes_config.json's template is found beside it from either face
    backend_config: Any = option(
        "-c", "--backend-config", default=None, commands=("run", "sweep"), backends=("databricks", "kubernetes"),
        help="databricks: a cluster spec; kubernetes: MLflow's kubernetes_config.json (a JSON file or string).",
        kept=("sweep",))
    env_manager: str = option("--env-manager", default="auto", show_default=True, choices=ENV_MANAGERS,
                              commands=COMMANDS, help=ENV_MANAGER_HELP, from_python=_or_auto, kept=("rerun", "sweep"))
    base_image: str | None = option(
        "--base-image", default=None, commands=("run", "sweep", "build", "shell", "lock"), backends=IMAGE_BUILDERS,
        help="Base image for built environments, and for dockrun lock to resolve in (also DOCKRUN_BASE_IMAGE).",
        kept=("rerun", "sweep"))
    rebuild: bool = option("--rebuild", default=False, is_flag=True, commands=("run", "build"),
                           backends=IMAGE_BUILDERS, help="Ignore cached images.")
    storage_dir: Path | None = option("--storage-dir", default=None, backends=("local",),
                                      help="Where remote path parameters (s3://, http(s)://, dbfs:/, ...) are "
                                      "downloaded.",
                                      from_cli=absolute_path, from_python=absolute_path, kept=("rerun",))
    experiment_name: str | None = option("--experiment-name", default=None, commands=("run", "sweep"),
                                         kept=("sweep",))
    experiment_id: str | None = option("--experiment-id", default=None, kept=("sweep",))
    run_name: str | None = option("--run-name", default=None)
    tracking_uri: str | None = option("--tracking-uri", default=None, commands=("run", "sweep"), kept=("sweep",))
    mlflow_run_id: str | None = option("--run-id", default=None, keyword="run_id",  # log into this existing run
                                       help="Log into this existing MLflow run (as mlflow run --run-id).")
    # Nothing reads it: dockrun always builds the code into the image.
    build_image: bool = option(
        "--build-image", default=False, is_flag=True,
        help="Accepted for mlflow run compatibility: dockrun always builds the code into the image.")
    synchronous: bool = option("--detach", default=True, is_flag=True, from_cli=_negated, commands=("run", "rerun"),
                               help="Print the run ID and return at once.")
    # Run in the environment image with the project folder mounted read-write at the project root:
    # edits are live on the next run and no image is built for the code.
    dev: bool = option("--dev", default=False, is_flag=True, commands=("run", "shell"), backends=("local",),
                       help=DEV_HELP)
    # Honour the host access a project from elsewhere (Git, archive) asks for in its MLproject
    # (docker_env volumes and host variables), and give its builds the credentials in the host's
    # index and proxy settings; a local folder gets both without it.
    trust: bool = option("--trust", default=False, is_flag=True, commands=("run", "sweep", "build", "shell", "rerun"),
                         backends=IMAGE_BUILDERS,
                         help=TRUST_HELP, kept=("rerun", "sweep"))
    # MLflow's registry login for its docker_env images; dockrun uses the engine's own (docker login).
    docker_auth: Mapping[str, Any] | None = option(default=None, backends=(), label="docker_auth")
    # Relative path parameters are taken from here (default: the process's); set by the faces.
    cwd: Path | None = option(default=None, keyword=None, refusable=False, from_python=absolute_path,
                              kept=("rerun", "sweep"))
    # Set by a rerun: run exactly this image (by content ID) where it is still to be had, and
    # record which run this repeats.
    image_id: str | None = option(default=None, backends=("local",), label="runs rerun", keyword=None)
    rerun_of: str | None = option(default=None, backends=("local",), label="runs rerun", keyword=None)
    # the code must still be this (commit or content hash)
    source_key: str | None = option(default=None, backends=("local",), label="runs rerun", keyword=None)

    def given(self) -> dict[str, Any]:
        """The options the user set to something other than their default, by field name."""
        defaults = RunRequest(uri=self.uri)
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(defaults, f.name)}


def _table() -> dict[str, Option]:
    out = {}
    for f in dataclasses.fields(RunRequest):
        if "option" in f.metadata:
            how = {"keyword": f.name, **f.metadata["option"]}
            default = None if f.default is dataclasses.MISSING else f.default
            out[f.name] = Option(flags=f.metadata["flags"], default=default, **how)
    return out


OPTIONS: Mapping[str, Option] = _table()  # field name -> its Option, in field order


def label(name: str) -> str:
    """How a message names the option ``name`` (a RunRequest field)."""
    return OPTIONS[name].label if name in OPTIONS else name


def honoured_by(backend: str) -> frozenset[str]:
    """The RunRequest fields backend ``backend`` acts on: its ``options``."""
    def honours(name: str) -> bool:  # an option without a list of backends: every backend honours it
        return name not in OPTIONS or OPTIONS[name].backends is None or backend in OPTIONS[name].backends

    return frozenset(f.name for f in dataclasses.fields(RunRequest) if honours(f.name))


def refused(request: RunRequest, honoured: frozenset[str]) -> list[str]:
    """The options ``request`` sets that a backend honouring ``honoured`` would drop, by field name."""
    return sorted(name for name in request.given() if name in OPTIONS and OPTIONS[name].refusable
                  and name not in honoured)


def for_command(command: str) -> list[tuple[str, Option]]:
    """The options CLI command ``command`` takes, in the table's order."""
    return [(name, opt) for name, opt in OPTIONS.items() if command in opt.commands]


def current_folder() -> Path:
    """Where relative paths are taken from; one line when it was deleted (or moved) under us."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise ConfigError("the current folder no longer exists (deleted or moved): cd to a folder and run "
                          "again") from None


def cli_values(command: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of CLI command ``command``'s options: ``values`` are click's, by field name."""
    return {name: opt.from_cli(values[name]) if opt.from_cli else values[name] for name, opt in for_command(command)}


def from_cli(command: str, uri: str, values: Mapping[str, Any]) -> RunRequest:
    """The request of CLI command ``command``: ``values`` are click's, by field name."""
    return RunRequest(uri=uri, cwd=current_folder(), **cli_values(command, values))


def kept_options(request: RunRequest, face: str) -> dict[str, Any]:
    """The options ``face`` ("rerun", "sweep") keeps of ``request`` to make it again: those set to
    other than their default, as JSON values."""
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, Mapping):
            return dict(value)
        return list(value) if isinstance(value, tuple) else value

    return {name: plain(value) for name, value in request.given().items()
            if name in OPTIONS and face in OPTIONS[name].kept}


def from_kept(data: Mapping[str, Any], face: str) -> dict[str, Any]:
    """RunRequest fields of what ``kept_options`` kept (a record's JSON); what ``face`` does not keep
    is left aside (a record written by another version may hold more)."""
    out = {}
    for name, value in data.items():
        opt = OPTIONS.get(name)
        if opt is not None and face in opt.kept:
            out[name] = opt.from_python(value) if opt.from_python and value is not None else value
    return out


def from_keywords(uri: str, keywords: Mapping[str, Any], caller: str = "execute") -> RunRequest:
    """The request of ``execute()``'s keywords; a keyword the table does not know is a TypeError
    naming it, as Python's own."""
    by_keyword = {opt.keyword: name for name, opt in OPTIONS.items() if opt.keyword}
    fields = {}
    for key, value in keywords.items():
        if key not in by_keyword:
            raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}")
        opt = OPTIONS[by_keyword[key]]
        fields[by_keyword[key]] = opt.from_python(value) if opt.from_python else value
    return RunRequest(uri=uri, cwd=current_folder(), **fields)
