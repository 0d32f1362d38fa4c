"""Every knob of apiphant, declared once: its name, kind, default, help, and where it is set.

A ``Setting`` says which commands take it (and by which flag), which environment variable
and which deploy.toml key set it, and how the deploy kit writes it on a program's Supervisor
command line. The command-line parsers (``settings.options``), the server's ``Limits``, the
deploy configuration's ``[api]`` and ``[background]`` and the documentation tables
(``settings.tables``) are derived from these tuples, so a new knob is one entry here. In the
manner of gunicorn's ``Setting``, as frozen dataclasses in ordered tuples: nothing happens at
import, and the order is the order of ``--help``.

Pure, standard library only: the server, the commands and the deploy kit all read it.
"""

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apiphant.settings import values

#: ``apiphant serve`` without an address: on the port ``apiphant.test`` calls (below).
DEFAULT_ADDRESS = "127.0.0.1:8888"
#: The largest request body, in bytes.
DEFAULT_MAX_BODY = 1024 * 1024
#: The most JSON values in one request body (1 + its commas and opening brackets).
DEFAULT_MAX_JSON_VALUES = 100_000
#: ``Limits.max_connections`` when a server is built directly; the command resolves the
#: default from the open-files limit instead (``None``: as many as it allows).
DIRECT_MAX_CONNECTIONS = 20000
#: How long the background runner's running tasks may finish on SIGTERM/SIGINT.
DEFAULT_STOP_TIMEOUT = 10.0
#: The port ``test.sh`` serves on and ``apiphant.test`` calls when nothing says otherwise.
DEFAULT_TEST_PORT = 8888

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
#: One origin or header name in a deploy.toml list (each is checked by apiphant.cors.policy).
LIST_ITEM = re.compile(r"[^,\s]{1,200}")


#: ``Setting.deploy_default`` when a deployment's default is the command's.
SAME: Any = type("Same", (), {"__repr__": lambda self: "SAME"})()


class Render(enum.Enum):
    """How the deploy kit passes a setting to a program it runs under Supervisor."""

    ALWAYS = "always"  # ``--flag VALUE`` on the command line, every time
    IF_NOT_DEFAULT = "if not default"  # ``--flag VALUE`` when it differs from the default
    FLAG = "flag"  # ``--flag`` alone, when true
    ENVIRONMENT = "environment"  # a line of the program's environment file
    NO = "no"  # not set by the deploy kit


def _g(value: Any) -> str:
    return f"{value:g}"


def _shown_size(value: int) -> str:
    """``1048576`` as ``1M``: the largest unit that divides it."""
    for unit, factor in sorted(values.SIZE_UNITS.items(), key=lambda item: -item[1]):
        if value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


@dataclass(frozen=True)
class Kind:
    """What a setting's values are, and how each surface reads and writes them.

    ``cli`` is the argparse type (None: the text as it is, or no value for a flag), ``env``
    parses an environment variable, ``toml`` a deploy.toml value; each raises ValueError
    ``expected WHAT, got ...``. ``format`` writes a value on a command line; ``shown`` in
    the documentation.
    """

    name: str
    cli: Callable[[str], Any] | None = None
    env: Callable[[str], Any] | None = None
    toml: Callable[[Any], Any] | None = None
    format: Callable[[Any], str] = str
    shown: Callable[[Any], str] = str


TEXT = Kind("text", env=values.text)
ADDRESS = Kind("HOST:PORT")  # checked by values.parse_address when the server starts
SIZE = Kind("size", cli=values.size, toml=values.toml_size, shown=_shown_size)
COUNT = Kind("count", cli=values.count, env=values.count, toml=values.toml_integer())
SECONDS = Kind("seconds", cli=values.cli_seconds, env=values.seconds, toml=values.toml_seconds,
               format=_g, shown=_g)  # fmt: skip
GRACE = Kind("seconds or 0", cli=values.grace_seconds, format=_g, shown=_g)
STOP_SECONDS = Kind("seconds or 0", cli=values.stop_seconds, toml=values.toml_seconds,
                    format=_g, shown=_g)  # fmt: skip
FLAG = Kind("flag", env=values.flag, toml=values.toml_flag,
            shown=lambda on: "on" if on else "off")  # fmt: skip
ORIGINS = Kind("origins", env=values.words,
               toml=values.toml_names(LIST_ITEM.fullmatch, "origins like 'https://a.example'"),
               shown=lambda items: ", ".join(items) or "none")  # fmt: skip
HEADERS = Kind("header names", env=values.words,
               toml=values.toml_names(LIST_ITEM.fullmatch, "header names like 'Authorization'"),
               shown=lambda items: ", ".join(items) or "none")  # fmt: skip
WORDS = Kind("words", env=values.words, shown=lambda items: ", ".join(items) or "none")
PORT = Kind("port", env=values.port)
LOG_LEVEL_KIND = Kind("level", env=values.choice(LOG_LEVELS, upper=True))
LOG_FORMAT_KIND = Kind("format", env=values.choice(LOG_FORMATS))


@dataclass(frozen=True)
class Setting:
    """One knob. ``help`` is one line for ``--help`` and the docs; ``{default}`` and
    ``{env}`` in it are filled in from the entry itself."""

    name: str  # the argparse dest, and the field of Limits / the deploy config's Api
    kind: Kind
    default: Any
    help: str
    commands: tuple[str, ...] = ()  # the commands whose parser takes it
    flag: str | None = None  # "--keepalive-timeout"
    positional: bool = False
    optional: bool = False  # a positional that may be left out (nargs="?")
    repeat: bool = False  # action="append": the flag may be given several times
    metavar: str | None = None
    env: str | None = None  # the environment variable
    deploy: str | None = None  # the deploy.toml key: "api.keepalive_timeout"
    derived: str = ""  # how the deploy kit sets it from other keys, when no key sets it
    deploy_help: str = ""  # what its deploy.toml key does beyond setting the option
    supervisor: Render = Render.NO
    limits: bool = False  # a field of the server's Limits
    default_doc: str = ""  # the default in words, when the value does not say it
    #: A deployment's default when it is not the command's (``docs``: on in development,
    #: off in a deploy); SAME for the same.
    deploy_default: Any = SAME


SERVE_COMMANDS = ("serve",)
BOTH = ("serve", "background")
#: ``apiphant db ACTION PRODUCT``: each action's parser is the command ``db ACTION``.
DB_COMMANDS = ("db start", "db stop", "db reset", "db url", "db migrate")

#: ``apiphant serve``: the server's knobs, in the order of ``apiphant serve -h``.
SERVE: tuple[Setting, ...] = (
    Setting("product", TEXT, None, "the product folder, e.g. myproduct",
            commands=("serve", "routes", "openapi", "background", *DB_COMMANDS),
            positional=True),
    Setting("address", ADDRESS, DEFAULT_ADDRESS, "HOST:PORT or [IPv6]:PORT (default {default})",
            commands=SERVE_COMMANDS, positional=True, optional=True,
            derived="hosts.*.first_port, workers and bind"),
    Setting("max_body", SIZE, DEFAULT_MAX_BODY,
            "largest request body, bytes or K/M (default {default}); larger gets 413",
            commands=SERVE_COMMANDS, flag="--max-body", deploy="api.max_body",
            deploy_help="also Nginx's `client_max_body_size`", supervisor=Render.ALWAYS),
    Setting("max_json_values", COUNT, DEFAULT_MAX_JSON_VALUES,
            "most JSON values in a request body, counted as 1 + its commas and opening "
            "brackets (default {default}); more gets 413 before parsing",
            commands=SERVE_COMMANDS, flag="--max-json-values", deploy="api.max_json_values",
            supervisor=Render.ALWAYS),
    Setting("access_log", FLAG, False, "log one line per request", commands=SERVE_COMMANDS,
            flag="--access-log", deploy="api.access_log", supervisor=Render.FLAG),
    Setting("reload", FLAG, False,
            "development: restart when a .py file of the product changes",
            commands=SERVE_COMMANDS, flag="--reload"),
    Setting("cors_origins", ORIGINS, (),
            "a browser origin allowed to call the API, like https://app.example.com "
            "(repeatable; or * for any; default: {env}, comma-separated)",
            commands=SERVE_COMMANDS, flag="--cors-origin", repeat=True, metavar="ORIGIN",
            env="APIPHANT_CORS_ORIGINS", deploy="api.cors_origins",
            supervisor=Render.ENVIRONMENT),
    Setting("cors_headers", HEADERS, (),
            "a request header such origins may send besides Content-Type, like Authorization "
            "(repeatable; default: {env})",
            commands=SERVE_COMMANDS, flag="--cors-header", repeat=True, metavar="NAME",
            env="APIPHANT_CORS_HEADERS", deploy="api.cors_headers",
            supervisor=Render.ENVIRONMENT),
    Setting("cors_credentials", FLAG, False, "let such origins send cookies (not with *)",
            commands=SERVE_COMMANDS, flag="--cors-credentials",
            env="APIPHANT_CORS_CREDENTIALS", deploy="api.cors_credentials",
            supervisor=Render.ENVIRONMENT),
    Setting("trusted_proxies", WORDS, (),
            "a proxy (like Nginx) whose X-Forwarded-For names the client "
            "(repeatable; default: {env}, comma-separated)",
            commands=SERVE_COMMANDS, flag="--trusted-proxy", repeat=True, metavar="IP",
            env="APIPHANT_TRUSTED_PROXIES",
            derived="loopback and the private addresses of the hosts with the nginx role",
            supervisor=Render.ENVIRONMENT),
    Setting("max_connections", COUNT, None,
            "concurrent connections (default: as many as the open-files limit allows)",
            commands=SERVE_COMMANDS, flag="--max-connections", deploy="api.max_connections",
            supervisor=Render.IF_NOT_DEFAULT, limits=True,
            default_doc="the open-files limit"),
    Setting("keepalive_timeout", SECONDS, 75.0,
            "seconds an idle keep-alive connection is kept (default {default})",
            commands=SERVE_COMMANDS, flag="--keepalive-timeout", deploy="api.keepalive_timeout",
            supervisor=Render.ALWAYS, limits=True),
    Setting("header_timeout", SECONDS, 10.0,
            "seconds to receive request headers (default {default})",
            commands=SERVE_COMMANDS, flag="--header-timeout", deploy="api.header_timeout",
            supervisor=Render.ALWAYS, limits=True),
    Setting("request_timeout", SECONDS, 30.0,
            "seconds the request body may take to arrive, and each send to be taken "
            "(default {default})",
            commands=SERVE_COMMANDS, flag="--request-timeout", deploy="api.request_timeout",
            supervisor=Render.ALWAYS, limits=True),
    Setting("drain_timeout", SECONDS, 10.0,
            "seconds in-flight requests get on SIGTERM (default {default})",
            commands=SERVE_COMMANDS, flag="--drain-timeout", deploy="api.drain_timeout",
            deploy_help="above `nginx.upstream_keepalive_timeout + 1`",
            supervisor=Render.ALWAYS, limits=True),
    Setting("drain_idle_grace", GRACE, 0.0,
            "during a drain, close idle keep-alive connections only after this many seconds "
            "idle; behind Nginx, set it above the upstream keepalive_timeout (default {default})",
            commands=SERVE_COMMANDS, flag="--drain-idle-grace",
            derived="nginx.upstream_keepalive_timeout + 1", supervisor=Render.ALWAYS,
            limits=True),
    Setting("max_active", COUNT, 1000,
            "requests running the application at once; more wait their turn, in arrival "
            "order (default {default})",
            commands=SERVE_COMMANDS, flag="--max-active", deploy="api.max_active",
            supervisor=Render.IF_NOT_DEFAULT, limits=True),
    Setting("queue_timeout", SECONDS, 10.0,
            "seconds a request may wait for its turn; then 503 with Retry-After "
            "(default {default})",
            commands=SERVE_COMMANDS, flag="--queue-timeout", deploy="api.queue_timeout",
            supervisor=Render.IF_NOT_DEFAULT, limits=True),
    Setting("linger_timeout", SECONDS, 2.0,
            "seconds a lingering close waits for each read of what the client still sends "
            "(default {default})",
            commands=SERVE_COMMANDS, flag="--linger-timeout", deploy="api.linger_timeout",
            supervisor=Render.IF_NOT_DEFAULT, limits=True),
    Setting("linger_time", SECONDS, 30.0,
            "seconds a lingering close may take in all (default {default})",
            commands=SERVE_COMMANDS, flag="--linger-time", deploy="api.linger_time",
            supervisor=Render.IF_NOT_DEFAULT, limits=True),
    Setting("docs", FLAG, True,
            "serve the OpenAPI document at /api/openapi.json and its page at /api/docs "
            "(--no-docs: off; default: {env}, else on)",
            commands=SERVE_COMMANDS, flag="--docs", env="APIPHANT_DOCS", deploy="api.docs",
            deploy_default=False, supervisor=Render.FLAG,
            deploy_help="off unless set: a deployment publishes no description of its API "
                        "by default"),
    Setting("debug", FLAG, False, "show the full traceback of a failed import",
            commands=("serve", "routes", "openapi"), flag="--debug"),
)  # fmt: skip

#: ``apiphant-background`` (``apiphant background``); it also takes ``product``.
BACKGROUND: tuple[Setting, ...] = (
    Setting("stop_timeout", STOP_SECONDS, DEFAULT_STOP_TIMEOUT,
            "on SIGTERM/SIGINT, how long running tasks may take to finish before they are "
            "killed (default {default}); keep Supervisor's stopwaitsecs above it",
            commands=("background",), flag="--stop-timeout", metavar="SECONDS",
            deploy="background.stop_timeout", supervisor=Render.ALWAYS),
)  # fmt: skip

#: What both the server and the background runner read from their environment.
PROCESS: tuple[Setting, ...] = (
    Setting("log_level", LOG_LEVEL_KIND, "INFO",
            "the log level: DEBUG, INFO, WARNING, ERROR or CRITICAL",
            env="APIPHANT_LOG_LEVEL"),
    Setting("log_format", LOG_FORMAT_KIND, "text",
            "text (LEVEL at module.function:line [time] message) or json, one object a line",
            env="APIPHANT_LOG_FORMAT"),
    Setting("sentry_dsn", TEXT, "", "report unexpected exceptions to this Sentry project",
            env="SENTRY_DSN", default_doc="none: nothing is reported"),
    Setting("sentry_environment", TEXT, "", "the environment Sentry's events name",
            env="SENTRY_ENVIRONMENT", default_doc="none"),
    Setting("sentry_release", TEXT, "", "the release Sentry's events name",
            env="SENTRY_RELEASE", default_doc="none"),
    Setting("sentry_locals", FLAG, False,
            "send the frames' local variables with Sentry events (scrubbed)",
            env="APIPHANT_SENTRY_LOCALS"),
    Setting("sentry_scrub", WORDS, (),
            "more key parts whose values are scrubbed from Sentry events, comma-separated",
            env="APIPHANT_SENTRY_SCRUB"),
)  # fmt: skip

#: The functional tests (``apiphant.test``) and the smoke test (``test.sh``).
TESTING: tuple[Setting, ...] = (
    Setting("smoke_product", TEXT, ".", "the product folder (default: here)",
            commands=("smoke",), flag="--product", metavar="PRODUCT"),
    Setting("url", TEXT, "", "a running server, like a deployment", commands=("smoke",),
            positional=True, optional=True, env="APIPHANT_URL",
            default_doc="none: HOST and PORT below"),
    Setting("host", TEXT, "127.0.0.1", "the host the tests call", env="APIPHANT_HOST"),
    Setting("port", PORT, DEFAULT_TEST_PORT, "the port the tests call, and test.sh serves on",
            env="APIPHANT_PORT"),
    Setting("version", TEXT, "v0", "the API version the tests call", env="APIPHANT_VERSION"),
    Setting("timeout", SECONDS, 10.0, "seconds a test's request may take",
            env="APIPHANT_TIMEOUT"),
    Setting("python", TEXT, "", "the Python test.sh runs the server and test.py with",
            env="PYTHON", default_doc="the running one"),
)  # fmt: skip

#: Set by or for the deploy kit.
KIT: tuple[Setting, ...] = (
    Setting("release", TEXT, "", "the release id a worker answers on /health",
            env="APIPHANT_RELEASE", derived="the release being deployed"),
    Setting("sudo_password", TEXT, "",
            "a non-root SSH user's sudo password, if sudo needs one (never a file)",
            env="APIPHANT_SUDO_PASSWORD", default_doc="none: sudo -n"),
    Setting("tls_cert", TEXT, "",
            'tls = "files": the certificate chain on this machine (a line of the secrets file)',
            env="APIPHANT_TLS_CERT", default_doc="none"),
    Setting("tls_key", TEXT, "",
            'tls = "files": its private key on this machine (a line of the secrets file)',
            env="APIPHANT_TLS_KEY", default_doc="none"),
)  # fmt: skip

#: PostgreSQL: where the database is, and each process's pool of connections to it
#: (``apiphant.db``). A pool of 10 with a 5 s wait suits one gevent worker: its requests
#: share the 10 in turn, so a burst past them waits (briefly: a query takes milliseconds)
#: instead of failing, while 10 per worker keeps a host's workers under PostgreSQL's
#: default max_connections of 100; 5 s is past any healthy wait and well inside Nginx's
#: and a client's patience, so a database that is gone answers 503 before they give up.
DATABASE: tuple[Setting, ...] = (
    Setting("database_url", TEXT, "",
            "the PostgreSQL database, in libpq's form: postgresql://USER:PASSWORD@HOST/NAME "
            "or host=... dbname=...; never on a command line (it holds the password)",
            env="DATABASE_URL",
            default_doc="none: apiphant serve uses the running development database "
                        "(apiphant db start), if any"),
    Setting("db_pool_size", COUNT, 10,
            "connections to PostgreSQL each worker process keeps, opened on first use "
            "(default {default})",
            commands=BOTH, flag="--db-pool-size", env="APIPHANT_DB_POOL_SIZE",
            deploy="database.pool_size", deploy_help="the background runner's too",
            supervisor=Render.IF_NOT_DEFAULT),
    Setting("db_pool_timeout", SECONDS, 5.0,
            "seconds a request waits for a free connection; then 503 with Retry-After "
            "(default {default})",
            commands=BOTH, flag="--db-pool-timeout", env="APIPHANT_DB_POOL_TIMEOUT",
            deploy="database.pool_timeout", deploy_help="the background runner's too",
            supervisor=Render.IF_NOT_DEFAULT),
    Setting("idempotency_ttl", SECONDS, 86400.0,
            "seconds the first answer to a write with an Idempotency-Key is kept, to be "
            "answered again to a retry with that key (default {default}: a day)",
            env="APIPHANT_IDEMPOTENCY_TTL"),
    Setting("yes", FLAG, False, "reset without asking: every row of the development "
            "database is deleted", commands=("db reset",), flag="--yes"),
)  # fmt: skip

GROUPS: dict[str, tuple[Setting, ...]] = {
    "serve": SERVE, "background": BACKGROUND, "process": PROCESS, "testing": TESTING,
    "kit": KIT, "database": DATABASE,
}  # fmt: skip
ALL: tuple[Setting, ...] = tuple(s for group in GROUPS.values() for s in group)
BY_NAME: dict[str, Setting] = {s.name: s for s in ALL}


def of_command(command: str) -> tuple[Setting, ...]:
    """The settings ``command``'s parser takes, in ``--help`` order."""
    return tuple(s for s in ALL if command in s.commands)



def env_name(name: str) -> str:
    """The environment variable of the setting ``name``: code names a variable by this, never
    by a string of its own."""
    env = BY_NAME[name].env
    assert env is not None, name
    return env


def default(name: str) -> Any:
    """The default of the setting ``name``: the server's Limits, the App and the deploy
    configuration start from it, so a default is written once, here."""
    return BY_NAME[name].default


def deploy_default(setting: Setting) -> Any:
    """A setting's default in a deployment: its own, unless it says another."""
    return setting.default if setting.deploy_default is SAME else setting.deploy_default
