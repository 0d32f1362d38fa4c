"""``apiphant db ACTION PRODUCT``: the development database and the migrations.

apiphant db start PRODUCT      run PRODUCT/.postgres/ (created on first start), print its URL
apiphant db url PRODUCT        print the URL of the running one
apiphant db stop PRODUCT       stop it (the data stays)
apiphant db reset PRODUCT      delete it and start anew (asks, or --yes)
apiphant db migrate PRODUCT    apply PRODUCT/migrations/*.sql to DATABASE_URL's database
                               (or the running development one)

The URL goes to stdout alone (``export DATABASE_URL=$(apiphant db url .)``), what happened
to stderr. A bad argument, a missing PostgreSQL or a misnamed migration is one line and exit
status 2; a cluster or a migration that fails is one line and exit status 1.
"""

import argparse
import sys

from apiphant.product import Product, ProductError, locate
from apiphant.runtime.usage import BAD_ARGUMENT, FAILED, Parser, UsageError, exit_codes
from apiphant.settings import SettingError, env_value, options
from apiphant.settings.schema import DB_COMMANDS

PROG = "apiphant db"

#: Each action and its one line of help.
ACTIONS = {
    "start": "run the product's development database in PRODUCT/.postgres/ and print its URL",
    "url": "print the URL of the product's running development database",
    "stop": "stop the product's development database (its data stays)",
    "reset": "delete the product's development database and start an empty one",
    "migrate": "apply PRODUCT/migrations/NNNN_name.sql in order to DATABASE_URL's database "
               "(or the running development database)",
}  # fmt: skip


def parser(prog: str = PROG) -> Parser:
    p = Parser(prog=prog, description="The development database (PostgreSQL in a folder of "
               "the product, no Docker, no root) and the product's migrations.")  # fmt: skip
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    for action, help in ACTIONS.items():
        command = f"db {action}"
        assert command in DB_COMMANDS, command
        options.add_options(sub.add_parser(action, help=help, description=help + "."), command)
    return p


def _cluster(product: Product):
    from apiphant.db import cluster

    return cluster.of_product(product.path, product.name)


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def start(product: Product) -> int:
    found = _cluster(product)
    started = found.start()
    _say(f"PostgreSQL {'runs' if started else 'already runs'} in {found.folder} "
         f"(Unix socket there, no TCP); apiphant serve uses it while DATABASE_URL is unset; "
         f"stop it with: apiphant db stop {product.path}")  # fmt: skip
    print(found.url)
    return 0


def url(product: Product) -> int:
    found = _cluster(product)
    if not found.running():
        _say(f"{PROG} url: no development database runs in {found.folder}: "
             f"apiphant db start {product.path}")  # fmt: skip
        return FAILED
    print(found.url)
    return 0


def stop(product: Product) -> int:
    found = _cluster(product)
    stopped = found.stop() if found.exists() else False
    _say(f"PostgreSQL in {found.folder} " + ("stopped" if stopped else "was not running"))
    return 0


def reset(product: Product, yes: bool) -> int:
    found = _cluster(product)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"{PROG} reset: this deletes every row in {found.folder}: "
                             "add --yes to confirm")  # fmt: skip
        answer = input(f"Delete the development database in {found.folder}, every row? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            _say("Nothing deleted.")
            return FAILED
    found.remove()
    found.start()
    _say(f"PostgreSQL runs anew, empty, in {found.folder}")
    print(found.url)
    return 0


def migrate(product: Product) -> int:
    from apiphant.db import cluster
    from apiphant.db import migrate as migrations
    from apiphant.db.url import masked

    folder = product.path / "migrations"
    if not folder.is_dir():
        _say(f"no {folder}: no migration to apply")
        return 0
    database = env_value("database_url") or cluster.running_url(product.path)
    if not database:
        raise UsageError(f"{PROG} migrate: DATABASE_URL is not set and no development database "
                         f"runs: set it, or apiphant db start {product.path}")  # fmt: skip
    try:
        import psycopg  # noqa: F401
    except ImportError:
        from apiphant.db import EXTRA

        raise UsageError(f"{PROG} migrate: psycopg is not installed: {EXTRA}") from None
    applied = migrations.apply(database, folder, _say)
    _say(f"{masked(database)}: {len(applied)} applied" if applied else
         f"{masked(database)}: nothing to apply, every migration of {folder} was applied")
    return 0


def run(args: argparse.Namespace) -> int:
    from apiphant.db.cluster import ClusterError
    from apiphant.db.migrate import MigrationError

    product = locate(args.product)
    try:
        if args.action == "start":
            return start(product)
        if args.action == "url":
            return url(product)
        if args.action == "stop":
            return stop(product)
        if args.action == "reset":
            return reset(product, args.yes)
        return migrate(product)
    except (ClusterError, MigrationError) as error:
        _say(f"{PROG} {args.action}: {error}")
        return error.status


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with exit_codes(prog, (ProductError, SettingError)):
        args = parser(prog).parse_args(argv)
        if args.action is None:
            parser(prog).print_help()
            return BAD_ARGUMENT
        return run(args)
    return BAD_ARGUMENT

