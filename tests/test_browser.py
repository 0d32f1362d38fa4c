"""CORS in a real browser: Debian's headless chromium loads a page from one loopback origin
that POSTs JSON to the API on another port (a preflight first), and the test reads what
the page shows. No browser download: the system's chromium with --dump-dom."""

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.servers import MYPRODUCT, serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run)")

PAGE = """<!doctype html>
<html><body><pre id="out">pending</pre><script>
fetch("%(api)s/api/v0/echo/read", {
  method: "POST",
  headers: {"Content-Type": "application/json"},
  body: JSON.stringify({hello: "browser"}),
}).then(r => r.json().then(j => "answer " + r.status + " " + JSON.stringify(j)))
  .catch(e => "blocked " + e.name)
  .then(text => { document.getElementById("out").textContent = text; });
</script></body></html>
"""


@contextlib.contextmanager
def page_server(page: dict[str, str]) -> Iterator[str]:
    """A page on its own loopback origin (a plain HTTP server in a thread); ``page["html"]``
    may be set after it started, once the API's address is known."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = page["html"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def shown_by(url: str, profile: Path) -> str:
    """What the page shows once its fetch settled; chromium in its own session, killed as a
    group whatever happens (a hung fetch would hang --dump-dom)."""
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}",
               "--virtual-time-budget=5000", "--dump-dom", url]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, start_new_session=True)  # fmt: skip
    try:
        out, _ = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    start = out.index('<pre id="out">') + len('<pre id="out">')
    return out[start:out.index("</pre>", start)]


def test_a_page_on_an_allowed_origin_calls_the_api_and_another_is_blocked(tmp_path):
    page: dict[str, str] = {"html": ""}
    with page_server(page) as allowed, page_server(page) as stranger, \
            serving(MYPRODUCT, tmp_path, "--cors-origin", allowed) as api:  # fmt: skip
        page["html"] = PAGE % {"api": api.url}
        answer = shown_by(allowed, tmp_path / "profile-allowed")
        blocked = shown_by(stranger, tmp_path / "profile-stranger")
    assert answer == 'answer 200 {"hello":"browser","server":"myproduct"}'
    assert blocked == "blocked TypeError"
