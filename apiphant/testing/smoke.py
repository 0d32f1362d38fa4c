"""The smoke test: run a product's ``test.py`` against a live server, or start one for it.

    python -m apiphant.smoke [--product DIR] [URL]   (the path test.sh runs; this module)

With a URL (a running server, a deployment) it only runs the tests against
it. Without, it starts ``apiphant PRODUCT 127.0.0.1:PORT`` (``APIPHANT_PORT``,
default 8888, ``apiphant serve``'s too: a free port when that one is taken), waits until
it answers, runs the tests, and stops it; on a failure it shows the server log's tail.
``test.sh`` in a checkout or a product's repository is this, so both behave the same
everywhere.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from apiphant.settings import SettingError, env_value, schema
from apiphant.settings.options import add_options

#: How long the server may take to answer before the smoke test gives up.
START_SECONDS = 10.0
NAME = "test.sh"
#: What test.py is told: where the server is (apiphant.testing.functional reads them).
URL = schema.BY_NAME["url"].env
PORT = schema.BY_NAME["port"].env


def _fail(message: str, log: Path | None = None) -> int:
    print(f"{NAME}: {message}" + ("; server log tail:" if log else ""), file=sys.stderr)
    if log is not None:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        print("\n".join(tail), file=sys.stderr)
    return 1


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def _free_port() -> int:
    """A port nothing listens on now, for the tests' own server when the default is taken
    (by ``apiphant serve``, which listens on the same default)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def run(product: Path, url: str = "") -> int:
    """Run ``product/test.py``: against ``url``, or against a server started for it."""
    tests = product / "test.py"
    if not tests.is_file():
        print(f"{NAME}: no test.py in {product}", file=sys.stderr)
        return 2
    python = env_value("python") or sys.executable
    if url:
        return subprocess.call([python, str(tests)], env={**os.environ, URL: url})
    port = env_value("port")
    if not os.environ.get(PORT) and _answers(port):
        busy, port = port, _free_port()
        print(f"{NAME}: 127.0.0.1:{busy} is in use (a server you started?); the tests' own "
              f"server listens on 127.0.0.1:{port}", file=sys.stderr)  # fmt: skip
    with tempfile.NamedTemporaryFile(prefix="apiphant-test.", suffix=".log") as handle:
        log = Path(handle.name)
        server = subprocess.Popen(
            [python, "-m", "apiphant", str(product), f"127.0.0.1:{port}"],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + START_SECONDS
            while not _answers(port):
                if server.poll() is not None:
                    return _fail("the server exited", log)
                if time.monotonic() > deadline:
                    return _fail(f"the server did not answer on 127.0.0.1:{port} within "
                                 f"{START_SECONDS:g}s", log)  # fmt: skip
                time.sleep(0.1)
            env = {**os.environ, PORT: str(port), URL: ""}
            if subprocess.call([python, str(tests)], env=env) == 0:
                return 0
            _stop(server)
            return _fail("tests failed", log)
        finally:
            _stop(server)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=NAME, description="Run a product's test.py against a server (started if no URL)."
    )
    add_options(p, "smoke")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        env_value("port")
    except SettingError as error:
        print(f"{NAME}: {error}", file=sys.stderr)
        return 2
    product = Path(args.smoke_product).expanduser().resolve()
    if not product.is_dir():
        print(f"{NAME}: no such product folder: {args.smoke_product}", file=sys.stderr)
        return 2
    return run(product, args.url or "")


if __name__ == "__main__":
    sys.exit(main())
