"""The host's packages, the deployment's account and the folders it writes."""

from collections.abc import Iterable
from shlex import quote as q

from apiphant.deploy.host.shell import join
from apiphant.deploy.layout import NGINX_USER, Layout


def apt_install(packages: Iterable[str]) -> str:
    """Install the packages not installed yet; nothing (not even apt-get update) when all are."""
    names = " ".join(q(p) for p in packages)
    return (
        f"missing=''; for p in {names}; do "
        "dpkg-query -W -f='${db:Status-Abbrev}' \"$p\" 2>/dev/null | grep -q '^ii' "
        '|| missing="$missing $p"; done; '
        "if [ -z \"$missing\" ]; then echo 'apt: all installed'; else "
        'echo "apt: installing$missing"; export DEBIAN_FRONTEND=noninteractive; '
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; fi"
    )


def account_check(layout: Layout) -> str:
    """Fails, in one line on stderr, when an account of the deployment's user name exists
    that the deploy did not make: a system account (postgres, redis...) or a person's, whose
    files and processes the product's programs would share. The deploy's own accounts carry
    its mark (``Layout.account_comment``); one with no comment and the deployment's folder
    as its home was made by an earlier version of the kit, which did not mark them.
    Read-only: asked before anything changes on any host, and again before ``useradd``."""
    user, mark, home = layout.user, layout.account_comment, layout.root
    refused = (f"user {user} exists and the deploy did not make it: its programs would run "
               "as that account; choose another product (or environment) name, or remove "
               "the account")  # fmt: skip
    return (
        f"if entry=$(getent passwd {q(user)}); then "
        "comment=$(printf '%s\\n' \"$entry\" | cut -d: -f5); "
        "home=$(printf '%s\\n' \"$entry\" | cut -d: -f6); "
        f'if [ "$comment" != {q(mark)} ] && '
        f'{{ [ -n "$comment" ] || [ "$home" != {q(home)} ]; }}; then '
        f"echo {q(refused)} >&2; false; fi; fi"
    )


def system_user(layout: Layout) -> str:
    """The deployment's user and group, marked as the deploy's (``account_check``); an
    earlier kit's unmarked one gets the mark."""
    user, mark = layout.user, layout.account_comment
    return join(
        account_check(layout),
        f"if id -u {q(user)} >/dev/null 2>&1; then "
        f'[ "$(getent passwd {q(user)} | cut -d: -f5)" = {q(mark)} ] || '
        f"usermod --comment {q(mark)} {q(user)}; "
        f"else useradd --system --user-group --comment {q(mark)} --home-dir {q(layout.root)} "
        f"--no-create-home --shell /usr/sbin/nologin {q(user)}; fi",
    )


#: Logs may hold what clients sent: readable by root and the adm group only (Debian's way).
LOGS_OWNER = ("root", "adm", 0o750)


def logs_owner(nginx: bool) -> tuple[str, str, int]:
    """The logs folder's owner, group and mode. On an Nginx host its group is Nginx's user
    instead of adm: after a rotation (USR1) each Nginx worker reopens the logs by name, and
    in a folder closed to it, it cannot; it wrote on into the rotated file, whose lines the
    next rotation's compression then lost. Other users, the product's included, read none."""
    owner, group, mode = LOGS_OWNER
    return owner, NGINX_USER if nginx else group, mode


def private_dir(path: str) -> str:
    return f"install -d -m 0700 {q(path)}"
