"""The secrets file: THE parser of its lines, what the hosts get of it, and the check before
a deploy touches any host."""

from collections.abc import Callable, Iterable
from functools import partial

from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.front import TLS_CERT_KEY, TLS_KEY_KEY
from apiphant.deploy.config.model import Config, Host
from apiphant.deploy.config.patterns import ENV_KEY
from apiphant.deploy.config.sections.environment import RESERVED_ENV
from apiphant.settings.schema import env_name

#: The variable the programs read their database from (apiphant.db).
DATABASE_URL = env_name("database_url")


def parse_secrets(text: str | bytes, where: str) -> tuple[tuple[str, str], ...]:
    """THE parser of a secrets file: its NAME=value pairs, in order; ``where`` names the file
    in a one-line ConfigError. Blank and whitespace-only lines and comments (``#`` first on
    the line, after any blanks) are skipped; every other line is NAME=value, the value taken
    literally (no quotes, no expansion). The hosts never see the file itself, only
    ``secrets_lines`` of what this returns, so the launcher that loads it on a host and this
    checker cannot disagree about a line. Values are never part of a message.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError as error:
            number = text[: error.start].count(b"\n") + 1
            raise ConfigError(f"{where}: line {number}: not UTF-8 text") from None
    pairs = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not ENV_KEY.fullmatch(key):
            raise ConfigError(f"{where}: line {number}: expected NAME=value")
        if key in RESERVED_ENV:
            raise ConfigError(f"{where}: line {number}: {key} is set by the deploy, leave it out")
        if "\r" in value or "\0" in value:
            raise ConfigError(f"{where}: line {number}: {key}: control characters in the value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            raise ConfigError(
                f"{where}: line {number}: {key}: the value is quoted; write {key}=value, "
                "it is taken literally"
            )
        pairs.append((key, value))
    return tuple(pairs)


def secrets_lines(pairs: Iterable[tuple[str, str]]) -> bytes:
    """The secrets as the hosts get them: one NAME=value line each, nothing else; what
    config/run's loader reads. Without the two lines that name the certificate and key of
    tls = "files" on this machine: those are the deploy's, not the programs'."""
    kept = [(k, v) for k, v in pairs if k not in (TLS_CERT_KEY, TLS_KEY_KEY)]
    return "".join(f"{key}={value}\n" for key, value in kept).encode()


def read_secrets(config: Config) -> tuple[tuple[str, str], ...] | None:
    """The secrets file's pairs (``parse_secrets``), or None when deploy.toml names none;
    checked before a deploy touches any host."""
    if config.secrets is None:
        return None
    shown = config.path.name
    try:
        data = config.secrets.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"{shown}: secrets: expected a KEY=value file on this machine, cannot read "
            f"{str(config.secrets)!r}: {error.strerror or error} "
            "(create it with mode 0600, or remove the key)"
        ) from None
    return parse_secrets(data, f"secrets file {config.secrets}")


def check_secrets(config: Config) -> bytes | None:
    """The secrets file, checked, as the hosts get it (``secrets_lines``); None for none."""
    pairs = check_database_secrets(config, read_secrets(config))
    return None if pairs is None else secrets_lines(pairs)


def check_database_secrets(
    config: Config, pairs: tuple[tuple[str, str], ...] | None
) -> tuple[tuple[str, str], ...] | None:
    """The secrets with the database's URL as the programs read it: ``[database] url_env``
    names the line that holds a database elsewhere, which they get as DATABASE_URL; with a
    postgres host the deploy writes DATABASE_URL itself (``host_secrets``), so the file may
    not. Checked before any host is touched; a value is never part of a message."""
    where = f"secrets file {config.secrets}"
    names = dict(pairs or ())
    url_env = config.database.url_env
    if url_env:
        if pairs is None:
            raise ConfigError(f"{config.path.name}: database.url_env: names a line of the "
                              "secrets file, and deploy.toml has no secrets")  # fmt: skip
        if not names.get(url_env):
            raise ConfigError(f"{where}: no {url_env}=URL line, which [database] url_env "
                              "names")  # fmt: skip
        if url_env != DATABASE_URL:
            pairs = (*((k, v) for k, v in pairs if k != DATABASE_URL),
                     (DATABASE_URL, names[url_env]))  # fmt: skip
    elif (server := config.database_host()) is not None and DATABASE_URL in names:
        raise ConfigError(f"{where}: {DATABASE_URL} is set by the deploy (hosts.{server.name} "
                          "has the postgres role), leave it out")  # fmt: skip
    return pairs


def host_secrets(
    config: Config, hosts: Iterable[Host], shared: bytes | None,
    password: str | Callable[[], str],
) -> dict[str, bytes | Callable[[], bytes]] | bytes | None:
    """What each host's releases get as their secrets: the checked file (``shared``), and,
    with a postgres host, each host's own DATABASE_URL (through the socket on the database
    host, else its private address) with the password the deploy read from it; or, when the
    deploy makes that password under the lock (``password`` a callable), each host's
    content made when its upload runs."""
    if config.database_host() is None:
        return shared

    def content(host: Host, password: str) -> bytes:
        return (shared or b"") + secrets_lines(
            [(DATABASE_URL, config.database_url(host, password))])

    chosen = [h for h in hosts if config.runs_python(h)]
    if callable(password):
        return {h.name: partial(lambda h: content(h, password()), h) for h in chosen}
    return {h.name: content(h, password) for h in chosen}
