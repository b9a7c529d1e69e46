"""The Databricks REST adapter (DBFS API 2.0, the Files API for volumes, Jobs API 2.2): urllib,
tenacity retries, headers from the workspace's credentials (the SDK's when installed); a 4xx is a
one-line DatabricksError. Shared by the Databricks backend and by `dbfs:/` path inputs, so it sits
below both.

Retries: a call that is safe to repeat (reads, `put` with overwrite, a submit with its idempotency
token, ...) is retried on transport errors, 429 and 5xx. `add-block` appends, and `close` / `move`
fail when repeated after they took effect, so those are retried only on 429 (refused before any
effect); any other failure of theirs is ``Unsure`` and the upload is redone as a whole. 429 and 503
honour ``Retry-After`` for up to DOCKRUN_DATABRICKS_RETRY_S seconds (default 300)."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sys
from collections.abc import Mapping
from typing import Any, Callable

from ..config import seconds
from ..errors import ConfigError, RemoteError
from ..httpauth import open_url
from .workspace import Workspace

BLOCK = 1 << 20  # DBFS put and add-block take at most 1 MB per call
RETRY_S = 300.0
ATTEMPTS = 4  # for transport errors and 5xx other than 503: a wrong host should fail soon
LOUD_WAIT_S = 2.0  # a wait at least this long is said, so a busy workspace does not look like a hang
UPLOAD_ATTEMPTS = 3
# Not safe to repeat blindly: the first try may have taken effect with its reply lost.
NOT_IDEMPOTENT = frozenset({"2.0/dbfs/add-block", "2.0/dbfs/close", "2.0/dbfs/move"})


class _Retry(Exception):
    def __init__(self, message: str, throttled: bool = False, after: float | None = None):
        super().__init__(message)
        self.throttled, self.after = throttled, after


class Unsure(RemoteError):
    """A call that must not be repeated failed without saying whether it took effect."""


def _say(line: str) -> None:
    print(f"dockrun: {line}", file=sys.stderr, flush=True)


class DatabricksClient:
    def __init__(self, ws: Workspace, log: Callable[[str], None] | None = None):
        self.ws = ws
        self.log = log or _say

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
             query: Mapping[str, Any] | None = None, data: bytes | None = None,
             binary: bool = False) -> dict[str, Any]:
        """One API call, retried as its kind allows. ``data``: a raw body (the Files API); a HEAD
        answers with the reply's headers (lower-case names); ``binary``: the reply's raw bytes as
        ``{"data": ...}`` (a Files API download)."""
        from tenacity import RetryCallState, retry, retry_if_exception

        budget = _budget()
        once_only = path in NOT_IDEMPOTENT

        def retryable(e: BaseException) -> bool:
            return isinstance(e, _Retry) and (e.throttled or not once_only)

        def wait(state: RetryCallState) -> float:
            e = state.outcome.exception() if state.outcome else None
            after = getattr(e, "after", None)
            return after if after is not None else min(0.5 * 2 ** (state.attempt_number - 1), 8.0)

        def stop(state: RetryCallState) -> bool:
            e = state.outcome.exception() if state.outcome else None
            if not getattr(e, "throttled", False) and state.attempt_number >= ATTEMPTS:
                return True
            return state.seconds_since_start + wait(state) > budget

        def before_sleep(state: RetryCallState) -> None:
            seconds = wait(state)
            if seconds >= LOUD_WAIT_S:
                self.log(f"Databricks {self.ws.host}: {state.outcome.exception()}; "  # type: ignore[union-attr]
                         f"waiting {seconds:.0f} s before trying again")

        once = retry(retry=retry_if_exception(retryable), stop=stop, wait=wait, before_sleep=before_sleep,
                     reraise=True)(self._once)
        try:
            return once(method, path, body, query, data, binary)
        except _Retry as e:
            kind = Unsure if once_only and not e.throttled else RemoteError
            raise kind(f"Databricks {self.ws.host}: {e}") from None

    def _once(self, method: str, path: str, body: Mapping[str, Any] | None,
              query: Mapping[str, Any] | None, raw_body: bytes | None, binary: bool) -> dict[str, Any]:
        import http.client
        import urllib.error
        import urllib.parse
        import urllib.request

        url = f"{self.ws.host}/api/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else raw_body
        kind_sent = "application/octet-stream" if raw_body is not None else "application/json"
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": kind_sent, "User-Agent": "dockrun"})
        credentials = self._auth()  # sent to the workspace's origin alone, never on to a redirect's
        try:
            with open_url(req, credentials, 60) as resp:
                raw = resp.read()
                kind = resp.headers.get("Content-Type", "")
                if method == "HEAD" and not kind.startswith("text/html"):
                    return {k.lower(): v for k, v in resp.headers.items()}
                if binary and not kind.startswith("text/html"):
                    return {"data": raw}
                if kind.startswith("text/html"):
                    raw = b"<html>"  # a login page, also where no body was expected
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                detail = json.loads(text)
                if not isinstance(detail, dict):
                    raise ValueError
            except ValueError:
                detail = {"message": " ".join(text.split())[:200]}
            code = str(detail.get("error_code", ""))
            if e.code in (429, 503):
                raise _Retry(f"{e.code} {code}".strip(), throttled=True,
                             after=_retry_after(e.headers.get("Retry-After"))) from None
            if e.code >= 500:
                raise _Retry(f"{e.code} {code}".strip()) from None
            raise DatabricksError(e.code, code, str(detail.get("message", ""))) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise _Retry(f"cannot reach the workspace ({getattr(e, 'reason', None) or type(e).__name__})") from None
        try:
            answer = json.loads(raw or b"{}")
            if not isinstance(answer, dict):
                raise ValueError
        except ValueError:
            # An SSO or login page (private link, a proxy) answers 200 with HTML.
            raise RemoteError(f"Databricks {self.ws.host}: /api/{path} answered with {kind or 'no content type'}, "
                              "not the API's JSON (a login page? check DATABRICKS_HOST and the network path)") from None
        return answer

    def _auth(self) -> dict[str, str]:
        """This workspace's headers, fresh from the SDK (an OAuth token is fetched or refreshed here)."""
        try:
            return self.ws.headers()
        except OSError as e:  # the token endpoint did not answer (requests' errors are OSErrors)
            raise _Retry(f"cannot get an OAuth token ({type(e).__name__})") from None
        except ValueError as e:  # refused: a wrong client ID or secret, a disabled service principal
            raise ConfigError(f"Databricks {self.ws.host}: credentials refused: {' '.join(str(e).split())}") from None

    # Files: a path under /Volumes/ is a Unity Catalog volume (the Files API), anything else DBFS.
    def size(self, path: str) -> int | None:
        """A file's size, or None when there is no file there."""
        if is_volume(path):
            try:
                got = self.call("HEAD", f"2.0/fs/files{_quoted(path)}")
            except DatabricksError as e:
                if e.status == 404:
                    return None
                raise
            return int(got.get("content-length", -1))
        try:
            status = self.call("GET", "2.0/dbfs/get-status", query={"path": _dbfs_path(path)})
        except DatabricksError as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST" or e.status == 404:
                return None
            raise
        return None if status.get("is_dir") else int(status.get("file_size", -1))

    def exists(self, path: str) -> bool:
        if is_volume(path):
            return self.size(path) is not None
        try:
            self.call("GET", "2.0/dbfs/get-status", query={"path": _dbfs_path(path)})
            return True
        except DatabricksError as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST" or e.status == 404:
                return False
            raise

    def read(self, path: str) -> bytes | None:
        """A file's bytes, or None when there is no file there. Meant for small files (a launcher):
        DBFS hands them out 1 MB per call, the Files API in one GET."""
        if is_volume(path):
            try:
                return bytes(self.call("GET", f"2.0/fs/files{_quoted(path)}", binary=True)["data"])
            except DatabricksError as e:
                if e.status == 404:
                    return None
                raise
        chunks = []
        offset = 0
        while True:
            try:
                got = self.call("GET", "2.0/dbfs/read", query={"path": _dbfs_path(path), "offset": offset,
                                                               "length": BLOCK})
            except DatabricksError as e:
                if e.error_code == "RESOURCE_DOES_NOT_EXIST" or e.status == 404:
                    return None
                raise
            chunk = base64.b64decode(got.get("data") or "")
            chunks.append(chunk)
            offset += len(chunk)
            if len(chunk) < BLOCK:  # a short read is the end of the file
                return b"".join(chunks)

    def ensure(self, path: str, data: bytes) -> bool:
        """Make ``path`` hold exactly ``data``, checked by content: whoever can write there could put
        other code of the same size under the same name, and the cluster runs what it finds. Uploaded
        when missing or different, then read back. True when it uploaded."""
        want = hashlib.sha256(data).digest()
        # A size that differs needs no download (and a large file put there is never read).
        if self.size(path) == len(data) and _digest(self.read(path)) == want:
            return False
        self.upload(path, data)
        if _digest(self.read(path)) != want:
            raise RemoteError(f"Databricks {self.ws.host}: {path} holds other content than was uploaded "
                              "(another writer in that folder?)")
        return True

    def upload(self, path: str, data: bytes) -> None:
        """Put a file whole, or not at all: a block that may have been applied is never resent into
        the same stream; the upload starts over instead, and its size is checked at the end."""
        if is_volume(path):
            self._upload_to_volume(path, data)
            return
        path = _dbfs_path(path)
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            try:
                self._upload_once(path, data)
            except Unsure:
                if attempt == UPLOAD_ATTEMPTS:
                    raise
                continue
            if self._uploaded(path, data, last=attempt == UPLOAD_ATTEMPTS):
                return

    def _uploaded(self, path: str, data: bytes, last: bool) -> bool:
        """Whether ``path`` now holds as many bytes as were sent; after the last attempt, an error."""
        got = self.size(path)
        if got != len(data) and last:
            raise RemoteError(f"Databricks {self.ws.host}: {path} holds {got} bytes after the upload, "
                              f"not {len(data)}")
        return got == len(data)

    def _upload_to_volume(self, path: str, data: bytes) -> None:
        """One PUT (up to 5 GiB): the Files API writes exactly the bytes of one request, all or nothing,
        and has no move; overwrite makes it safe to repeat, so it is retried like a read. The size is
        checked afterwards, and the launcher checks the digest."""
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            self.call("PUT", f"2.0/fs/files{_quoted(path)}", query={"overwrite": "true"}, data=data)
            if self._uploaded(path, data, last=attempt == UPLOAD_ATTEMPTS):
                return

    def user_name(self) -> str:
        """Who the credentials are (a user's e-mail, a service principal's application ID)."""
        return str(self.call("GET", "2.0/preview/scim/v2/Me").get("userName") or "")

    def _upload_once(self, path: str, data: bytes) -> None:
        if len(data) <= BLOCK:  # one call, all or nothing, and safe to repeat (overwrite)
            self.call("POST", "2.0/dbfs/put", {"path": path, "contents": base64.b64encode(data).decode(),
                                               "overwrite": True})
            return
        # Streamed to a name of its own, then moved into place: nobody sees a half-written file.
        part = f"{path}.part-{secrets.token_hex(6)}"
        try:
            handle = self.call("POST", "2.0/dbfs/create", {"path": part, "overwrite": True})["handle"]
            for i in range(0, len(data), BLOCK):
                self.call("POST", "2.0/dbfs/add-block", {"handle": handle,
                                                         "data": base64.b64encode(data[i:i + BLOCK]).decode()})
            self.call("POST", "2.0/dbfs/close", {"handle": handle})
            if self.size(part) != len(data):
                raise Unsure(f"Databricks {self.ws.host}: {part} has the wrong size after the upload")
            if self.size(path) is not None:  # a stale or corrupt copy under the final name
                self.call("POST", "2.0/dbfs/delete", {"path": path})
            try:
                self.call("POST", "2.0/dbfs/move", {"source_path": part, "destination_path": path})
            except DatabricksError as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":  # else: a concurrent upload of the same content
                    raise
        finally:
            try:
                self.call("POST", "2.0/dbfs/delete", {"path": part})
            except RemoteError:
                pass  # an orphaned part file wastes space, nothing else

    # Jobs API 2.2 (what 2.1 was for one-time runs, but runs/get gives array properties such as
    # `tasks` 100 at a time: a dockrun run has one task, always on the first page)
    def submit(self, body: Mapping[str, Any]) -> str:
        return str(self.call("POST", "2.2/jobs/runs/submit", body)["run_id"])

    def get(self, run_id: str) -> dict[str, Any]:
        return self.call("GET", "2.2/jobs/runs/get", query={"run_id": run_id})

    def cancel(self, run_id: str) -> None:
        self.call("POST", "2.2/jobs/runs/cancel", {"run_id": int(run_id)})

    def output(self, task_run_id: str) -> dict[str, Any]:
        return self.call("GET", "2.2/jobs/runs/get-output", query={"run_id": task_run_id})


def _budget() -> float:
    return seconds("DOCKRUN_DATABRICKS_RETRY_S")


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the form Databricks sends); an HTTP date is left to the backoff."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _digest(data: bytes | None) -> bytes | None:
    return None if data is None else hashlib.sha256(data).digest()


def is_volume(path: str) -> bool:
    return path.startswith("/Volumes/")


def _quoted(path: str) -> str:
    import urllib.parse

    return urllib.parse.quote(path, safe="/")


def _dbfs_path(path: str) -> str:
    return "/" + path[len("dbfs:"):].lstrip("/") if path.startswith("dbfs:") else path


class DatabricksError(RemoteError):
    def __init__(self, status: int, error_code: str, message: str):
        code = "" if error_code == str(status) else f" {error_code}"  # a bad token's body says 403 again
        super().__init__(f"Databricks answered {status}{code}: {message}".strip())
        self.status, self.error_code = status, error_code
        # A refused token or request is the user's to fix (exit 2, like a Git auth failure).
        self.exit_code = 2 if 400 <= status < 500 else 1
