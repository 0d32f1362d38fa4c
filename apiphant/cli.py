"""``apiphant``: serve a product, list its routes, create one, run its background tasks.

apiphant serve PRODUCT [HOST:PORT] [options]   serve on gevent (default 127.0.0.1:8888)
apiphant routes PRODUCT                        list the routes
apiphant openapi PRODUCT                       print the OpenAPI document
apiphant new NAME [DIR]                        create a product from the template
apiphant background PRODUCT                    run PRODUCT/api/background.py's tasks
apiphant db start|url|stop|reset|migrate PRODUCT  the development database, the migrations
apiphant PRODUCT HOST:PORT                     apiphant 0.2's form of serve, still working

Every mistake in an argument or an environment value is one line naming it, exit status 2.
"""

import argparse
import logging
import sys
from pathlib import Path

from apiphant import __version__, settings
from apiphant.product import COMMANDS, ProductError
from apiphant.runtime.usage import BAD_ARGUMENT, FAILED, Parser, UsageError, exit_codes
from apiphant.settings import options
from apiphant.settings.options import Resolved
from apiphant.settings.schema import BY_NAME
from apiphant.settings.values import AddressError, format_address, parse_address

log = logging.getLogger("apiphant")

PROG = "apiphant"


def parser() -> Parser:
    p = Parser(
        prog=PROG,
        description="A small framework for JSON web APIs on gevent. "
        f"apiphant 0.2's form '{PROG} PRODUCT HOST:PORT' is '{PROG} serve PRODUCT HOST:PORT'.",
    )
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    serve_p = sub.add_parser("serve", help="serve a product's JSON API on gevent",
                             description="Serve a product's JSON API on gevent.")  # fmt: skip
    options.add_options(serve_p, "serve")
    routes_p = sub.add_parser("routes", help="list a product's routes",
                              description="List a product's routes.")  # fmt: skip
    options.add_options(routes_p, "routes")
    openapi_p = sub.add_parser("openapi", help="print a product's OpenAPI document (JSON)",
                               description="Print a product's OpenAPI 3.1 document, read "
                               "from its routes and field() calls.")  # fmt: skip
    options.add_options(openapi_p, "openapi")
    new_p = sub.add_parser("new", help="create a product from the template",
                           description="Create a product from the template.")  # fmt: skip
    new_p.add_argument("name", help="the product's name: lowercase ASCII identifier, like shop")
    new_p.add_argument("dir", nargs="?", default=".", help="where to create it (default: here)")
    # Parsed by apiphant.db.commands itself (run() hands it over first); listed for -h.
    sub.add_parser("db", add_help=False, help="the development database (start, url, stop, "
                   "reset) and the migrations (migrate): apiphant db -h")  # fmt: skip
    # Parsed by apiphant.background itself (run() hands it over first); listed for -h.
    sub.add_parser(
        "background", add_help=False,
        help="run PRODUCT/api/background.py's @seconds(N) tasks (apiphant-background)",
    )  # fmt: skip
    return p


def with_command(argv: list[str]) -> list[str]:
    """apiphant 0.2's ``apiphant PRODUCT HOST:PORT`` is ``apiphant serve PRODUCT HOST:PORT``."""
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        return ["serve", *argv]
    return argv


def _where(found: dict[str, Resolved], name: str) -> str:
    """Where a setting came from, for a message: its flag, else its environment variable."""
    source = found[name].source
    return (BY_NAME[name].env or source) if source == "default" else source


def _cors(found: dict[str, Resolved]):  # -> Cors | None
    from apiphant.cors import CorsError, policy

    try:
        return policy(found["cors_origins"].value, found["cors_headers"].value,
                      found["cors_credentials"].value)  # fmt: skip
    except CorsError as error:
        raise UsageError(f"{PROG}: {_where(found, 'cors_origins')}: {error}") from None


def _trusted(found: dict[str, Resolved]) -> frozenset[str]:
    from apiphant.context import parse_addresses

    try:
        return parse_addresses(found["trusted_proxies"].value)
    except ValueError as error:
        raise UsageError(f"{PROG}: {_where(found, 'trusted_proxies')}: {error}") from None


def _import_failed(error: Exception, debug: bool) -> int:
    """A handler or hook that failed to import: one line (the traceback with --debug)."""
    from apiphant.routing import BadTarget
    from apiphant.runtime.imports import full_traceback

    if debug and error.__cause__ is not None:
        print(full_traceback(error.__cause__), file=sys.stderr)
    print(f"{PROG}: {error}", file=sys.stderr)
    return BAD_ARGUMENT if isinstance(error, BadTarget) else FAILED


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT, then drain and exit 0."""
    from apiphant import db
    from apiphant.app import HEALTH_PATH, create_app
    from apiphant.openapi.serving import DOCS_PATH
    from apiphant.routing import RouteError
    from apiphant.runtime.lifecycle import serving
    from apiphant.runtime.openfiles import raise_open_files
    from apiphant.server import Limits, Server

    host, port = parse_address(args.address)
    found = options.resolve(args, "serve")
    cors, trusted = _cors(found), _trusted(found)
    value = {name: resolved.value for name, resolved in found.items()}
    db.for_product(args.product, value)
    try:
        app = create_app(args.product, max_body=value["max_body"], cors=cors,
                         trusted_proxies=trusted,
                         max_json_values=value["max_json_values"],
                         docs=value["docs"])  # fmt: skip
    except RouteError as error:
        return _import_failed(error, args.debug)
    with serving("api") as stop:
        value["max_connections"] = raise_open_files(value["max_connections"])
        limits = Limits(**options.limits(value))
        server = Server((host, port), app, limits, access_log=value["access_log"])
        try:
            server.init_socket()
        except OSError as error:
            reason = error.strerror or str(error)
            print(f"{PROG}: cannot listen on {format_address(host, port)}: {reason}",
                  file=sys.stderr)  # fmt: skip
            return FAILED
        server.start()
        # A URL that answers a browser or curl: the routes answer POST only, /api nothing.
        log.info(
            "Apiphant is serving %s (%s) with %d routes; it answers http://%s%s%s%s",
            app.product.name,
            app.product.path,
            len(app.routes),
            format_address(host, port),
            HEALTH_PATH,
            f"; its docs: http://{format_address(host, port)}{DOCS_PATH}" if value["docs"]
            else "",
            f"; CORS for {', '.join(cors.origins)}" if cors else "",
        )
        stop.wait()
        log.info("Stopping: draining connections for up to %gs", limits.drain_timeout)
        server.drain()
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


def openapi(args: argparse.Namespace) -> int:
    """Print the product's OpenAPI document: its handlers are imported, never called."""
    import json

    from apiphant.openapi import build
    from apiphant.product import locate
    from apiphant.routing import RouteError, load, load_hooks

    product = locate(args.product)
    try:
        table, hooks = load(product), load_hooks(product)
    except RouteError as error:
        return _import_failed(error, args.debug)
    print(json.dumps(build(product.name, table, hooks), indent=2))
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
        f"  apiphant serve .                 serve it on {BY_NAME['address'].default}\n"
        f"  pytest tests && ./test.sh        test it (pytest comes with apiphant[deploy])\n"
        f"  fab deploy                       after setting ssh and server_names in deploy.toml"
    )
    return 0


def _is_db(argv: list[str]) -> bool:
    """``apiphant db ACTION ...``; ``apiphant db HOST:PORT`` (an address has a colon, an
    action none) stays apiphant 0.2's serve of a product folder named db."""
    return argv[:1] == ["db"] and not (len(argv) > 1 and ":" in argv[1])


def run(argv: list[str]) -> int:
    if _is_db(argv):
        from apiphant.db import commands

        return commands.main(argv[1:], prog=f"{PROG} db")
    argv = with_command(argv)
    if argv[:1] == ["background"]:
        from apiphant import background

        return background.main(argv[1:], prog=f"{PROG} background")
    from apiphant.runtime import logs

    logs.configure()
    args = parser().parse_args(argv)
    if args.command is None:
        parser().print_help()
        return BAD_ARGUMENT
    if args.command == "new":
        return new(args)
    if args.command == "routes":
        return routes(args)
    if args.command == "openapi":
        return openapi(args)
    if args.reload:
        from apiphant.product import locate
        from apiphant.runtime import reloader

        parse_address(args.address)
        found = options.resolve(args, "serve")
        _cors(found), _trusted(found)
        product = locate(args.product)
        return reloader.run(product.path, [a for a in argv if a != "--reload"])
    from apiphant.runtime import monkey

    monkey.patch_all()
    return serve(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with exit_codes(PROG, (ProductError, AddressError, settings.SettingError)):
        return run(argv)
    return BAD_ARGUMENT


if __name__ == "__main__":
    sys.exit(main())
