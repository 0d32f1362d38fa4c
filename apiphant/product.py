"""Locate a product folder and make it importable, with one-line errors for the CLI."""

import keyword
import sys
from dataclasses import dataclass
from pathlib import Path

#: Debian's own accounts (base-passwd), and those of the services a host commonly runs
#: (databases, caches, web and mail servers, cloud images' login users): a deployed product
#: is also its system user, so such a name would run the workers as that account and share
#: its files. The deploy also refuses, on each host, any other account it did not make.
SYSTEM_USERS = frozenset(
    "root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc "
    "gnats nobody sshd messagebus _apt systemd postgres mysql mariadb redis memcache "
    "mongodb rabbitmq elasticsearch nginx apache httpd haproxy varnish postfix exim dovecot "
    "bind named ntp chrony dnsmasq avahi polkitd syslog uuidd tss tcpdump landscape "
    "pollinate lxd usbmux statd colord clamav git jenkins docker ubuntu debian admin ftp "
    "supervisor certbot".split()
)


#: Modules a product must not shadow: the product's folder goes first on sys.path, so a
#: product named ``requests`` would be imported in place of the library.
DEPENDENCIES = frozenset(
    "apiphant gevent greenlet zope jinja2 markupsafe fabric invoke paramiko requests urllib3 "
    "idna certifi charset_normalizer sentry_sdk supervisor httptools orjson test tests".split()
)
#: apiphant's subcommands: a product named ``routes`` would make ``apiphant routes ADDRESS``
#: (apiphant 0.2's form of serve) mean two things.
COMMANDS = ("serve", "routes", "openapi", "new", "background")
#: Linux's limit for a user name is 32; the deploy's program names add to it.
MAX_NAME = 31


def name_problem(name: str, deployable: bool = False) -> str | None:
    """THE product-name rule, for serve, ``apiphant new`` and the deploy: what is wrong, or None.

    Every product name must be an ASCII Python identifier short enough for a system user,
    and shadow no standard or dependency module. A deployable one (``new``, the deploy) is
    also lowercase and no system account's name, because it becomes the system user.
    """
    if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name):
        return "expected an ASCII Python identifier like shop or my_api"
    if len(name) > MAX_NAME:
        return f"expected at most {MAX_NAME} characters (it names a system user)"
    if name in sys.stdlib_module_names or name in DEPENDENCIES:
        return f"it would shadow the module {name}"
    if name in COMMANDS:
        return f"it is the name of the command 'apiphant {name}'"
    if deployable and not name.islower():
        return "expected lowercase, like shop or my_api (it names a system user)"
    if deployable and name in SYSTEM_USERS:
        return "expected a name that is not a system account's (it names the system user)"
    return None


class ProductError(Exception):
    """A product folder that cannot be served; the message is one line for the user."""


@dataclass(frozen=True)
class Product:
    """A product folder: ``name`` is its package name, ``path`` its absolute folder."""

    name: str
    path: Path

    @property
    def api_path(self) -> Path:
        return self.path / "api"


def locate(product_path: str | Path) -> Product:
    """Check that ``product_path`` is a product folder; its parent goes on sys.path.

    Putting the parent first on sys.path is what lets handlers write
    ``from myproduct.api import anything``.
    """
    path = Path(product_path).expanduser().resolve()
    if not path.is_dir():
        raise ProductError(f"no such product folder: {product_path}")
    name = path.name
    problem = name_problem(name)
    if problem:
        raise ProductError(f"bad product folder name {name!r}: {problem}: {path}")
    if not (path / "api").is_dir():
        raise ProductError(f"no api/ folder in product: {path}")
    parent = str(path.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    return Product(name=name, path=path)
