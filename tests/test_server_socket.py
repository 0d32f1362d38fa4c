"""The server's socket tuning, seen from inside: a real Server on loopback in its own thread."""

import os
import socket
import threading
import time

import gevent
import pytest

from apiphant.app import create_app
from apiphant.http.connection import Connection
from apiphant.server import Limits, Server
from tests.servers import MYPRODUCT, server_in_thread


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


def test_a_connection_waiting_in_the_backlog_is_answered_by_the_drain():
    """A connection the kernel completed but the server had not accepted when it drains:
    its request is answered (Connection: close), not reset as closing the listening socket
    would; Nginx cannot send a write again, so a reset there is a failed request (a 502),
    seen twice in 170,000 requests while a deploy restarted workers under load (multi-host)."""
    ready, go, done = threading.Event(), threading.Event(), threading.Event()
    holder = {}

    def run():
        # Behind Nginx, as deployed: idle connections get a grace before the drain closes them.
        limits = Limits(drain_timeout=3, drain_idle_grace=1)
        server = Server(("127.0.0.1", 0), create_app(MYPRODUCT), limits)
        server.start()
        server.stop_accepting()  # the connection below waits in the kernel's queue
        holder["port"] = server.server_port
        ready.set()
        while not go.is_set():
            gevent.sleep(0.01)
        holder["finished"] = server.drain()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    body = b'{"queued": 1}'
    with socket.create_connection(("127.0.0.1", holder["port"]), timeout=5) as sock:
        sock.sendall(b"POST /api/v0/echo/read HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        go.set()
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert done.wait(10) and holder["finished"]
    thread.join(10)
    head, _, answer = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\nConnection: close" in head
    assert answer == b'{"queued": 1, "server": "myproduct"}'

class RecordingConnection(Connection):
    """Keeps every connection the server made, to look at them after they closed."""

    __slots__ = ()
    made: list[Connection] = []

    def __init__(self, *args):
        super().__init__(*args)
        RecordingConnection.made.append(self)


ECHO = (b"POST /api/v0/echo/read HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
ANSWER_END = b'{"server": "myproduct"}'


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def wait_until_empty(server, bound: float = 10.0) -> None:
    """Bounded: the registry is read from this thread while the server's hub empties it."""
    deadline = time.monotonic() + bound
    while server.connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server.connections


def read_answers(sock: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(ANSWER_END) < count:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def assert_all_closed(made: list[Connection], fds_before: set[str]) -> None:
    assert made
    for connection in made:
        assert connection.watcher is None and connection.greenlet is None
        assert connection.idle_since is None
        assert connection.sock.fileno() == -1
    assert open_fds() - fds_before == set()


def test_connections_that_close_every_way_leave_no_watcher_and_no_descriptor():
    """Idle between requests, a connection is a read watcher and no greenlet; whichever
    way it ends (the client's EOF while idle, a pipelined pair, a request that breaks
    HTTP, EOF in the middle of a head), it leaves the registry and closes its socket."""
    RecordingConnection.made = []
    with server_in_thread(create_app(MYPRODUCT), connection_class=RecordingConnection) as server:
        fds_before = open_fds()
        address = ("127.0.0.1", server.server_port)
        for round in range(3):
            clients = [socket.create_connection(address, timeout=5) for _ in range(8)]
            for client in clients[:4]:  # two keep-alive requests, then EOF while idle
                for _ in range(2):
                    client.sendall(ECHO)
                    read_answers(client, 1)
            clients[4].sendall(ECHO + ECHO)  # pipelined in one packet
            read_answers(clients[4], 2)
            clients[5].sendall(b"BROKEN\r\n\r\n")
            assert clients[5].recv(65536).startswith(b"HTTP/1.1 400 ")
            clients[6].sendall(ECHO + b"POST /api/v0/echo/read HT")  # EOF mid-head
            read_answers(clients[6], 1)
            # clients[7] connects and never sends: EOF while idle before any request
            deadline = time.monotonic() + 10
            while len(RecordingConnection.made) < 8 * (round + 1) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(RecordingConnection.made) == 8 * (round + 1)
            for client in clients:
                client.close()
            wait_until_empty(server)
        assert len(RecordingConnection.made) == 3 * 8
        assert_all_closed(RecordingConnection.made, fds_before)


def test_the_keepalive_sweep_and_the_drain_close_idle_watchers():
    RecordingConnection.made = []
    limits = Limits(keepalive_timeout=0.4, drain_timeout=2)
    app = create_app(MYPRODUCT)
    with server_in_thread(app, limits, connection_class=RecordingConnection) as server:
        fds_before = open_fds()
        address = ("127.0.0.1", server.server_port)
        clients = [socket.create_connection(address, timeout=10) for _ in range(5)]
        for client in clients:
            client.sendall(ECHO)
            read_answers(client, 1)
        for client in clients:
            assert client.recv(1) == b""  # closed by the sweep, past the keep-alive timeout
            client.close()
        wait_until_empty(server)
        assert_all_closed(RecordingConnection.made, fds_before)
    RecordingConnection.made = []
    with server_in_thread(app, connection_class=RecordingConnection) as server:
        fds_before = open_fds()
        address = ("127.0.0.1", server.server_port)
        clients = [socket.create_connection(address, timeout=10) for _ in range(5)]
        for client in clients:
            client.sendall(ECHO)
            read_answers(client, 1)
        deadline = time.monotonic() + 10
        while len(server.connections) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(server.connections) == 5
    # server_in_thread drained it on the way out: the idle connections were closed
    assert not server.connections
    for client in clients:
        assert client.recv(1) == b""
        client.close()
    assert_all_closed(RecordingConnection.made, fds_before)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; what came so far if it goes quiet."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def test_a_head_begun_behind_an_answered_request_gets_the_header_timeout():
    """The header timeout is the head's own, from its first byte, wherever that came: in the
    read of a request before it (pipelined), or in the read that ended that request's body.
    It used to get what was left of the request before it's body deadline instead."""
    limits = Limits(header_timeout=0.3, request_timeout=60)  # the client waits 10 s at most
    with server_in_thread(create_app(MYPRODUCT), limits) as server:
        address = ("127.0.0.1", server.server_port)
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(ECHO + b"POST /api/v0/echo/read HT")
            pipelined = read_until_closed(sock)
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"POST /api/v0/echo/read HTTP/1.1\r\nHost: x\r\n"
                         b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # reading the body now
            sock.sendall(b"{}POST /api/v0/echo/read HTTP/1.1\r\nX-Slow: ")
            behind_a_body = read_until_closed(sock)
    for data in (pipelined, behind_a_body):
        assert data.count(ANSWER_END) == 1, data
        assert data.partition(ANSWER_END)[2].startswith(b"HTTP/1.1 408 "), data


def test_a_client_that_never_reads_its_big_answers_is_dropped_within_the_request_timeout():
    """Each send waits at most the request timeout for the client to take bytes: a client
    that asks for big answers and reads nothing was held, with its answers, for as long as
    it stayed connected (the sends had no timeout, and the sweep skips busy connections)."""
    big = b"x" * (4 * 1024 * 1024)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [big]

    RecordingConnection.made = []
    limits = Limits(header_timeout=0.3, request_timeout=0.3, keepalive_timeout=60)
    with server_in_thread(app, limits, RecordingConnection) as server:
        fds_before = open_fds()
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.server_port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 8)
            deadline = time.monotonic() + 10
            while not RecordingConnection.made and time.monotonic() < deadline:
                time.sleep(0.02)
            wait_until_empty(server)  # dropped while the client is still connected
            [connection] = RecordingConnection.made
            assert connection.out == []  # the answers it held are let go
        assert_all_closed(RecordingConnection.made, fds_before)

