"""The server's socket tuning, seen from inside: a real Server on loopback in its own thread."""

import socket
import threading

import gevent
import pytest

from apiphant.app import create_app
from apiphant.server import Handler, Limits, Server
from tests.servers import MYPRODUCT


class CountingHandler(Handler):
    """Records what each connection's sends looked like, and its TCP_NODELAY option."""

    sends: list[bytes] = []
    nodelay: list[int] = []

    def _sendall(self, data):
        CountingHandler.sends.append(bytes(data))
        CountingHandler.nodelay.append(
            self.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        super()._sendall(data)


@pytest.fixture
def server():
    ready = threading.Event()
    holder = {}

    def run():
        server = Server(("127.0.0.1", 0), create_app(MYPRODUCT), Limits(drain_timeout=1))
        server.handler_class = CountingHandler
        server.start()
        holder["server"] = server
        holder["stop"] = gevent.event.Event()
        ready.set()
        holder["stop"].wait()
        server.drain()

    CountingHandler.sends, CountingHandler.nodelay = [], []
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield holder["server"]
    hub_loop = holder["server"].loop
    hub_loop.run_callback_threadsafe(holder["stop"].set)
    thread.join(10)


def exchange(port: int, body: bytes) -> bytes:
    request = (b"POST /api/v0/echo/read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_every_connection_has_tcp_nodelay(server):
    exchange(server.server_port, b"{}")
    assert CountingHandler.nodelay and all(CountingHandler.nodelay)


def test_headers_and_body_go_out_in_one_send(server):
    answer = exchange(server.server_port, b'{"hello": "world"}')
    assert len(CountingHandler.sends) == 1
    assert CountingHandler.sends[0] == answer
    assert answer.endswith(b'\r\n\r\n{"hello": "world", "server": "myproduct"}')
