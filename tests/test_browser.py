"""CORS in a real browser: Debian's headless chromium loads a page from one loopback origin
that POSTs JSON to the API on another port (a preflight first), and the test reads what
the page shows. No browser download: the system's chromium with --dump-dom."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.servers import MYPRODUCT, REPO, serving
from tests.support.ports import free_port

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


#: Run in a network namespace of its own (nothing but loopback: the network is off): serve
#: the product, wait for it, let chromium load the docs page, print its DOM, stop the server.
OFFLINE = """
import socket, subprocess, sys, time
product, port, chromium, profile = sys.argv[1:]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
server = subprocess.Popen([sys.executable, "-m", "apiphant", "serve", product,
                           "127.0.0.1:" + port], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
try:
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", int(port)), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=" + profile,
                    "--virtual-time-budget=10000", "--dump-dom",
                    "http://127.0.0.1:" + port + "/api/docs"],
                   stderr=subprocess.DEVNULL, timeout=90)
finally:
    server.terminate()
    server.wait(10)
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a network namespace needs root and unshare")  # fmt: skip
def test_the_docs_page_lists_every_operation_with_the_network_off(tmp_path):
    """/api/docs in a namespace with no network but loopback: Swagger UI's files come from
    the server (a package), never a CDN, and the page shows every route of the document."""
    from apiphant.openapi import build
    from apiphant.product import locate
    from apiphant.routing import load

    command = ["unshare", "--net", sys.executable, "-c", OFFLINE, str(MYPRODUCT),
               str(free_port()), CHROMIUM, str(tmp_path / "profile")]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, cwd=REPO)  # fmt: skip
    try:
        dom, errors = process.communicate(timeout=150)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    product = locate(MYPRODUCT)
    expected = sorted(build(product.name, load(product))["paths"])
    shown = re.findall(r'class="opblock-summary-method">([A-Z]+)</span>.*?data-path="([^"]+)"',
                       dom)  # fmt: skip
    assert sorted(path for _, path in shown) == expected, errors[-2000:] + dom[-2000:]
    assert {method for method, _ in shown} == {"POST"}
