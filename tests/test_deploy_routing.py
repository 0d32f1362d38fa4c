"""Routing across hosts, with real nginx: a three-host config rendered by `fab render`,
its front's site served by nginx on 127.0.0.1, its two pools by apiphant workers on
127.0.0.2 and 127.0.0.3 bound as their own hosts' Supervisor configs say.
"""

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy_helpers import (
    fab,
    free_port,
    nginx_command,
    port_open,
    private_nginx,
    stop_process,
)
from tests.servers import raw_exchange

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PRODUCT = "routedprod"
LOGS = Path(f"/var/log/{PRODUCT}")

pytestmark = pytest.mark.skipif(
    not os.path.exists(NGINX) or os.geteuid() != 0, reason="needs nginx, as root (logs in /var/log)"
)

HANDLER = """
import os


def read(request, http):
    return {"pool": os.environ["POOL"], "target": __name__.rsplit(".", 1)[-1],
            "scheme": http.scheme}


def create(request, http):
    return read(request, http)


def delete(request):
    return {"x": 1 / 0}
"""


def make_product(folder: Path, front: int, local: int, port_a: int, port_b: int,
                 nginx: str = "", top: str = "", api: str = "") -> Path:  # fmt: skip
    product = folder / PRODUCT
    for part in ("", "api", "api/v0"):
        (product / part).mkdir(parents=True, exist_ok=True)
        (product / part / "__init__.py").write_text("")
    for target in ("echo", "reports", "sales"):
        (product / "api" / "v0" / f"{target}.py").write_text(HANDLER)
    (product / "deploy.toml").write_text(
        textwrap.dedent(
            f"""
            product = "{PRODUCT}"
            server_names = ["api.example.com"]
            {top}

            [api]
            max_body = "64K"
            {api}

            [nginx]
            listen = "127.0.0.1:{front}"
            local_port = {local}
            {nginx}

            [hosts.front]
            ssh = "root@front.example.com"
            roles = ["nginx"]

            [hosts.a]
            ssh = "root@a.example.com"
            private_address = "127.0.0.2"
            roles = ["api"]
            workers = 1
            first_port = {port_a}

            [hosts.b]
            ssh = "root@b.example.com"
            private_address = "127.0.0.3"
            roles = ["api"]
            workers = 1
            first_port = {port_b}

            [pools.a]
            hosts = ["a"]

            [pools.b]
            hosts = ["b"]
            targets = ["v0/reports"]
            """
        )
    )
    return product


def exchange(url: str, body: bytes = b"{}", host: str = "api.example.com") -> tuple[int, dict]:
    """POST, the answer's status and headers; the body, JSON-decoded, under "body"."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, {**response.headers, "body": json.loads(response.read())}
    except urllib.error.HTTPError as error:
        return error.code, {**error.headers, "body": json.loads(error.read() or b"null")}


def post(url: str, body: bytes = b"{}", host: str = "api.example.com") -> tuple[int, dict]:
    status, answer = exchange(url, body, host)
    return status, answer["body"]


def answer(pool: str, target: str) -> dict:
    """What HANDLER answers over plain HTTP."""
    return {"pool": pool, "target": target, "scheme": "http"}


def wait_for(host: str, port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 20
    while not port_open(host, port):
        assert proc.poll() is None, f"{what} exited"
        assert time.monotonic() < deadline, f"{what} did not listen on {host}:{port}"
        time.sleep(0.05)


@dataclass
class Front:
    url: str
    local_url: str
    out: Path
    ports: tuple[int, int]


@contextlib.contextmanager
def front_and_pools(tmp_path: Path, nginx_toml: str = "",
                    worker_env: dict[str, str] | None = None, top: str = "",
                    tls_dir: Path | None = None, api: str = "") -> Iterator[Front]:  # fmt: skip
    """The three-host config rendered by `fab render`; its front's site served by a real nginx,
    its pools by apiphant workers on 127.0.0.2 and 127.0.0.3."""
    front, local = free_port(), free_port()
    port_a, port_b = free_port("127.0.0.2"), free_port("127.0.0.3")
    product = make_product(tmp_path, front, local, port_a, port_b, nginx_toml, top, api)
    out = tmp_path / "rendered"
    rendered = fab("render", f"--product={product}", "--out", str(out))
    assert rendered.returncode == 0, rendered.stdout
    if tls_dir is not None:  # tls = "files": the release's copy, here
        site = out / "front" / "nginx.conf"
        site.write_text(re.sub(rf"/opt/{PRODUCT}/releases/[0-9]+/tls/", f"{tls_dir}/",
                               site.read_text()))  # fmt: skip
    procs: list[subprocess.Popen] = []
    made_logs = not LOGS.exists()
    LOGS.mkdir(exist_ok=True)
    try:
        for pool, host, port in (("A", "127.0.0.2", port_a), ("B", "127.0.0.3", port_b)):
            log = (tmp_path / f"worker-{pool}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "apiphant", str(product), f"{host}:{port}"],
                    env=dict(os.environ, POOL=pool, APIPHANT_TRUSTED_PROXIES="127.0.0.1",
                     **(worker_env or {})),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            wait_for(host, port, procs[-1], f"worker {pool}")

        conf = tmp_path / "nginx.conf"  # the deploy's own main config, privately
        main = (out / "front" / "nginx-main.conf").read_text()
        conf.write_text(private_nginx(main, tmp_path, out / "front" / "nginx.conf"))
        nginx = nginx_command(tmp_path, conf)
        checked = subprocess.run([*nginx, "-t", "-q"], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        procs.append(subprocess.Popen(nginx, stderr=subprocess.DEVNULL))
        wait_for("127.0.0.1", front, procs[-1], "nginx")
        yield Front(f"http://127.0.0.1:{front}", f"http://127.0.0.1:{local}", out,
                    (port_a, port_b))  # fmt: skip
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        if made_logs:
            shutil.rmtree(LOGS, ignore_errors=True)


def test_targets_are_routed_to_their_pools(tmp_path: Path) -> None:
    with front_and_pools(tmp_path) as front:
        port_a, port_b = front.ports
        out = front.out
        # Each backend host binds its private address, as its own Supervisor config says.
        for host, address in (("a", f"127.0.0.2:{port_a}"), ("b", f"127.0.0.3:{port_b}")):
            supervisor = (out / host / "supervisor.conf").read_text()
            assert f" {PRODUCT} {address} --max-body 65536 " in supervisor
        site = (out / "front" / "nginx.conf").read_text()
        assert "client_max_body_size 65536;" in site
        # The front runs none of the product's programs: its Supervisor only rotates logs.
        front_programs = (out / "front" / "supervisor.conf").read_text()
        assert re.findall(r"^\[program:(.*)\]$", front_programs, re.M) == [f"{PRODUCT}-logrotate"]

        url = front.url
        assert post(f"{url}/api/v0/echo/read") == (200, answer("A", "echo"))
        assert post(f"{url}/api/v0/reports/read") == (200, answer("B", "reports"))
        assert post(f"{url}/api/v0/reports/create") == (200, answer("B", "reports"))
        assert post(f"{url}/api/v0/sales/read") == (200, answer("A", "sales"))
        status, body = post(f"{url}/health")
        assert status == 200 and body["product"] == PRODUCT  # everything else: the default pool
        # The app's body limit is Nginx's: larger gets 413 before any worker sees it, in JSON.
        too_big = b"x" * (64 * 1024 + 1)
        assert post(f"{url}/api/v0/echo/read", too_big) == (
            413, {"error": "413 Request Entity Too Large"})  # fmt: skip

        access = (LOGS / "nginx-access.log").read_text()
        assert re.search(
            rf'"POST /api/v0/reports/read HTTP/1.1" 200 \d+ \S+ 127.0.0.3:{port_b}', access
        )
        assert re.search(
            rf'"POST /api/v0/echo/read HTTP/1.1" 200 \d+ \S+ 127.0.0.2:{port_a}', access
        )


def test_only_the_server_names_reach_the_api_from_outside(tmp_path: Path) -> None:
    """An IP, localhost, no Host or a stranger's name gets the catch-all's JSON 404 with no
    version; the smoke test's loopback listener takes any Host."""
    with front_and_pools(tmp_path) as front:
        echo = "/api/v0/echo/read"
        for host in ("127.0.0.1", "localhost", "evil.example"):
            status, answer = exchange(front.url + echo, host=host)
            assert (status, answer["body"]) == (404, {"error": "404 Not Found"}), host
            assert answer["Server"] == "nginx", answer  # no version
            assert answer["X-Content-Type-Options"] == "nosniff"
        port = int(front.url.rsplit(":", 1)[1])
        no_host = f"POST {echo} HTTP/1.0\r\nContent-Length: 2\r\n\r\n{{}}".encode()
        no_host = raw_exchange("127.0.0.1", port, no_host)
        assert no_host.startswith(b"HTTP/1.1 404 ") and b"Server: nginx\r\n" in no_host, no_host
        # Nginx's own refusals carry no version either.
        bad = raw_exchange("127.0.0.1", port, b"GARBAGE\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400 ") and b"nginx/" not in bad, bad
        assert post(front.local_url + echo, host="localhost") == (
            200, {"pool": "A", "target": "echo", "scheme": "http"})  # fmt: skip


def upstream_connections(address: str) -> int:
    """Established TCP connections to ``address`` (HOST:PORT), as ``ss`` lists them."""
    listed = subprocess.run(["ss", "-Htn", "state", "established", "dst", address],
                            capture_output=True, text=True, check=True, timeout=10)  # fmt: skip
    return len(listed.stdout.splitlines())


def test_the_smoke_tests_way_in_leaves_no_idle_connection_to_a_worker(tmp_path: Path) -> None:
    """Through the loopback listener Nginx asks the worker to close after its answer, so a
    deploy's smoke test leaves nothing a worker restarted by the next deploy waits for while
    it drains; the public listener keeps its keep-alive connection. Nginx would keep an idle
    one 40 s here; the wait for none is bounded well below that."""
    with front_and_pools(tmp_path, "upstream_keepalive_timeout = 40",
                         api="drain_timeout = 60") as front:  # fmt: skip
        worker = f"127.0.0.2:{front.ports[0]}"
        echo = "/api/v0/echo/read"
        assert post(front.local_url + echo, host="localhost")[0] == 200
        for _ in range(200):
            if upstream_connections(worker) == 0:
                break
            time.sleep(0.05)
        assert upstream_connections(worker) == 0
        assert post(front.url + echo)[0] == 200
        assert upstream_connections(worker) == 1  # kept for the next request


def test_rate_limit_answers_429_in_json(tmp_path: Path) -> None:
    with front_and_pools(tmp_path, 'limit_req = "1r/m"\nlimit_req_burst = 2') as front:
        statuses = [exchange(f"{front.url}/api/v0/echo/read") for _ in range(5)]
        assert [s for s, _ in statuses] == [200, 200, 200, 429, 429]  # 1 now + a burst of 2
        status, answer = statuses[-1]
        assert answer["body"] == {"error": "429 Too Many Requests"}
        assert answer["Retry-After"] == "1" and answer["Content-Type"] == "application/json"


def test_one_request_id_in_nginx_worker_log_and_sentry(tmp_path: Path) -> None:
    """Nginx makes the id ($request_id), logs it, passes it on; the worker logs it and tags
    its Sentry event (sentry-sdk's real transport, to a local capture) with it."""
    from tests.sentry_capture import capture_sentry

    with capture_sentry() as sentry:
        with front_and_pools(tmp_path, worker_env=sentry.env()) as front:
            status, answer = exchange(f"{front.url}/api/v0/echo/delete")
            assert status == 500 and answer["body"] == {"error": "500 Internal Server Error"}
            request_id = answer["X-Request-Id"]
            assert re.fullmatch(r"[0-9a-f]{32}", request_id), answer
            [event] = sentry.wait_for(1, timeout=10)
            access = (LOGS / "nginx-access.log").read_text()
        worker_log = (tmp_path / "worker-A.log").read_text()
    assert event["tags"]["request_id"] == request_id
    [line] = [x for x in access.splitlines() if "/api/v0/echo/delete" in x]
    assert line.endswith(f" {request_id}")
    [failed] = [x for x in worker_log.splitlines() if "/api/v0/echo/delete failed" in x]
    assert failed.startswith("ERROR at app._report:") and f"] [{request_id}] " in failed


def test_https_reaches_the_handler_and_sentry_as_https(tmp_path: Path) -> None:
    """tls = "files" rendered, served by real nginx with a certificate made here: the handler's
    http.scheme and the Sentry event's scheme tag say https (X-Forwarded-Proto from Nginx);
    over port 80 a POST is redirected with 308, its method and body kept by the client."""
    from tests.sentry_capture import capture_sentry

    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tls_dir / "privkey.pem"),
                    "-out", str(tls_dir / "fullchain.pem"), "-days", "1", "-subj",
                    "/CN=api.example.com", "-addext", "subjectAltName=DNS:api.example.com"],
                   check=True, capture_output=True)  # fmt: skip
    shutil.copy(tls_dir / "fullchain.pem", tls_dir / "issuer.pem")
    secrets = tmp_path / "s.env"
    secrets.write_text("X=1\n")
    port = free_port()
    top = f'tls = "files"\ndomains = ["api.example.com"]\nsecrets = "{secrets}"'
    with capture_sentry() as sentry:
        with front_and_pools(tmp_path, f'tls_listen = "127.0.0.1:{port}"', sentry.env(), top,
                             tls_dir) as front:  # fmt: skip
            context = ssl.create_default_context(cafile=str(tls_dir / "fullchain.pem"))
            answers = []
            for path in ("/api/v0/echo/read", "/api/v0/echo/delete"):
                with socket.create_connection(("127.0.0.1", port), 5) as sock:
                    with context.wrap_socket(sock, server_hostname="api.example.com") as tls:
                        tls.sendall(f"POST {path} HTTP/1.1\r\nHost: api.example.com\r\n"
                                    "Content-Length: 2\r\nConnection: close\r\n\r\n{}".encode())
                        answers.append(b"".join(iter(lambda: tls.recv(65536), b"")))  # noqa: B023
            [event] = sentry.wait_for(1, timeout=10)
            conn = http.client.HTTPConnection(front.url.removeprefix("http://"), timeout=5)
            conn.request("POST", "/api/v0/echo/read", b"{}", {"Host": "api.example.com"})
            plain = conn.getresponse()
            conn.close()
    head, _, body = answers[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and json.loads(body)["scheme"] == "https"
    assert answers[1].startswith(b"HTTP/1.1 500")
    assert event["tags"]["scheme"] == "https" and "echo/delete" in event["tags"]["route"]
    assert plain.status == 308
    assert plain.getheader("Location") == f"https://api.example.com:{port}/api/v0/echo/read"
