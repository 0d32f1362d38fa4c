"""``apiphant``: serve a product, list its routes, create one, run its background tasks.

apiphant serve PRODUCT [HOST:PORT] [options]   serve on gevent (default 127.0.0.1:8001)
apiphant routes PRODUCT                        list the routes
apiphant new NAME [DIR]                        create a product from the template
apiphant background PRODUCT                    run PRODUCT/api/background.py's tasks
apiphant PRODUCT HOST:PORT                     the seed's form of serve, still working

Every mistake in an argument or an environment value is one line naming it, exit status 2.
"""

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from apiphant import __version__, settings
from apiphant.product import COMMANDS, ProductError
from apiphant.runtime.usage import BAD_ARGUMENT, FAILED, Parser, UsageError, exit_codes
from apiphant.settings.schema import DEFAULT_ADDRESS
from apiphant.settings.values import AddressError, format_address, parse_address

log = logging.getLogger("apiphant")

PROG = "apiphant"


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


def _add_serve_arguments(p: argparse.ArgumentParser) -> None:
    from apiphant.app import DEFAULT_MAX_BODY
    from apiphant.request import DEFAULT_MAX_JSON_VALUES
    from apiphant.server import Limits

    d = Limits()
    p.add_argument("product", help="the product folder, e.g. myproduct")
    p.add_argument(
        "address", nargs="?", default=DEFAULT_ADDRESS,
        help=f"HOST:PORT or [IPv6]:PORT (default {DEFAULT_ADDRESS})",
    )  # fmt: skip
    p.add_argument(
        "--max-body",
        type=_size,
        default=DEFAULT_MAX_BODY,
        help="largest request body, bytes or K/M (default 1M); larger gets 413",
    )
    p.add_argument(
        "--max-json-values",
        type=_count,
        default=DEFAULT_MAX_JSON_VALUES,
        help="most JSON values in a request body, counted as 1 + its commas and opening "
        f"brackets (default {DEFAULT_MAX_JSON_VALUES}); more gets 413 before parsing",
    )
    p.add_argument("--access-log", action="store_true", help="log one line per request")
    p.add_argument(
        "--reload",
        action="store_true",
        help="development: restart when a .py file of the product changes",
    )
    p.add_argument(
        "--cors-origin", action="append", default=None, metavar="ORIGIN",
        help="a browser origin allowed to call the API, like https://app.example.com "
        f"(repeatable; or * for any; default: {settings.CORS_ORIGINS}, comma-separated)",
    )  # fmt: skip
    p.add_argument(
        "--cors-header", action="append", default=None, metavar="NAME",
        help="a request header such origins may send besides Content-Type, like Authorization "
        f"(repeatable; default: {settings.CORS_HEADERS})",
    )  # fmt: skip
    p.add_argument(
        "--cors-credentials", action="store_true", default=None,
        help="let such origins send cookies (not with *)",
    )  # fmt: skip
    p.add_argument(
        "--trusted-proxy", action="append", default=None, metavar="IP",
        help="a proxy (like Nginx) whose X-Forwarded-For names the client "
        f"(repeatable; default: {settings.TRUSTED_PROXIES}, comma-separated)",
    )  # fmt: skip
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
    _add_debug(p)


def _add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--debug", action="store_true", help="show the full traceback of a failed import"
    )


def parser() -> Parser:
    p = Parser(
        prog=PROG,
        description="A small framework for JSON web APIs on gevent. "
        f"The seed's form '{PROG} PRODUCT HOST:PORT' is '{PROG} serve PRODUCT HOST:PORT'.",
    )
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    serve_p = sub.add_parser("serve", help="serve a product's JSON API on gevent",
                             description="Serve a product's JSON API on gevent.")  # fmt: skip
    _add_serve_arguments(serve_p)
    routes_p = sub.add_parser("routes", help="list a product's routes",
                              description="List a product's routes.")  # fmt: skip
    routes_p.add_argument("product", help="the product folder")
    _add_debug(routes_p)
    new_p = sub.add_parser("new", help="create a product from the template",
                           description="Create a product from the template.")  # fmt: skip
    new_p.add_argument("name", help="the product's name: lowercase ASCII identifier, like shop")
    new_p.add_argument("dir", nargs="?", default=".", help="where to create it (default: here)")
    # Parsed by apiphant.background itself (run() hands it over first); listed for -h.
    sub.add_parser(
        "background", add_help=False,
        help="run PRODUCT/api/background.py's @seconds(N) tasks (apiphant-background)",
    )  # fmt: skip
    return p


def serve_parser() -> Parser:
    """The seed's ``apiphant PRODUCT HOST:PORT`` parser (the same as ``apiphant serve``)."""
    p = Parser(prog=f"{PROG} serve", description="Serve a product's JSON API on gevent.")
    _add_serve_arguments(p)
    return p


def with_command(argv: list[str]) -> list[str]:
    """The seed's ``apiphant PRODUCT HOST:PORT`` is ``apiphant serve PRODUCT HOST:PORT``."""
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        return ["serve", *argv]
    return argv


def _cors(args: argparse.Namespace):  # -> Cors | None
    from apiphant.cors import CorsError, policy

    origins = args.cors_origin
    source = "--cors-origin"
    if origins is None:
        origins, source = settings.read(settings.CORS_ORIGINS, settings.words, ()), (
            settings.CORS_ORIGINS)
    headers = args.cors_header
    if headers is None:
        headers = settings.read(settings.CORS_HEADERS, settings.words, ())
    credentials = args.cors_credentials
    if credentials is None:
        credentials = settings.read(settings.CORS_CREDENTIALS, settings.flag, False)
    try:
        return policy(origins, headers, credentials)
    except CorsError as error:
        raise UsageError(f"{PROG}: {source}: {error}") from None


def _trusted(args: argparse.Namespace) -> frozenset[str]:
    from apiphant.context import parse_addresses

    values, source = args.trusted_proxy, "--trusted-proxy"
    if values is None:
        values = settings.read(settings.TRUSTED_PROXIES, settings.words, ())
        source = settings.TRUSTED_PROXIES
    try:
        return parse_addresses(values)
    except ValueError as error:
        raise UsageError(f"{PROG}: {source}: {error}") from None


def _import_failed(error: Exception, debug: bool) -> int:
    """A handler or hook that failed to import: one line (the traceback with --debug)."""
    from apiphant.imports import full_traceback

    if debug and error.__cause__ is not None:
        print(full_traceback(error.__cause__), file=sys.stderr)
    print(f"{PROG}: {error}", file=sys.stderr)
    return FAILED


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT, then drain and exit 0."""
    import gevent

    from apiphant import reporting
    from apiphant.app import create_app
    from apiphant.limits import raise_open_files
    from apiphant.routing import RouteError
    from apiphant.server import Limits, Server

    host, port = parse_address(args.address)
    cors, trusted = _cors(args), _trusted(args)
    try:
        app = create_app(args.product, max_body=args.max_body, cors=cors,
                         trusted_proxies=trusted,
                         max_json_values=args.max_json_values)  # fmt: skip
    except RouteError as error:
        return _import_failed(error, args.debug)
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
        print(f"{PROG}: cannot listen on {format_address(host, port)}: {reason}", file=sys.stderr)
        return FAILED
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    server.start()
    log.info(
        "Apiphant is serving %s (%s) at http://%s/api with %d routes%s",
        app.product.name,
        app.product.path,
        format_address(host, port),
        len(app.routes),
        f"; CORS for {', '.join(cors.origins)}" if cors else "",
    )
    stop.wait()
    log.info("Stopping: draining connections for up to %gs", limits.drain_timeout)
    server.drain()
    reporting.flush()
    log.info("Stopped")
    return 0


def routes(args: argparse.Namespace) -> int:
    from apiphant.product import locate
    from apiphant.routing import RouteError, describe, load

    try:
        table = load(locate(args.product))
    except RouteError as error:
        return _import_failed(error, args.debug)
    for line in describe(table):
        print(line)
    if not table:
        print(
            f"no routes: add api/v0/<target>.py with read(request) to {args.product}",
            file=sys.stderr,
        )
    return 0


def new(args: argparse.Namespace) -> int:
    from apiphant.scaffold import ScaffoldError, create

    try:
        folder = create(args.name, Path(args.dir))
    except ScaffoldError as error:
        raise UsageError(f"{PROG} new: {error}") from None
    print(
        f"Created {folder}: a repository of its own (README.md says the five commands).\n"
        f"  cd {folder} && git init && git add -A && git commit -m {args.name}\n"
        f"  apiphant serve . 127.0.0.1:8001  serve it\n"
        f"  pytest tests && ./test.sh        test it\n"
        f"  fab deploy                       after setting ssh and server_names in deploy.toml"
    )
    return 0


def run(argv: list[str]) -> int:
    argv = with_command(argv)
    if argv[:1] == ["background"]:
        from apiphant import background

        return background.main(argv[1:], prog=f"{PROG} background")
    from apiphant import logs

    logs.configure()
    args = parser().parse_args(argv)
    if args.command is None:
        parser().print_help()
        return BAD_ARGUMENT
    if args.command == "new":
        return new(args)
    if args.command == "routes":
        return routes(args)
    if args.reload:
        from apiphant import reloader
        from apiphant.product import locate

        parse_address(args.address)
        _cors(args), _trusted(args)
        product = locate(args.product)
        return reloader.run(product.path, [a for a in argv if a != "--reload"])
    from apiphant import monkey

    monkey.patch_all()
    return serve(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with exit_codes(PROG, (ProductError, AddressError, settings.SettingError)):
        return run(argv)
    return BAD_ARGUMENT


if __name__ == "__main__":
    sys.exit(main())
