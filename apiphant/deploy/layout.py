"""Every path the kit writes on a host, and every name derived from the product: one home.

A deployment is a product in an environment: production is the product's
own name (``/opt/shop``), another environment is keyed by it as well
(``/opt/shop-staging``), so two environments may share a host. Commands,
plans and templates take these names from here and never spell a path.
"""

import re
from dataclasses import dataclass

from apiphant.app import HEALTH_PATH, RELEASE_ENV

ROOT = "/opt"
#: In a shared virtualenv once it is whole (built, or unpacked from a copy): only those count.
VENV_DONE = ".complete"
#: A built virtualenv packed for the other hosts of its platform: zstd, not gzip, for a
#: third of the time to pack, a fifth of the time to unpack and a fifth fewer bytes.
VENV_ARCHIVE = "venv.tar.zst"
LOG_ROOT = "/var/log"
PRODUCTION = "production"
#: Linux's longest user name: useradd refuses a longer one.
MAX_USER = 32
#: A release's secrets, in its config folder: a rollback goes back to the secrets it ran with.
SECRETS = "secrets.env"
#: A release's folder of rendered files (``Paths.config``), and some of them by name.
CONFIG_DIR = "config"
SUPERVISOR_CONF_FILE = "supervisor.conf"
NGINX_SITE_FILE = "nginx.conf"
#: The site without its 443 server: what Nginx serves until the first certificate is there.
NGINX_HTTP_FILE = "nginx-http.conf"
NGINX_MAIN_FILE = "nginx-main.conf"
LOGROTATE_FILE = "logrotate"
#: The script every program and command of a release starts through: its environment and
#: secrets, then its virtualenv's command.
RUN_FILE = "run"
#: In a release's folder once it passed its smoke test: only good releases are kept.
GOOD = ".good"
#: A release's link to its shared virtualenv (``Layout.venv``).
VENV_LINK = "venv"

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
#: Nginx's workers run as this user (Debian's); they reopen their logs by name after a rotation.
NGINX_USER = "www-data"
LOGROTATE_DIR = "/etc/logrotate.d"
#: Debian's logrotate; run by the deployment's own program with its own state file (below), so
#: Debian's own timer or cron job (which reads /etc/logrotate.d) never rotates ours as well.
LOGROTATE = "/usr/sbin/logrotate"
#: Debian's certbot; run with the deployment's own config, work and logs folders (below), so
#: Debian's own timer or cron job (which reads /etc/letsencrypt) never renews ours twice.
CERTBOT = "/usr/bin/certbot"
#: tls = "files": the release's copy of the certificate, in this folder of the release.
TLS_DIR = "tls"
TLS_FULLCHAIN = "fullchain.pem"
#: Where an ACME server looks for an HTTP-01 answer, below the webroot.
ACME_CHALLENGE = "/.well-known/acme-challenge/"
#: The database's state (the postgres role): outside /opt, where releases come and go, in the
#: FHS's place for a program's variable state; one folder per deployment, so staging's
#: cluster is not production's. Not Debian's default cluster (/var/lib/postgresql/VERSION/main):
#: postgresql-common manages that one by version and starts it with systemd.
DB_ROOT = "/var/lib/apiphant"
#: The system user PostgreSQL's binaries run as (Debian's): they refuse root.
POSTGRES_USER = "postgres"
#: Debian's PostgreSQL binaries, one folder per major version (``PG_VERSION`` in a cluster).
POSTGRES_BIN = "/usr/lib/postgresql"
#: A system file the deploy replaces with a link is kept beside it under this suffix, and
#: put back when the link goes.
BEFORE = ".before-apiphant"

__all__ = ["HEALTH_PATH", "RELEASE_ENV", "Layout", "Paths"]


def run_script(release_dir: str) -> str:
    """The run script of the release in ``release_dir`` (a release's folder, or ``current``)."""
    return f"{release_dir}/{CONFIG_DIR}/{RUN_FILE}"


def site_of(deployment: str) -> str:
    """A deployment's Nginx site, by its name (``Layout.name``): also how the deploy tells
    another deployment on a host is still there."""
    return f"{NGINX_SITES}/{deployment}.conf"


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
        """The system user (and its group) that runs the deployment's programs: the
        deployment's name (production's is the product's), so staging's code cannot read
        production's secrets (root's, readable by this group only) on a shared host."""
        return self.name

    @property
    def account_comment(self) -> str:
        """The comment (GECOS) the deploy gives the user it creates: its mark. An account
        of the same name without it is someone else's, and the deploy will not take it."""
        return f"apiphant deployment {self.name}"

    root = property(lambda self: f"{ROOT}/{self.name}")
    logs = property(lambda self: f"{LOG_ROOT}/{self.name}")
    releases = property(lambda self: f"{self.root}/releases")
    current = property(lambda self: f"{self.root}/current")
    shared = property(lambda self: f"{self.root}/shared")

    @property
    def current_config(self) -> str:
        """The live release's rendered files, as Supervisor and /etc's links name them."""
        return f"{self.current}/{CONFIG_DIR}"

    def current_file(self, name: str) -> str:
        """The live release's rendered file ``name``."""
        return f"{self.current_config}/{name}"

    @property
    def shared_secrets(self) -> str:
        """Where deploys by earlier versions of the kit wrote the secrets, shared by every
        release; the run scripts of their releases still read it. Nothing writes it now:
        the deploy's cleanup removes it once no kept release reads it (``Paths.secrets``
        replaced it)."""
        return f"{self.shared}/{SECRETS}"

    @property
    def supervise(self) -> str:
        """The kit's Supervisor client (apiphant/deploy/supervise.py), uploaded by each
        activation: in the deployment's own folder, which every deploy has made."""
        return f"{self.root}/supervise.py"

    @property
    def agent(self) -> str:
        """The kit's host agent (apiphant/deploy/agent.py), uploaded by each activation
        beside ``supervise``."""
        return f"{self.root}/agent.py"

    @property
    def venvs(self) -> str:
        """Virtualenvs by what they hold: releases that install the same packages share one."""
        return f"{self.root}/venvs"

    def venv(self, key: str) -> str:
        return f"{self.venvs}/{key}"

    def venv_done(self, key: str) -> str:
        return f"{self.venv(key)}/{VENV_DONE}"

    @property
    def current_tls_fullchain(self) -> str:
        """tls = "files": the certificate the live release serves."""
        return f"{self.current}/{TLS_DIR}/{TLS_FULLCHAIN}"

    @property
    def maintenance(self) -> str:
        """While this file exists, Nginx answers every public request with a JSON 503."""
        return f"{self.shared}/maintenance"

    @property
    def logrotate_state(self) -> str:
        """logrotate's state (when each log was last rotated): the deployment's own, so no
        other logrotate run (the system's, another environment's) reads or locks it."""
        return f"{self.shared}/logrotate.state"

    @property
    def nginx_loaded(self) -> str:
        """A copy of the Nginx config last loaded: a reload only when it changed."""
        return f"{self.shared}/nginx-loaded.conf"

    # TLS (apiphant.deploy.tls): certbot's folders and the webroot of the ACME challenge

    @property
    def tls(self) -> str:
        """root's only (0700): certbot's accounts, keys and certificates of this deployment."""
        return f"{self.shared}/tls"

    @property
    def letsencrypt(self) -> str:
        """certbot's --config-dir: accounts/, archive/, live/, renewal/."""
        return f"{self.tls}/letsencrypt"

    @property
    def certbot_work(self) -> str:
        return f"{self.tls}/work"

    @property
    def certbot_logs(self) -> str:
        """certbot's --logs-dir: letsencrypt.log, the path a failed issuance names."""
        return f"{self.logs}/certbot"

    @property
    def certbot_log(self) -> str:
        return f"{self.certbot_logs}/letsencrypt.log"

    @property
    def acme_webroot(self) -> str:
        """Nginx serves the challenge from here on port 80: world-readable, no secrets."""
        return f"{self.shared}/acme"

    @property
    def cert_name(self) -> str:
        """certbot's --cert-name: the deployment's name, one lineage for all its domains."""
        return self.name

    @property
    def acme_live(self) -> str:
        return f"{self.letsencrypt}/live/{self.cert_name}"

    @property
    def acme_fullchain(self) -> str:
        return f"{self.acme_live}/fullchain.pem"

    @property
    def acme_key(self) -> str:
        return f"{self.acme_live}/privkey.pem"

    @property
    def acme_chain(self) -> str:
        """The issuing CA's certificates: OCSP stapling's and the smoke test's trust."""
        return f"{self.acme_live}/chain.pem"

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
    def renewer(self) -> str:
        """The Supervisor program that runs ``certbot renew`` twice a day (tls = "acme")."""
        return f"{self.name}-certbot"

    @property
    def rotator(self) -> str:
        """The Supervisor program that runs logrotate on the deployment's logs, every host."""
        return f"{self.name}-logrotate"

    @property
    def database_program(self) -> str:
        """The Supervisor program that runs the deployment's PostgreSQL (the postgres role)."""
        return f"{self.name}-postgres"

    @property
    def backup_program(self) -> str:
        """The Supervisor program that dumps the database on a schedule (the postgres role);
        also the account that receives the copies on another host (``host.backups``)."""
        return f"{self.name}-backup"

    @property
    def programs_pattern(self) -> str:
        """An extended regex that matches exactly this deployment's program names."""
        return f"^{re.escape(self.name)}-(api-[0-9]+|background|certbot|logrotate)$"

    def log(self, program: str) -> str:
        return f"{self.logs}/{program}.log"

    @property
    def site(self) -> str:
        return site_of(self.name)

    @property
    def supervisor_include(self) -> str:
        return f"{SUPERVISOR_INCLUDE}/{self.name}.conf"

    @property
    def logrotate(self) -> str:
        """Where the kit once linked the logrotate config; the deploy removes the link, as the
        deployment's own program rotates its logs (``rotator``)."""
        return f"{LOGROTATE_DIR}/{self.name}"

    # The database (the postgres role): state that no deploy, rollback or cleanup removes.
    # db_root is root's (0755); data, the cluster, the postgres user's (0700); socket, its
    # Unix socket's folder; password, the role's, root's (0600): the deploy reads it into
    # memory and writes it only into releases' secrets. The configs and the Supervisor
    # program are the database's own, not a release's: it runs before the first switch (the
    # release phase migrates it) and no switch restarts it.

    @property
    def db_root(self) -> str:
        return f"{DB_ROOT}/{self.name}"

    def _db(self, name: str) -> str:
        return f"{self.db_root}/{name}"

    db_data = property(lambda self: self._db("data"))
    db_socket = property(lambda self: self._db("socket"))
    db_password = property(lambda self: self._db("password"))
    db_conf = property(lambda self: self._db("postgresql.conf"))
    db_hba = property(lambda self: self._db("pg_hba.conf"))
    db_program_conf = property(lambda self: self._db("supervisor.conf"))
    # Backups (host.backups says whose each is): the dumps, the script, its key, the copy's
    # known host key; on the host that holds the copies, its receive script and account's home.
    db_backups = property(lambda self: self._db("backups"))
    db_backup_script = property(lambda self: self._db("backup"))
    db_backup_key = property(lambda self: self._db("backup_key"))
    db_known_hosts = property(lambda self: self._db("known_hosts"))
    db_receive_script = property(lambda self: self._db("receive"))
    db_receiver_home = property(lambda self: self._db("receiver"))
    db_receiver_keys = property(lambda self: self._db("receiver/.ssh/authorized_keys"))
    db_outgoing = property(lambda self: self._db("outgoing"))  # a copy on its way to a restore
    db_backup_program_conf = property(lambda self: self._db("backup.conf"))
    backup_include = property(lambda self: f"{SUPERVISOR_INCLUDE}/{self.backup_program}.conf")

    @property
    def db_supervisor_include(self) -> str:
        return f"{SUPERVISOR_INCLUDE}/{self.database_program}.conf"

    @property
    def db_name(self) -> str:
        """The product's database and its login role: the deployment's name."""
        return self.name

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
        return f"{self.dir}/{CONFIG_DIR}"

    def file(self, name: str) -> str:
        """The release's rendered file ``name``."""
        return f"{self.config}/{name}"

    @property
    def secrets(self) -> str:
        """The release's secrets (NAME=value lines), root's, readable by the user's group
        only; its run script loads them. They stay and go with the release."""
        return self.file(SECRETS)

    @property
    def check(self) -> str:
        """Scratch space where configs are validated before anything live sees them."""
        return f"{self.config}/check"

    @property
    def venv(self) -> str:
        """A link to the shared virtualenv of the release's packages (``Layout.venv``)."""
        return f"{self.dir}/{VENV_LINK}"

    @property
    def wheels(self) -> str:
        return f"{self.dir}/wheels"

    @property
    def venv_archive(self) -> str:
        """The virtualenv as one archive, while it travels from the host that built it to
        the hosts of its platform (``host.venv.pack_venv``); gone once it has."""
        return f"{self.dir}/{VENV_ARCHIVE}"

    @property
    def good(self) -> str:
        """Written once the release passed its smoke test: only good ones are kept."""
        return f"{self.dir}/{GOOD}"

    @property
    def requirements(self) -> str:
        """What the release's virtualenv installs; only releases of hosts that run programs."""
        return self.file("requirements.txt")

    # tls = "files": the certificate travels with the release, so a rollback serves the
    # certificate it was deployed with, and `nginx -t` checks the new one before the switch.

    @property
    def tls(self) -> str:
        """root's only (0700)."""
        return f"{self.dir}/{TLS_DIR}"

    @property
    def tls_fullchain(self) -> str:
        return f"{self.tls}/{TLS_FULLCHAIN}"

    @property
    def tls_key(self) -> str:
        """Mode 0600, root's: Nginx's master process reads it as root before it drops to
        www-data; no worker, product program or other user can."""
        return f"{self.tls}/privkey.pem"

    @property
    def tls_issuer(self) -> str:
        """The chain without its first certificate (the issuing CA), or the certificate
        itself when it came alone: the smoke test's trust and Nginx's trusted certificate."""
        return f"{self.tls}/issuer.pem"

    def product(self, product: str) -> str:
        return f"{self.dir}/{product}"
