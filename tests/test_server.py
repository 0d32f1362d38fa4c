"""The real `apiphant` process on loopback: protocol, limits, timeouts, drain."""

import http.client
import json
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.servers import MYPRODUCT, raw_exchange, serving

SLOW = {"api/v0/slow.py": """
    import time
    def read(request):
        time.sleep(request.get("seconds", 1))
        return {"slept": request.get("seconds", 1)}
"""}


def post(conn: http.client.HTTPConnection, path: str, body: bytes, headers=None):
    conn.request("POST", path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


def test_seed_curl_echo_byte_for_byte(live):
    response = requests.post(f"{live.url}/api/v0/echo/read", data=b'{"hello": "world"}')
    assert response.status_code == 200
    assert response.content == b'{"hello": "world", "server": "myproduct"}'
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Length"] == str(len(response.content))
    assert "close" not in response.headers.get("Connection", "")


def test_start_up_line_names_product_and_a_url_that_answers(live):
    """The URL a newcomer clicks or curls from the banner answers 200 (/api would be 404)."""
    line = next(line for line in live.log().splitlines() if "Apiphant is serving" in line)
    assert f"Apiphant is serving myproduct ({MYPRODUCT}) with " in line
    assert "INFO at cli.serve:" in line
    urls = re.findall(r"https?://[^\s;,]+", line)
    assert urls and all(url.startswith(live.url + "/") for url in urls), line
    for url in urls:
        assert requests.get(url, timeout=5).status_code == 200, url


def test_keep_alive_serves_many_requests_on_one_connection(live):
    conn = http.client.HTTPConnection(live.host, live.port, timeout=5)
    response, _ = post(conn, "/api/v0/echo/read", b"{}")
    first_socket = conn.sock
    for n in range(20):
        response, body = post(conn, "/api/v0/echo/read", json.dumps({"n": n}).encode())
        assert json.loads(body) == {"n": n, "server": "myproduct"}
    assert conn.sock is first_socket
    conn.close()


def test_errors_keep_the_connection_usable(selfcheck_live):
    live = selfcheck_live
    conn = http.client.HTTPConnection(live.host, live.port, timeout=5)
    for path, body, status in [
        ("/api/v0/nothing/read", b"{}", 404),
        ("/api/v0/self/create", b'{"test": "1/0"}', 500),
        ("/api/v0/self/create", b"[]", 400),
        ("/api/v0/echo/read", b"{}", 200),
    ]:
        response, _ = post(conn, path, body)
        assert response.status == status
    conn.close()


def test_500_body_has_no_traceback_but_the_log_does(selfcheck_live):
    live = selfcheck_live
    response = requests.post(f"{live.url}/api/v0/self/create", json={"test": "1/0"})
    assert response.content == b'{"error": "500 Internal Server Error"}'
    deadline = time.monotonic() + 5
    while "ZeroDivisionError" not in live.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Traceback" in live.log() and "self.py" in live.log()


def test_body_over_the_limit_is_413_before_the_body_is_sent(tmp_path):
    with serving(MYPRODUCT, tmp_path, "--max-body", "1K") as live:
        head = (b"POST /api/v0/echo/read HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 104857600\r\n\r\n" + b"{" * 100)
        answer = raw_exchange(live.host, live.port, head)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"Connection: close" in answer
        assert answer.endswith(b'{"error": "413 Request Entity Too Large"}')
        assert requests.post(f"{live.url}/api/v0/echo/read", json={"a": 1}).status_code == 200


def test_chunked_bodies_are_read_and_limited(tmp_path):
    with serving(MYPRODUCT, tmp_path, "--max-body", "1K") as live:
        small = requests.post(f"{live.url}/api/v0/echo/read", data=iter([b'{"a":', b" 1}"]))
        assert small.json() == {"a": 1, "server": "myproduct"}
        big = requests.post(f"{live.url}/api/v0/echo/read", data=iter([b" " * 700] * 3))
        assert big.status_code == 413


def test_idle_keep_alive_connection_is_closed_after_the_timeout(tmp_path):
    with serving(MYPRODUCT, tmp_path, "--keepalive-timeout", "0.5") as live:
        with socket.create_connection((live.host, live.port), timeout=10) as sock:
            started = time.monotonic()
            assert sock.recv(1) == b""
            assert time.monotonic() - started < 8


def test_slowloris_headers_get_408_while_others_are_served(tmp_path):
    with serving(MYPRODUCT, tmp_path, "--header-timeout", "1") as live:
        with socket.create_connection((live.host, live.port), timeout=10) as sock:
            sock.sendall(b"POST /api/v0/echo/read HTTP/1.1\r\n")
            answer = b""
            for _ in range(40):  # a header byte every 0.1 s, never finishing
                try:
                    sock.sendall(b"X")
                except OSError:
                    break
                assert requests.post(f"{live.url}/api/v0/echo/read", json={}).ok
                sock.settimeout(0.1)
                try:
                    answer += sock.recv(4096)
                except TimeoutError:
                    continue
                if answer:
                    break
            assert answer.startswith(b"HTTP/1.1 408 ")


def test_max_connections_bounds_concurrent_connections(tmp_path):
    with serving(MYPRODUCT, tmp_path, "--max-connections", "2") as live:
        held = [http.client.HTTPConnection(live.host, live.port, timeout=5) for _ in range(2)]
        for conn in held:
            assert post(conn, "/api/v0/echo/read", b"{}")[0].status == 200
        waiting = http.client.HTTPConnection(live.host, live.port, timeout=1)
        with pytest.raises((TimeoutError, socket.timeout)):
            post(waiting, "/api/v0/echo/read", b"{}")
        waiting.close()
        held[0].close()
        later = http.client.HTTPConnection(live.host, live.port, timeout=5)
        assert post(later, "/api/v0/echo/read", b"{}")[0].status == 200
        for conn in [held[1], later]:
            conn.close()


def test_sigterm_drains_in_flight_requests_and_exits_0(make_product, tmp_path):
    root = make_product(SLOW, name="slowdrain")
    with serving(root, tmp_path) as live:
        idle = http.client.HTTPConnection(live.host, live.port, timeout=5)
        assert post(idle, "/api/v0/slow/read", b'{"seconds": 0}')[0].status == 200
        results = {}

        def slow_request():
            conn = http.client.HTTPConnection(live.host, live.port, timeout=10)
            response, body = post(conn, "/api/v0/slow/read", b'{"seconds": 1.5}')
            results["slow"] = (response.status, response.getheader("Connection"), body)

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.5)
        live.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        idle.sock.settimeout(3)
        assert idle.sock.recv(1) == b""  # the idle keep-alive connection was closed
        with pytest.raises(OSError):
            socket.create_connection((live.host, live.port), timeout=1).close()
        thread.join(10)
        assert results["slow"] == (200, "close", b'{"slept": 1.5}')
        assert live.process.wait(10) == 0
        assert "Stopped" in live.log()


def test_drain_is_bounded_by_the_drain_timeout(make_product, tmp_path):
    root = make_product(SLOW, name="slowbound")
    with serving(root, tmp_path, "--drain-timeout", "0.5") as live:
        def stuck():
            conn = http.client.HTTPConnection(live.host, live.port, timeout=15)
            try:
                post(conn, "/api/v0/slow/read", b'{"seconds": 30}')
            except (OSError, http.client.HTTPException):
                pass

        thread = threading.Thread(target=stuck, daemon=True)
        thread.start()
        time.sleep(0.5)
        started = time.monotonic()
        live.process.send_signal(signal.SIGTERM)
        assert live.process.wait(10) == 0
        assert time.monotonic() - started < 8
        assert "still busy" in live.log()


def test_ipv6_loopback(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 here")
    with serving(MYPRODUCT, tmp_path, host="::1") as live:
        response = requests.post(f"{live.url}/api/v0/echo/read", json={"v": 6})
        assert response.json() == {"v": 6, "server": "myproduct"}
        assert "it answers http://[::1]:" in live.log()


def test_access_log_when_asked(tmp_path):
    with serving(MYPRODUCT, tmp_path, "--access-log") as live:
        requests.post(f"{live.url}/api/v0/echo/read", json={})
        deadline = time.monotonic() + 5
        while '"POST /api/v0/echo/read HTTP/1.1" 200' not in live.log():
            assert time.monotonic() < deadline, live.log()
            time.sleep(0.05)


def test_no_access_log_by_default(live):
    requests.post(f"{live.url}/api/v0/echo/read", json={})
    time.sleep(0.2)
    assert "HTTP/1.1" not in live.log()


def test_open_files_soft_limit_is_raised_to_the_hard_limit(live):
    limits = Path(f"/proc/{live.process.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard


def test_drain_grace_keeps_idle_connections_for_their_next_request(tmp_path):
    """Behind Nginx, a reused connection must never be closed under its feet."""
    with serving(MYPRODUCT, tmp_path, "--drain-idle-grace", "1.5") as live:
        reused = http.client.HTTPConnection(live.host, live.port, timeout=5)
        forgotten = http.client.HTTPConnection(live.host, live.port, timeout=5)
        for conn in (reused, forgotten):
            assert post(conn, "/api/v0/echo/read", b"{}")[0].status == 200
        live.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        response, body = post(reused, "/api/v0/echo/read", b'{"late": 1}')
        assert (response.status, response.getheader("Connection")) == (200, "close")
        assert json.loads(body) == {"late": 1, "server": "myproduct"}
        forgotten.sock.settimeout(5)
        started = time.monotonic()
        assert forgotten.sock.recv(1) == b""  # closed once idle past the grace
        assert 0.3 < time.monotonic() - started < 4
        assert live.process.wait(10) == 0


def test_sys_exit_in_a_handler_does_not_stop_the_worker(make_product, tmp_path):
    root = make_product({"api/v0/t.py": "import sys\ndef read(r):\n    sys.exit(1)\n"},
                        name="exitlive")
    with serving(root, tmp_path) as live:
        for _ in range(3):
            answer = requests.post(f"{live.url}/api/v0/t/read", json={})
            assert answer.json() == {"error": "500 Internal Server Error"}
        assert live.process.poll() is None
