"""Every HTTP call that carries a credential (a token, a user's password, an SDK's auth headers)
goes through ``open_url``: the credential goes to the origin (scheme, host and port) it was given
for, and to no other, redirects included.

urllib copies a request's ordinary headers to wherever a redirect points, another host or plain
http alike; "unredirected" headers it drops on every redirect, the same host's included. Here the
credential is an unredirected header, put back on a redirect only when the new URL has the
original's origin. urllib is imported on use: a local run of a local project never pays for it.
"""
from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    import ssl
    import urllib.request
    from email.message import Message
    from http.client import HTTPResponse

_DEFAULT_PORTS = {"http": 80, "https": 443}


def redact(uri: str) -> str:
    """The URI with any userinfo and query (pre-signed URLs carry their token there) replaced."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri.split("?", 1)[0]
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: what a credential is bound to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # not a number: no origin a credential could match
        return scheme, "", -1
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def basic(user: str, password: str) -> dict[str, str]:
    """The Authorization header of HTTP Basic authentication."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def split_userinfo(url: str) -> tuple[str, str, str]:
    """(the URL without ``user:password@``, user, password), user and password unquoted."""
    parts = urlsplit(url)
    clean = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return clean, unquote(parts.username or ""), unquote(parts.password or "")


def open_url(request: urllib.request.Request, credentials: Mapping[str, str], timeout: float,
             context: ssl.SSLContext | None = None) -> HTTPResponse:
    """``urllib.request.urlopen(request)``, sending ``credentials`` (header name -> value) to the
    request's own origin alone; a redirect elsewhere is followed without them."""
    import urllib.request

    home = origin(request.full_url)
    for name, value in credentials.items():
        request.remove_header(name)  # an ordinary header of the same name would follow any redirect
        request.add_unredirected_header(name, value)

    class SameOrigin(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                             headers: Message, newurl: str) -> urllib.request.Request | None:
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None and origin(new.full_url) == home:
                for name, value in credentials.items():
                    new.add_unredirected_header(name, value)
            return new

    handlers: list[urllib.request.BaseHandler] = [SameOrigin()]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers).open(request, timeout=timeout)
