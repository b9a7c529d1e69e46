"""What a resolved project source is. Kept on its own so that every resolver (folder, Git) can
return it without importing the others."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    """A resolved project source.

    ``root`` is the project root on the host (the subdirectory already applied). ``key`` identifies
    the code: the commit plus subdirectory for a clean Git checkout, else a content hash of the
    tree. ``uri`` is safe to show and store (credentials redacted).
    """

    uri: str
    root: Path
    key: str
    commit: str | None = None
    dirty: bool = False
    subdirectory: str = ""

