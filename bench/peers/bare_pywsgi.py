"""The limit of the stack: a bare gevent.pywsgi WSGI app doing the JSON echo.

Plain ``WSGIHandler`` (headers and body in two sends), with TCP_NODELAY on
accepted sockets so that Nagle's algorithm does not stall the second send, a
listen backlog of 2048 (gunicorn's default) so that 1,000 connections opening
at once are not dropped, and the open-files limit raised: what gevent gives
without any framework, tuned the way anyone serving it would tune it.
``python -m bench.peers.bare_pywsgi HOST:PORT [--app falcon]``.
"""

import argparse
import json
import os
import resource
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from gevent import monkey

monkey.patch_all()

from gevent.pywsgi import WSGIServer  # noqa: E402

#: The I/O-bound variant: each request first waits this long (a gevent sleep, patched).
SLEEP = float(os.environ.get("BENCH_SLEEP") or 0)


def echo(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The same work as myproduct's echo: JSON object in, plus one field, JSON out."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    request = json.loads(environ["wsgi.input"].read(length))
    if SLEEP:
        time.sleep(SLEEP)
    request["server"] = "myproduct"
    body = json.dumps(request).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


class NoDelayServer(WSGIServer):
    """pywsgi's server, only with TCP_NODELAY set on each accepted connection."""

    backlog = 2048

    def handle(self, sock: socket.socket, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def load_app(name: str) -> Callable[..., Any]:
    """``echo`` (the bare app) or ``falcon`` (Falcon 4 on this same server)."""
    if name == "falcon":
        from bench.peers.falcon_app import app

        return app
    return echo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A bare gevent.pywsgi server for the bench.")
    parser.add_argument("address", help="HOST:PORT")
    parser.add_argument("--app", choices=("echo", "falcon"), default="echo")
    args = parser.parse_args(argv)
    host, _, port = args.address.rpartition(":")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # an unlimited hard limit: keep the soft one
        pass
    NoDelayServer((host, int(port)), load_app(args.app), log=None).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
