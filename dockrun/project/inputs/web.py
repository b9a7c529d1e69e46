"""http:// and https:// inputs: urllib, one conditional GET per run.

A file is fetched again only when the server says it changed: the request carries the last
download's ETag (If-None-Match) and Last-Modified (If-Modified-Since), a 304 keeps the copy, and a
200 whose ETag and size match the copy's is closed unread (servers that ignore conditional
requests). Credentials in the URL (user:password@) become a Basic header sent to that origin alone
(httpauth); the URL is only ever shown with userinfo and query redacted.
"""
from __future__ import annotations

import http.client
import os
import posixpath
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Callable
from urllib.parse import unquote, urlsplit

from ...errors import ParameterError
from ...httpauth import basic, open_url, split_userinfo
from .local import Download, Fetched, Fingerprint, safe_rel, write_aside


def fetch(d: Download, save: Callable[[Mapping[str, Fingerprint]], None]) -> Fetched:
    parts = urlsplit(d.uri)
    if not parts.hostname:
        raise ParameterError(f"{d.where}: expected http(s)://HOST/PATH")
    name = safe_rel(posixpath.basename(unquote(parts.path)) or parts.hostname, d, unquote(parts.path))
    local = d.root / name
    known = d.known.get(name) if local.is_file() else None
    request, credentials = _request(d.uri, known)
    try:
        with open_url(request, credentials, 60, _tls()) as resp:
            got = {"etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified"),
                   "size": _int(resp.headers.get("Content-Length"))}
            if known and _same(known, got):
                d.log(f"using the downloaded copy of {d.shown} (unchanged)")
                return Fetched(str(local), {name: known})
            save({})  # forget the old copy's fingerprint until the new one is complete
            d.log(f"downloading {d.shown}")
            write_aside(local, lambda tmp: _copy(resp, tmp))
    except urllib.error.HTTPError as e:
        if e.code == 304 and known:
            d.log(f"using the downloaded copy of {d.shown} (unchanged)")
            return Fetched(str(local), {name: known})
        raise ParameterError(f"{d.where}: the server answered {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        hint = " (set SSL_CERT_FILE to your CA bundle)" if isinstance(reason, ssl.SSLCertVerificationError) else ""
        raise ParameterError(f"{d.where}: cannot download ({reason}){hint}") from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # a dropped connection, a bad URL
        raise ParameterError(f"{d.where}: cannot download ({e.__class__.__name__}: {e})") from None
    got["size"] = local.stat().st_size
    return Fetched(str(local), {name: got})


def _request(uri: str, known: Fingerprint | None) -> tuple[urllib.request.Request, dict[str, str]]:
    """The request, and the credentials its URL carries (sent to its own origin alone)."""
    clean, user, password = split_userinfo(uri)
    request = urllib.request.Request(clean, headers={"User-Agent": "dockrun"})
    if known and known.get("etag"):
        request.add_header("If-None-Match", known["etag"])
    if known and known.get("last_modified"):
        request.add_header("If-Modified-Since", known["last_modified"])
    return request, basic(user, password) if user or password else {}


def _same(known: Fingerprint, got: Fingerprint) -> bool:
    """Only a validator the server gave (ETag, else Last-Modified) can vouch for the copy."""
    if not (got["etag"] or got["last_modified"]):
        return False
    return (known.get("etag"), known.get("last_modified"), known.get("size")) == \
        (got["etag"], got["last_modified"], got["size"] if got["size"] is not None else known.get("size"))


def _tls() -> ssl.SSLContext:
    cafile = os.environ.get("SSL_CERT_FILE")
    return ssl.create_default_context(cafile=cafile if cafile and os.path.isfile(cafile) else None)


def _copy(resp, tmp: str) -> None:  # noqa: ANN001 - an http.client response
    with open(tmp, "wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
