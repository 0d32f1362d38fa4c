"""Every path the kit writes on a host, and every name derived from the product: one home.

A deployment is a product in an environment: production is the product's
own name (``/opt/shop``), another environment is keyed by it as well
(``/opt/shop-staging``), so two environments may share a host. Commands,
plans and templates take these names from here and never spell a path.
"""

import re
from dataclasses import dataclass

from apiphant.app import RELEASE_ENV

ROOT = "/opt"
LOG_ROOT = "/var/log"
PRODUCTION = "production"

#: A release id: the UTC time of the deploy, sortable (``20250102030405``).
RELEASE_ID = re.compile(r"[0-9]{14}")
RELEASE_ID_SHELL = "^[0-9]{14}$"  # the same, for grep -E on a host

# The system's own files, as Debian lays them out.
SUPERVISOR_CONF = "/etc/supervisor/supervisord.conf"
SUPERVISOR_INCLUDE = "/etc/supervisor/conf.d"
SUPERVISOR_PIDFILE = "/var/run/supervisord.pid"
NGINX_CONF = "/etc/nginx/nginx.conf"
NGINX_SITES = "/etc/nginx/sites-enabled"
NGINX_PIDFILE = "/run/nginx.pid"
LOGROTATE_DIR = "/etc/logrotate.d"
#: A system file the deploy replaces with a link is kept beside it under this suffix, and
#: put back when the link goes.
BEFORE = ".before-apiphant"

__all__ = ["RELEASE_ENV", "Layout", "Paths"]


@dataclass(frozen=True)
class Layout:
    """Where one deployment (product + environment) lives on its hosts, and its names."""

    product: str
    env: str = PRODUCTION

    @property
    def name(self) -> str:
        """The deployment's name: folders, programs, sites (``shop``, ``shop-staging``)."""
        return self.product if self.env == PRODUCTION else f"{self.product}-{self.env}"

    @property
    def ident(self) -> str:
        """The name as an identifier, for Nginx's upstreams, zones and log formats."""
        return self.name.replace("-", "_")

    @property
    def user(self) -> str:
        """The system user that runs the product's programs: the product's name."""
        return self.product

    @property
    def root(self) -> str:
        return f"{ROOT}/{self.name}"

    @property
    def logs(self) -> str:
        return f"{LOG_ROOT}/{self.name}"

    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def shared(self) -> str:
        return f"{self.root}/shared"

    @property
    def current_config(self) -> str:
        """The live release's rendered files, as Supervisor and /etc's links name them."""
        return f"{self.current}/config"

    @property
    def secrets(self) -> str:
        return f"{self.shared}/secrets.env"

    @property
    def venvs(self) -> str:
        """Virtualenvs by what they hold: releases that install the same packages share one."""
        return f"{self.root}/venvs"

    def venv(self, key: str) -> str:
        return f"{self.venvs}/{key}"

    @property
    def maintenance(self) -> str:
        """While this file exists, Nginx answers every public request with a JSON 503."""
        return f"{self.shared}/maintenance"

    @property
    def nginx_loaded(self) -> str:
        """A copy of the Nginx config last loaded: a reload only when it changed."""
        return f"{self.shared}/nginx-loaded.conf"

    @property
    def lock(self) -> str:
        return f"{self.root}/deploy.lock"

    @property
    def holder(self) -> str:
        return f"{self.lock}/holder"

    @property
    def history(self) -> str:
        """The audit log: one line per deploy, rollback, maintenance and run, appended."""
        return f"{self.root}/history.log"

    def release(self, release_id: str) -> "Paths":
        return Paths(self, release_id)

    # Programs and the files linked into /etc

    def worker(self, port: int) -> str:
        return f"{self.name}-api-{port}"

    @property
    def background(self) -> str:
        return f"{self.name}-background"

    @property
    def programs_pattern(self) -> str:
        """An extended regex that matches exactly this deployment's program names."""
        return f"^{re.escape(self.name)}-(api-[0-9]+|background)$"

    def log(self, program: str) -> str:
        return f"{self.logs}/{program}.log"

    @property
    def site(self) -> str:
        return f"{NGINX_SITES}/{self.name}.conf"

    @property
    def supervisor_include(self) -> str:
        return f"{SUPERVISOR_INCLUDE}/{self.name}.conf"

    @property
    def logrotate(self) -> str:
        return f"{LOGROTATE_DIR}/{self.name}"

    def system_paths(self) -> dict[str, str]:
        """The names a role's links may use: ``"{site}"``, ``"{nginx_conf}"``..."""
        return {
            "site": self.site,
            "supervisor_include": self.supervisor_include,
            "logrotate": self.logrotate,
            "nginx_conf": NGINX_CONF,
            "nginx_sites": NGINX_SITES,
        }


@dataclass(frozen=True)
class Paths:
    """One release of a deployment on a host."""

    layout: Layout
    release_id: str

    @property
    def dir(self) -> str:
        return f"{self.layout.releases}/{self.release_id}"

    @property
    def config(self) -> str:
        """The rendered files of the release."""
        return f"{self.dir}/config"

    @property
    def check(self) -> str:
        """Scratch space where configs are validated before anything live sees them."""
        return f"{self.config}/check"

    @property
    def venv(self) -> str:
        """A link to the shared virtualenv of the release's packages (``Layout.venv``)."""
        return f"{self.dir}/venv"

    @property
    def wheels(self) -> str:
        return f"{self.dir}/wheels"

    @property
    def good(self) -> str:
        """Written once the release passed its smoke test: only good ones are kept."""
        return f"{self.dir}/.good"

    @property
    def tarball(self) -> str:
        return f"{self.dir}/release.tar.gz"

    def product(self, product: str) -> str:
        return f"{self.dir}/{product}"
