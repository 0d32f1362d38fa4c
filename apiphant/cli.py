"""``apiphant``: serve a product, list its routes, or create a new one.

apiphant PRODUCT HOST:PORT [options]   serve on gevent
apiphant routes PRODUCT                list the routes
apiphant new NAME [DIR]                create a product from the template
"""

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from apiphant.address import AddressError, format_address, parse_address
from apiphant.product import ProductError

log = logging.getLogger("apiphant")


def _size(text: str) -> int:
    """``1048576``, ``512K``, ``1M``: a byte count for --max-body."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    factor = units.get(text[-1:].upper(), 1)
    number = text[:-1] if factor > 1 else text
    if not number.isdigit() or int(number) * factor < 1:
        raise argparse.ArgumentTypeError(f"expected a size like 1048576, 512K or 1M, got {text!r}")
    return int(number) * factor


def _number(kind: type, minimum: float, words: str) -> Callable[[str], float]:
    """An argparse type: a ``kind`` number of at least ``minimum``."""

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value >= minimum:
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}")
        return value

    return convert


_seconds = _number(float, 1e-3, "a positive number of seconds")
_non_negative = _number(float, 0, "0 or more seconds")
_count = _number(int, 1, "a positive whole number")


def serve_parser() -> argparse.ArgumentParser:
    from apiphant.app import DEFAULT_MAX_BODY
    from apiphant.server import Limits

    d = Limits()
    p = argparse.ArgumentParser(
        prog="apiphant",
        description="Serve a product's JSON API on gevent. "
        "Also: 'apiphant routes PRODUCT', 'apiphant new NAME [DIR]'.",
    )
    p.add_argument("product", help="the product folder, e.g. myproduct")
    p.add_argument("address", help="HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:8001")
    p.add_argument(
        "--max-body",
        type=_size,
        default=DEFAULT_MAX_BODY,
        help="largest request body, bytes or K/M (default 1M); larger gets 413",
    )
    p.add_argument("--access-log", action="store_true", help="log one line per request")
    p.add_argument(
        "--reload",
        action="store_true",
        help="development: restart when a .py file of the product changes",
    )
    p.add_argument(
        "--max-connections",
        type=_count,
        default=None,
        help="concurrent connections (default: as many as the open-files limit allows)",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=_seconds,
        default=d.keepalive_timeout,
        help=f"seconds an idle keep-alive connection is kept (default {d.keepalive_timeout:g})",
    )
    p.add_argument(
        "--header-timeout",
        type=_seconds,
        default=d.header_timeout,
        help=f"seconds to receive request headers (default {d.header_timeout:g})",
    )
    p.add_argument(
        "--request-timeout",
        type=_seconds,
        default=d.request_timeout,
        help=f"seconds one read or write may wait (default {d.request_timeout:g})",
    )
    p.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=d.drain_timeout,
        help=f"seconds in-flight requests get on SIGTERM (default {d.drain_timeout:g})",
    )
    p.add_argument(
        "--drain-idle-grace",
        type=_non_negative,
        default=d.drain_idle_grace,
        help="during a drain, close idle keep-alive connections only after this many seconds "
        "idle; behind Nginx, set it above the upstream keepalive_timeout (default 0)",
    )
    return p


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT, then drain and exit 0."""
    import gevent

    from apiphant import reporting
    from apiphant.app import create_app
    from apiphant.limits import raise_open_files
    from apiphant.routing import RouteError
    from apiphant.server import Limits, Server

    host, port = parse_address(args.address)
    try:
        app = create_app(args.product, max_body=args.max_body)
    except RouteError as error:
        log.error("%s", error)
        sys.exit(f"apiphant: {str(error).splitlines()[0]}")
    reporting.init("api")
    limits = Limits(
        max_connections=raise_open_files(args.max_connections),
        keepalive_timeout=args.keepalive_timeout,
        header_timeout=args.header_timeout,
        request_timeout=args.request_timeout,
        drain_timeout=args.drain_timeout,
        drain_idle_grace=args.drain_idle_grace,
    )
    server = Server((host, port), app, limits, access_log=args.access_log)
    try:
        server.init_socket()
    except OSError as error:
        reason = error.strerror or str(error)
        sys.exit(f"apiphant: cannot listen on {format_address(host, port)}: {reason}")
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    server.start()
    log.info(
        "Apiphant is serving %s (%s) at http://%s/api with %d routes",
        app.product.name,
        app.product.path,
        format_address(host, port),
        len(app.routes),
    )
    stop.wait()
    log.info("Stopping: draining connections for up to %gs", limits.drain_timeout)
    server.drain()
    reporting.flush()
    log.info("Stopped")
    return 0


def routes(argv: list[str]) -> int:
    from apiphant.product import locate
    from apiphant.routing import describe, load

    p = argparse.ArgumentParser(prog="apiphant routes", description="List a product's routes.")
    p.add_argument("product", help="the product folder")
    args = p.parse_args(argv)
    table = load(locate(args.product))
    for line in describe(table):
        print(line)
    if not table:
        print(
            f"no routes: add api/v0/<target>.py with read(request) to {args.product}",
            file=sys.stderr,
        )
    return 0


def new(argv: list[str]) -> int:
    from apiphant.scaffold import ScaffoldError, create

    p = argparse.ArgumentParser(
        prog="apiphant new", description="Create a product from the template."
    )
    p.add_argument("name", help="the product's name, a Python identifier")
    p.add_argument("dir", nargs="?", default=".", help="where to create it (default: here)")
    args = p.parse_args(argv)
    try:
        folder = create(args.name, Path(args.dir))
    except ScaffoldError as error:
        sys.exit(f"apiphant new: {error}")
    print(
        f"Created {folder}: a repository of its own (README.md says the five commands).\n"
        f"  cd {folder} && git init && git add -A && git commit -m {args.name}\n"
        f"  apiphant . 127.0.0.1:8001        serve it\n"
        f"  pytest tests && ./test.sh        test it\n"
        f"  fab deploy                       after setting ssh and server_names in deploy.toml"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from apiphant import logs

    logs.configure()
    try:
        if argv[:1] == ["new"]:
            return new(argv[1:])
        if argv[:1] == ["routes"]:
            return routes(argv[1:])
        args = serve_parser().parse_args(argv)
        if args.reload:
            from apiphant import reloader
            from apiphant.product import locate

            parse_address(args.address)
            product = locate(args.product)
            return reloader.run(product.path, [a for a in argv if a != "--reload"])
        from gevent import monkey

        monkey.patch_all()
        return serve(args)
    except (ProductError, AddressError) as error:
        sys.exit(f"apiphant: {error}")
    except ImportError as error:  # a RouteError is reported inside serve; this is the rest
        sys.exit(f"apiphant: {error}")


if __name__ == "__main__":
    sys.exit(main())
