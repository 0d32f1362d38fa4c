"""Locate a product folder and make it importable, with one-line errors for the CLI."""

import keyword
import sys
from dataclasses import dataclass
from pathlib import Path

#: Debian's own accounts (base-passwd), sshd and Nginx's: a deployed product is also its
#: system user, so such a name would run the workers as root or share an account's files.
SYSTEM_USERS = frozenset(
    "root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc "
    "gnats nobody sshd messagebus".split()
)


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
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ProductError(f"product folder name {name!r} is not a Python identifier: {path}")
    if not (path / "api").is_dir():
        raise ProductError(f"no api/ folder in product: {path}")
    parent = str(path.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    return Product(name=name, path=path)
