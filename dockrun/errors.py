"""One family of user-facing errors.

Every error a user can cause or fix derives from DockrunError and carries a one-line message that
names the file, field, parameter or URI involved and what was expected. The CLI prints that line
and exits with ``exit_code``; anything else is a bug and gets a traceback.
"""
from __future__ import annotations

from .terminal import printable  # noqa: F401 - the terminal-safe rule, for its callers here


class DockrunError(Exception):
    """Base of all user-facing dockrun errors."""

    exit_code = 2


class ProjectError(DockrunError):
    """The MLproject file, an environment file or an entry point is invalid."""


class ParameterError(DockrunError):
    """A parameter value is missing or does not match its declared type."""


class SourceError(DockrunError):
    """The project source (folder, Git URI, version, subdirectory) cannot be resolved."""


class ConfigError(DockrunError):
    """A setting, option or backend config is invalid."""


class TrustRequired(ConfigError):
    """A project from a Git URI or an archive would be given something of the user's (a host path,
    a credential) that only ``--trust`` gives it; the same for every run of that project."""


class BuildError(DockrunError):
    """An image build failed (the project's environment could not be installed). ``output``: the
    failing step's own lines (its instruction, then what it printed), for a log to show above the
    one-line message."""

    exit_code = 1

    def __init__(self, message: str, output: tuple[str, ...] = ()):
        super().__init__(message)
        self.output = output


class ExecutionError(DockrunError):
    """A run failed: its command exited non-zero, or the run was lost."""

    exit_code = 1

    def __init__(self, message: str, run_id: str | None = None, exit_status: int | None = None):
        super().__init__(message)
        self.run_id = run_id
        self.exit_status = exit_status


class RemoteError(DockrunError):
    """A remote backend (Databricks) refused or failed a run."""

    exit_code = 1


class Interrupted(DockrunError):
    """The user interrupted dockrun (Ctrl-C / SIGTERM); whatever it started was cleaned up."""

    exit_code = 130


class OutputClosed(DockrunError):
    """The reader of dockrun's output went away (a closed pipe); the run was cancelled. The exit
    code is a shell's for a process ended by SIGPIPE."""

    exit_code = 141
