"""What a deploy asks every host before it changes anything anywhere: its system user, its
Python, platform and virtualenvs (which wheels to build, which host builds the release's
virtualenv), and the other deployments its Nginx serves. A host that cannot answer, or
whose answer refuses the deploy, stops it with nothing touched."""

import threading
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from apiphant.deploy import hostwide, wheelhouse
from apiphant.deploy.config import Config, ConfigError, Host
from apiphant.deploy.console import DryRun, Hosts
from apiphant.deploy.errors import DeployError
from apiphant.deploy.host import postgres
from apiphant.deploy.host.shell import join
from apiphant.deploy.host.system import account_check
from apiphant.deploy.orchestrate import each_at_once

T = TypeVar("T")


def nginx_neighbours(
    executor: Hosts, config: Config, hosts: list[Host]
) -> dict[str, tuple[hostwide.Needs, ...]]:
    """The other deployments (environments) on each chosen Nginx host, by the record lines
    of its live main config, whose host-wide settings this deploy's main config serves
    too: asked before anything changes anywhere, so a conflict with one (``hostwide.merge``)
    stops the deploy in one line with nothing touched. Fronts are few: one after another."""
    own = hostwide.Needs.of(config)
    found = {}
    for host in (h for h in hosts if h.has("nginx")):
        try:
            answer = executor.query(host.name, hostwide.question(),
                                    "the other deployments its Nginx serves")  # fmt: skip
        except DeployError as error:
            raise DeployError(f"{error}; nothing was changed on any host") from None
        try:
            found[host.name] = hostwide.others_on(host.name, answer, own.name)
            hostwide.merge(host.name, own, found[host.name])
        except ConfigError as error:
            raise ConfigError(f"{error}; nothing was changed on any host") from None
    return found


def host_facts(
    executor: Hosts, config: Config, hosts: list[Host]
) -> tuple[dict[str, wheelhouse.Platform], dict[str, frozenset[str]]]:
    """The Python and platform of every chosen host that gets a virtualenv (an Nginx-only
    host gets none: no wheels for it), and the complete virtualenvs each has, asked before
    anything changes anywhere: a host that cannot be reached, or has an account of the
    deployment's user name that the deploy did not make, stops the deploy here, with
    nothing touched."""
    python = {h.name for h in hosts if config.runs_python(h)}
    account = account_check(config.layout)
    facts = join(account, wheelhouse.facts_command(config.python, config.layout.venvs))
    user = f"its system user {config.layout.user}"

    def ask(name: str) -> str:
        if name not in python:
            return executor.query(name, account, user)
        return executor.query(name, facts, f"{user}; its Python and platform; its virtualenvs")

    # Every host at once: a fleet answers in one round trip's time, not one per host.
    answers = each_at_once([(h.name, partial(ask, h.name)) for h in hosts])
    for answer in answers.values():
        if isinstance(answer, DeployError):
            raise DeployError(f"{answer}; nothing was changed on any host")
    answers = {name: answer for name, answer in answers.items() if name in python}
    platforms = {name: wheelhouse.parse_facts(name, str(a)) for name, a in answers.items()}
    return platforms, {name: wheelhouse.complete_venvs(str(a)) for name, a in answers.items()}


#: What a dry run (which asks no host) puts where the database's password would be.
PASSWORD_UNKNOWN = "<password>"


def database_password(executor: Hosts, config: Config, hosts: list[Host]) -> str | None:
    """The password of the product's role, from the postgres host (root's, 0600), read into
    memory for the releases' secrets files, never shown; "" without a postgres host. A
    question that changes nothing (it comes before the lock): None when the host has no
    password yet, which the locked prepare phase then makes (``password_after_lock``).
    The answer is not printed (``query``); a dry run shows the question alone."""
    server = config.database_host()
    if server is None:
        return ""
    chosen = server.name in {h.name for h in hosts}
    answer = executor.query(server.name, postgres.password(config.layout),
                            "the database's password, if it has one (not shown)")  # fmt: skip
    if isinstance(executor, DryRun):
        return None if chosen else PASSWORD_UNKNOWN
    if not answer.strip():
        if chosen:
            return None
        raise DeployError(f"{server.name}: the database has no password yet, which its first "
                          f"deploy makes: deploy {server.name} too; nothing was changed on "
                          "any host")  # fmt: skip
    return _parsed(config, answer)


def password_after_lock(executor: Hosts, config: Config) -> Callable[[], str]:
    """The password the locked prepare phase made on the postgres host, read back into
    memory when the first secrets file that holds it is uploaded."""
    server = config.database_host()
    assert server is not None
    return read_after_lock(executor, server.name, postgres.password(config.layout),
                           "the database's password, made now (not shown)",
                           partial(_parsed, config))  # fmt: skip


def read_after_lock(
    executor: Hosts, host: str, command: str, why: str, parse: Callable[[str], T]
) -> Callable[[], T]:
    """What the locked prepare phase made on ``host`` (a password, a key), for the steps
    that need it once it exists: ``command`` is asked once, when the first of them runs
    (hosts run side by side: one asks, the others wait for its answer), and its answer
    ``parse``d, which may refuse it (DeployError). What a plan's ``Later`` calls; a dry run
    never calls it."""
    lock = threading.Lock()
    found: list[T] = []

    def read() -> T:
        with lock:
            if not found:
                found.append(parse(executor.query(host, command, why)))
            return found[0]

    return read


def _parsed(config: Config, answer: str) -> str:
    found = postgres.parse_password(answer)
    if not found:
        server = config.database_host()
        name = server.name if server else "?"
        raise DeployError(f"{name}: the database's password in "
                          f"{config.layout.db_password} is not what the deploy made")  # fmt: skip
    return found
