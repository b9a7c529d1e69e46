"""A tracking server's replies are someone else's text: a login page answering 200, a proxy's
JSON without the fields MLflow gives, an ID that is a list or carries terminal sequences. Each is
one line (exit 2) naming the tracking URI, no traceback, nothing run or recorded. Through the real
CLI against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import write_project

pytestmark = pytest.mark.usefixtures("no_leaks")

REPLIES = {
    "a login page": (b"<html><body>Sign in</body></html>", "text/html"),
    "an empty object": (b"{}", "application/json"),
    "a JSON list": (b"[1, 2]", "application/json"),
    "IDs that are lists": (json.dumps({"experiment": {"experiment_id": ["1"]},
                                       "run": {"info": {"run_id": ["a"]}}}).encode(), "application/json"),
    "IDs with terminal sequences": (json.dumps({"experiment": {"experiment_id": "1\x1b]0;owned\x07"},
                                                "run": {"info": {"run_id": "r\x1b[2K"}}}).encode(),
                                    "application/json"),
}


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    body, kind = REPLIES[request.param]

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _any

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("server", list(REPLIES), indirect=True)
@pytest.mark.parametrize("experiment", [(), ("--experiment-name", "exp")], ids=["default", "named"])
def test_a_tracking_servers_odd_reply_is_one_line(cli, tmp_path: Path, base_image: str, home: Path,
                                                  server: str, experiment: tuple[str, ...]) -> None:
    root = write_project(tmp_path / "proj", {"MLproject": (
        f"name: tracked\ndocker_env:\n  image: {base_image}\nentry_points:\n  main:\n    command: \"echo ran\"\n")})
    r = cli("run", str(root), "-q", "--tracking-uri", server, *experiment)
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dockrun: error: --tracking-uri {server}"), r.err
    assert "\x1b" not in r.err and "ran" not in r.out
    assert not (home / "runs").is_dir() or not any((home / "runs").iterdir())
