"""What a project URI names, told from its text alone (cheap: every run asks, before any import of
the archive or Git machinery)."""
from __future__ import annotations

import os
from urllib.parse import urlsplit

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
HTTP = ("http://", "https://")


def is_archive_uri(uri: str) -> bool:
    """Does ``uri`` (``#subdirectory`` allowed) name a project archive rather than a folder or Git?"""
    base = uri.partition("#")[0]
    lower = base.lower()
    if lower.startswith(HTTP):
        path = urlsplit(base).path  # a query (a signed URL's token) is not part of the name
    elif lower.startswith("file://"):
        path = base
    elif "://" in base or lower.startswith("git+") or os.path.isdir(os.path.expanduser(base)):
        return False  # a folder may be called x.zip; other schemes are Git's
    else:
        path = base
    return path.lower().endswith(ARCHIVE_SUFFIXES)
