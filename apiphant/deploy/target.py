"""Which deployment a task is about: the product folder, its deploy.toml (or another), the
environment over it; and the task arguments that say which hosts, and how many at once."""

from dataclasses import dataclass
from pathlib import Path

from apiphant.deploy import config as configuration
from apiphant.deploy.config import Config
from apiphant.deploy.layout import PRODUCTION
from apiphant.runtime.usage import UsageError


@dataclass(frozen=True)
class Target:
    """Which deployment a task is about: the product, another deploy.toml, an environment."""

    product: str = ""
    config: str = ""
    env: str = PRODUCTION


def repository(start: Path | None = None) -> Path:
    """The folder whose fabfile.py ``fab`` runs: the nearest one up from here, as Fabric
    finds it."""
    here = (start or Path.cwd()).resolve()
    return next((d for d in (here, *here.parents) if (d / "fabfile.py").is_file()), here)


def find_product(target: Target, start: Path | None = None) -> Config:
    """The product: ``--product`` (a folder here or beside the fabfile), else the repository
    itself; its deploy.toml (or ``--config``), with ``--env`` over it."""
    root = repository(start)
    if target.product:
        candidates = [Path(target.product), root / target.product]
        folder = next((c for c in candidates if (c / "api").is_dir()), None)
        if folder is None:
            raise UsageError(
                f"--product {target.product}: no product folder (with api/) named "
                f"{target.product} here or in {root}"
            )
    elif (root / "api").is_dir():
        folder = root
    else:
        raise UsageError(
            f"--product is required: {root} is not a product (no api/ folder); "
            "say which, like --product=myproduct"
        )
    path = Path(target.config) if target.config else folder / "deploy.toml"
    if not path.is_file():
        hint = "" if target.config else ": apiphant new writes one; or copy myproduct's"
        raise UsageError(f"{path}: no such file{hint}")
    return configuration.load(path, folder.resolve(), target.env)


def parallel_width(value: int | str) -> int:
    """``--parallel``: how many hosts prepare at once; empty or 0 means all of them."""
    text = str(value).strip()
    if text in ("", "0"):
        return 0
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--parallel: expected a positive number of hosts, like 4, got {text!r}")
    return int(text)
