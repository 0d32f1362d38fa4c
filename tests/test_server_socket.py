"""The server's socket tuning, seen from inside: a real Server on loopback in its own thread."""

import socket
import threading

import gevent
import pytest

from apiphant.app import create_app
from apiphant.http.connection import Connection
from apiphant.server import Limits, Server
from tests.servers import MYPRODUCT


class CountingConnection(Connection):
    """Records what each connection's sends looked like, and its TCP_NODELAY option."""

    __slots__ = ()
    sends: list[bytes] = []
    nodelay: list[int] = []

    def send(self, data):
        CountingConnection.sends.append(bytes(data))
        CountingConnection.nodelay.append(
            self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        super().send(data)


@pytest.fixture
def server():
    ready = threading.Event()
    holder = {}

    def run():
        server = Server(("127.0.0.1", 0), create_app(MYPRODUCT), Limits(drain_timeout=1))
        server.connection_class = CountingConnection
        server.start()
        holder["server"] = server
        holder["stop"] = gevent.event.Event()
        ready.set()
        holder["stop"].wait()
        server.drain()

    CountingConnection.sends, CountingConnection.nodelay = [], []
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
    assert CountingConnection.nodelay and all(CountingConnection.nodelay)


def test_headers_and_body_go_out_in_one_send(server):
    answer = exchange(server.server_port, b'{"hello": "world"}')
    assert len(CountingConnection.sends) == 1
    assert CountingConnection.sends[0] == answer
    assert answer.endswith(b'\r\n\r\n{"hello": "world", "server": "myproduct"}')
