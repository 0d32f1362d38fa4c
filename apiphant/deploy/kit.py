"""The deploy kit's data: role definitions and templates.

They live in the repository's ``deploy/`` folder and ship inside the wheel as
the package ``apiphant.deploy_kit`` (setup.py maps the folder), so an
installed apiphant deploys without a checkout; they are read with
importlib.resources, never from a path next to the code.
"""

from importlib.resources import files
from importlib.resources.abc import Traversable

PACKAGE = "apiphant.deploy_kit"


def root() -> Traversable:
    return files(PACKAGE)


def templates() -> Traversable:
    return root() / "templates"


def roles() -> Traversable:
    return root() / "roles"
