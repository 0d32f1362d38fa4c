"""The front as deploy.toml describes it: Nginx (``[nginx]``), and HTTPS at Nginx (the
top-level ``tls`` keys and ``[nginx] tls_listen``)."""

from dataclasses import dataclass

from apiphant.deploy.config.keys import key
from apiphant.settings.schema import env_name
from apiphant.settings.values import format_address

# HTTPS: where Nginx's certificate comes from (apiphant.deploy.tls)
TLS_MODES = ("off", "acme", "files")
LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
#: Untrusted certificates, generous rate limits: for trying a setup out.
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
DEFAULT_TLS_LISTEN = "443"
#: tls = "files": the lines of the secrets file that name the certificate chain and its key
#: on this machine. The deploy reads them; they are not passed to the programs.
TLS_CERT_KEY = env_name("tls_cert")
TLS_KEY_KEY = env_name("tls_key")


def listen_address(host: str, port: int) -> str:
    """Nginx's ``listen``: the port alone, or HOST:PORT (an IPv6 host in brackets)."""
    return format_address(host, port) if host else str(port)


def rlimit_nofile(worker_connections: int) -> int:
    """Open files per Nginx worker: every connection, plus room for logs and temp files."""
    return worker_connections + 1024


@dataclass(frozen=True)
class Nginx:
    """The front: where it listens and how long it waits."""

    listen_host: str = key(  # "" = every address
        "",
        toml="listen",
        help='the public listener: `"PORT"`, `"ADDRESS:PORT"` or `"[::]:PORT"`',
        default_doc='`"80"`',
    )
    listen_port: int = key(80, toml="listen")
    connect_timeout: float = key(2.0, help="seconds Nginx waits to connect to a worker")
    read_timeout: float = key(
        60.0, help="seconds Nginx waits between two reads of a worker's answer"
    )
    send_timeout: float = key(60.0, help="seconds Nginx waits to write to a client or a worker")
    client_timeout: float = key(15.0, help="seconds Nginx waits between two reads of a request")
    keepalive_timeout: float = key(65.0, help="seconds Nginx keeps an idle client connection")
    upstream_keepalive: int = key(32, help="idle connections to the workers kept per Nginx worker")
    #: Nginx closes an idle upstream connection after this; a draining worker waits
    #: longer (``drain_idle_grace``) before closing one, so Nginx never writes to a closed one.
    #: Short, because a worker the rolling restart stops waits that long for the idle ones
    #: that traffic leaves behind; a connection made again costs a round trip on a LAN.
    upstream_keepalive_timeout: float = key(
        1.0, help="seconds they are kept; the workers' `--drain-idle-grace` is one more"
    )
    #: Whole seconds, as Nginx counts them: a worker that refused a connection in second S
    #: (max_fails=1) gets no requests while now - S <= fail_timeout, so for the rest of that
    #: second with 0, up to two seconds with 1 (``back_within``). Under load the rolling
    #: restart waits that out after each batch. A host that died (no refusal, a connect
    #: timeout) costs one request ``connect_timeout`` of delay about once per back_within.
    fail_timeout: int = key(
        0, help="whole seconds Nginx sends no requests to a worker that refused one"
    )
    #: Connections per Nginx worker process, clients and upstreams together. Debian's 768
    #: let about 1,500 slow clients shut everyone out.
    worker_connections: int = key(
        16384, help="connections per Nginx worker process (clients and upstreams)"
    )
    limit_conn: int = key(
        100, help="requests in progress per client address (0: no limit); more get a JSON 429"
    )
    limit_req: str = key(
        "",
        help=(
            'requests per second (`"20r/s"`) or minute (`"600r/m"`) per client address (`""`: no '
            "limit); more get a JSON 429"
        ),
    )
    limit_req_burst: int = key(20, help="requests over `limit_req` that wait their turn instead")
    #: The front's way in for the host itself (the deploy's smoke test), on loopback only:
    #: the public server answers only its server_names.
    local_port: int = key(8000, help="the host's own way in, on 127.0.0.1 only: the smoke test's")

    @property
    def drain_idle_grace(self) -> float:
        return self.upstream_keepalive_timeout + 1

    @property
    def back_within(self) -> int:
        """Seconds after its last refusal by which Nginx sends a worker requests again."""
        return self.fail_timeout + 1

    @property
    def worker_rlimit_nofile(self) -> int:
        return rlimit_nofile(self.worker_connections)

    @property
    def listen(self) -> str:
        return listen_address(self.listen_host, self.listen_port)

    @property
    def local_url(self) -> str:
        """The URL of this front as seen from its own host: what the smoke test calls."""
        return f"http://127.0.0.1:{self.local_port}"

    #: The Host of the loopback server that tells the deploy which worker Nginx sends a
    #: pool's requests to (the rolling restart's rotation check); ``.invalid`` never resolves.
    rotation_host = "rotation.apiphant.invalid"
    #: The header it names the answering worker in (Nginx's $upstream_addr).
    rotation_header = "X-Apiphant-Upstream"

    def rotation_url(self, pool: str) -> str:
        return f"{self.local_url}/{pool}"


@dataclass(frozen=True)
class Tls:
    """HTTPS at Nginx: off, a certificate from an ACME CA (certbot), or one from files."""

    mode: str = key(
        "off",
        toml="tls",
        help='HTTPS: `"acme"` (certbot), `"files"` (from the secrets file) or `"off"`',
    )
    domains: tuple[str, ...] = key(
        (),
        help="the certificate's host names (no IP, no wildcard); Nginx serves them too",
        default_doc="",
    )
    acme_email: str = key(
        "", help="the ACME account's email, for the CA's expiry notices", default_doc=""
    )
    acme_server: str = key(
        LETSENCRYPT, help="the CA's ACME directory URL", default_doc="Let's Encrypt"
    )
    #: A CA bundle on the hosts that certbot trusts for the ACME server's own HTTPS (a private
    #: ACME CA such as step-ca); "" for the system's.
    acme_ca_bundle: str = key(
        "",
        help="a CA file on the hosts for a private ACME server's HTTPS",
        default_doc="the system's",
    )
    hsts: bool = key(False, help="`Strict-Transport-Security` on every HTTPS answer")
    listen_host: str = key(
        "",
        toml="tls_listen",
        section="nginx",
        help="the HTTPS listener, like `listen`; that one then redirects with 308",
        default_doc='`"443"`',
    )
    listen_port: int = key(int(DEFAULT_TLS_LISTEN), toml="tls_listen", section="nginx")

    @property
    def on(self) -> bool:
        return self.mode != "off"

    @property
    def acme(self) -> bool:
        return self.mode == "acme"

    @property
    def listen(self) -> str:
        return listen_address(self.listen_host, self.listen_port)

    @property
    def port_suffix(self) -> str:
        """What an https:// URL needs after the host: nothing on 443."""
        return "" if self.listen_port == 443 else f":{self.listen_port}"

    @property
    def local_address(self) -> str:
        """Where the host itself reaches its HTTPS listener (the smoke test)."""
        return self.listen_host if self.listen_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
