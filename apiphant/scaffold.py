"""``apiphant new NAME``: a new product from the template, its name put in everywhere.

The template is the repository's ``myproduct/`` folder; an installed
apiphant carries a copy of it as ``apiphant/template``.
"""

import shutil
from pathlib import Path

import apiphant
from apiphant.product import name_problem

TEMPLATE_NAME = "myproduct"
SKIP = {"__pycache__", ".pytest_cache"}
TEXT_SUFFIXES = {".py", ".toml", ".txt", ".md", ".sh", ".cfg", ".ini", ".json", ".example",
                 ".sql"}  # fmt: skip


class ScaffoldError(Exception):
    """A name or folder that a product cannot be created with; one line for the user."""


def template_path() -> Path:
    """The template product: packaged in apiphant (apiphant/template), or the checkout's
    myproduct/ beside the package. Found from the package's root, not from this module's
    folder, so the module may move."""
    root = Path(apiphant.__file__).resolve().parent
    for candidate in (root / "template", root.parent / TEMPLATE_NAME):
        if (candidate / "api").is_dir():
            return candidate
    raise ScaffoldError("the template product is missing from this installation")


def check_name(name: str) -> None:
    problem = name_problem(name, deployable=True)
    if problem:
        raise ScaffoldError(f"bad product name {name!r}: {problem}")


def plan(name: str, template: Path) -> list[tuple[Path, Path, bool]]:
    """(source, relative destination, is_text) for every file: pure, no writes."""
    files = []
    for source in sorted(template.rglob("*")):
        relative = source.relative_to(template)
        if not source.is_file() or SKIP & set(relative.parts) or source.suffix == ".pyc":
            continue
        target = Path(*(part.replace(TEMPLATE_NAME, name) for part in relative.parts))
        is_text = source.suffix in TEXT_SUFFIXES or source.name in {"Makefile", "README"}
        files.append((source, target, is_text))
    return files


def create(name: str, parent: Path, template: Path | None = None) -> Path:
    """Write ``parent/name`` from the template and return it; refuse to overwrite."""
    check_name(name)
    template = template or template_path()
    folder = parent / name
    if folder.exists():
        raise ScaffoldError(f"{folder} already exists")
    if not parent.is_dir():
        raise ScaffoldError(f"no such folder: {parent}")
    for source, relative, is_text in plan(name, template):
        destination = folder / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if is_text:
            destination.write_text(source.read_text().replace(TEMPLATE_NAME, name))
        else:
            shutil.copyfile(source, destination)
        shutil.copymode(source, destination)
    return folder
