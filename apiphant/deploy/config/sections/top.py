"""The top-level keys of deploy.toml (but HTTPS's): the product, its names and releases, how
the deploy logs in, what it runs, and the ``[environment]`` table."""

from pathlib import Path
from typing import Any

from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.model import DEFAULT_PYTHON, KEEP_RELEASES, VENV_MODES
from apiphant.deploy.config.patterns import ABS_PATH, LOGIN, SERVER_NAME
from apiphant.deploy.config.reader import Reader, batch, command
from apiphant.deploy.config.sections.environment import read_environment
from apiphant.deploy.layout import MAX_USER, Layout
from apiphant.product import name_problem


def read_top(top: Reader, data: dict, path: Path, product_dir: Path, env: str) -> dict[str, Any]:
    """The top-level keys, checked in the order users meet them, as ``Config``'s keyword
    arguments."""
    shown = top.shown
    product = top.text("product", None, "the product folder's name, like myproduct")
    problem = name_problem(product, deployable=True)
    if problem:
        raise ConfigError(f"{shown}: product: {problem}, got {product!r}")
    if product != product_dir.name:
        raise ConfigError(
            f"{shown}: product: expected the product folder's name {product_dir.name!r}, "
            f"got {product!r}"
        )
    user = Layout(product, env).user
    if len(user) > MAX_USER:
        raise ConfigError(
            f"{shown}: product: environment {env} runs as the system user {user!r}, "
            f"{len(user)} characters where Linux allows {MAX_USER}: a shorter environment name"
        )
    server_names = top.names("server_names", SERVER_NAME, "domain names like 'api.example.com'")
    if not server_names:
        raise top.fail("server_names", "at least one domain name", [])
    keep = top.integer("keep_releases", KEEP_RELEASES, low=1, high=100)
    batch_size = batch(top)
    python = top.text(
        "python", ABS_PATH, f"an absolute path like {DEFAULT_PYTHON}", DEFAULT_PYTHON
    )
    venv = top.text("venv", None, f"one of {', '.join(VENV_MODES)}", VENV_MODES[0])
    if venv not in VENV_MODES:
        raise top.fail("venv", f"one of {', '.join(VENV_MODES)}", venv)
    secrets = None
    if top.has("secrets"):
        raw = top.text("secrets", None, "a path to a KEY=value file on this machine")
        secrets = Path(raw).expanduser()
        if not secrets.is_absolute():
            secrets = path.parent / secrets
    environment = read_environment(shown, data.get("environment", {}))
    login = top.text("user", LOGIN, "a user name to log in as, like deploy", "root")
    release_command = command(top, "release")
    after_deploy = command(top, "after_deploy")
    return {
        "product": product,
        "server_names": server_names,
        "keep_releases": keep,
        "batch": batch_size,
        "python": python,
        "venv": venv,
        "secrets": secrets,
        "environment": environment,
        "login": login,
        "release_command": release_command,
        "after_deploy": after_deploy,
    }
