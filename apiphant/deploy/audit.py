"""The history every host keeps of what was done to it (``history.log``): one line per
deploy, rollback, run, maintenance or unlock, saying when, who, which code and how it
ended; never what was typed after a ``fab run`` command's name."""

import re
import shlex
from datetime import UTC, datetime

import apiphant
from apiphant.deploy import artifacts, plan
from apiphant.deploy.config import Config, Host
from apiphant.deploy.console import Hosts
from apiphant.deploy.orchestrate import run_side_by_side


def audit_line(
    config: Config,
    action: str,
    outcome: str,
    release: str = "",
    shipped: artifacts.Shipped | None = None,
) -> str:
    """One line of a host's history: when, who, which code (git commit, and dirty: a file
    git tracks in the product folder differs from it), what, how. A deploy's line also says
    which files it shipped (``files=tracked``: those git tracks, as in the working tree;
    ``files=folder``: a folder outside git)."""
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    commit, changed = artifacts.revision(config.product_dir)
    dirty = ("yes" if changed else "no") if commit else "-"
    fields = [when, action, f"outcome={outcome}", f"by={artifacts.deployer()}",
              f"commit={commit or 'none'}", f"dirty={dirty}", f"apiphant={apiphant.__version__}",
              f"env={config.env}"]  # fmt: skip
    if shipped is not None:
        fields.append(f"files={'folder' if shipped.repository is None else 'tracked'}")
    if release:
        fields.append(f"release={release}")
    return " ".join(f.replace("\n", " ") for f in fields)


def _record(executor: Hosts, config: Config, hosts: list[Host], line: str) -> None:
    """The line in every host's history, hosts side by side; a failure is reported."""
    run_side_by_side(executor, plan.record_steps(config, hosts, line))


#: A shell word that sets a variable for the command (``TOKEN=... python -m x``).
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def command_name(command: str) -> str:
    """What the history keeps of a ``fab run`` command: its name (the first word that is
    not a variable's assignment), never its arguments or assignments, which may hold what
    was typed as a secret; a name with anything but letters, digits and ``._/+-`` in it is
    kept as ``?``."""
    try:
        words = shlex.split(command)
    except ValueError:  # an unclosed quote: the shell would refuse it too
        words = command.split()
    name = next((w for w in words if not _ASSIGNMENT.match(w)), "")
    return name if re.fullmatch(r"[A-Za-z0-9._/+-]+", name) else "?"
