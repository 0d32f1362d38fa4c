"""Role definitions (deploy/roles/*.toml): what each role needs on a host.

A role names its apt packages, pip packages, the files it renders (each
from templates/NAME.j2) and where some of them are linked on the host, and
the services it needs running, and system links it removes (``unlink``:
Debian's default site, which would answer for the product). ``base`` applies to every host. A file
needed by several roles is rendered once per host, from the host's whole
context, so one Supervisor file holds a host's API workers and runner.
"""

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources.abc import Traversable

from apiphant.deploy import kit
from apiphant.deploy.config import KNOWN_ROLES
from apiphant.deploy.layout import Layout

BASE = "base"
SERVICES = ("supervisor", "nginx")
APT = re.compile(r"[a-z0-9][a-z0-9+.-]+")
PIP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-\[\],<>=!~ ]*")
FILE = re.compile(r"[a-z][a-z0-9_.-]*")
LINK = re.compile(r"[/{][A-Za-z0-9_./{}-]+")  # an absolute path, or a layout name: {site}


class RoleError(Exception):
    """A broken role definition in the kit; one line."""


@dataclass(frozen=True)
class Role:
    name: str
    about: str
    apt: tuple[str, ...]
    pip: tuple[str, ...]
    services: tuple[str, ...]
    templates: tuple[str, ...]
    links: tuple[tuple[str, str], ...]
    executable: tuple[str, ...]
    unlink: tuple[str, ...] = ()


def _names(path: Traversable, data: dict, key: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(v, str) and pattern.fullmatch(v) for v in value
    ):
        raise RoleError(f"{path}: {key}: expected a list of names, got {value!r}")
    return tuple(value)


def load_role(path: Traversable, templates: Traversable) -> Role:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise RoleError(f"{path}: {error}") from None
    known = {"about", "apt", "pip", "services", "templates", "links", "executable", "unlink"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RoleError(f"{path}: {unknown[0]}: unknown key (expected one of: {sorted(known)})")
    files = _names(path, data, "templates", FILE)
    for name in files:
        if not (templates / f"{name}.j2").is_file():
            raise RoleError(f"{path}: templates: no template {templates / (name + '.j2')}")
    services = _names(path, data, "services", re.compile("|".join(SERVICES)))
    links = data.get("links", {})
    if not isinstance(links, dict) or not all(
        name in files and isinstance(target, str) and LINK.fullmatch(target)
        for name, target in links.items()
    ):
        raise RoleError(f"{path}: links: expected rendered file = absolute path, got {links!r}")
    executable = _names(path, data, "executable", FILE)
    if not set(executable) <= set(files):
        raise RoleError(f"{path}: executable: expected names from templates")
    return Role(
        name=path.name.removesuffix(".toml"),
        about=str(data.get("about", "")),
        apt=_names(path, data, "apt", APT),
        pip=_names(path, data, "pip", PIP),
        services=services,
        templates=files,
        links=tuple(links.items()),
        executable=executable,
        unlink=_names(path, data, "unlink", LINK),
    )


def load_roles() -> dict[str, Role]:
    """Every role of the kit; base plus one per role a host can have."""
    found = sorted(
        (p for p in kit.roles().iterdir() if p.name.endswith(".toml")), key=lambda p: p.name
    )
    roles = {p.name.removesuffix(".toml"): load_role(p, kit.templates()) for p in found}
    for name in (BASE, *KNOWN_ROLES):
        if name not in roles:
            raise RoleError(f"{kit.PACKAGE}: roles: no {name}.toml")
    return roles


#: Roles the kit adds by itself, after the known ones (Config.role_names): ``acme`` on Nginx
#: hosts when tls = "acme", ``python`` on hosts that run the product's programs.
KIT_ROLES = ("acme", "python")


def for_host(names: Iterable[str], roles: dict[str, Role]) -> list[Role]:
    """The roles a host runs (Config.role_names), base first, in a fixed order."""
    wanted = set(names)
    return [roles[BASE]] + [roles[n] for n in (*KNOWN_ROLES, *KIT_ROLES) if n in wanted]


def _union(values: list[tuple[str, ...]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for group in values:
        seen.update(dict.fromkeys(group))
    return tuple(seen)


def apt_packages(host_roles: list[Role]) -> tuple[str, ...]:
    return _union([r.apt for r in host_roles])


def pip_packages(host_roles: list[Role]) -> tuple[str, ...]:
    return _union([r.pip for r in host_roles])


def services(host_roles: list[Role]) -> tuple[str, ...]:
    return _union([r.services for r in host_roles])


def templates(host_roles: list[Role]) -> tuple[str, ...]:
    return _union([r.templates for r in host_roles])


def executables(host_roles: list[Role]) -> tuple[str, ...]:
    return _union([r.executable for r in host_roles])


def unlinks(host_roles: list[Role], layout: Layout) -> tuple[str, ...]:
    """System links the roles remove, such as Debian's default site."""
    names = layout.system_paths()
    return tuple(t.format_map(names) for t in _union([r.unlink for r in host_roles]))


def links(host_roles: list[Role], layout: Layout) -> dict[str, str]:
    """Rendered file name -> where it is linked on the host (``{site}``: the layout's)."""
    found: dict[str, str] = {}
    for role in host_roles:
        for name, target in role.links:
            found[name] = target.format_map(layout.system_paths())
    return found
