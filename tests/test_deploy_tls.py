"""HTTPS end to end: `fab deploy` with tls = "acme" and tls = "files", over SSH to this machine.

ACME is real: Debian's pebble (an ACME server) and pebble-challtestsrv (its DNS, which
resolves the test's domains to 127.0.0.1) run on loopback, started here; pebble validates
HTTP-01 by fetching the token from the deployed Nginx's port (no PEBBLE_VA_ALWAYS_VALID),
and Debian's certbot, run by the deploy on the "host", obtains a real certificate. Then:
HTTPS verified against pebble's root, a POST over HTTP answered 308, `fab status` showing
the expiry, a forced renewal under load reloading Nginx with a new serial and no failed
request; an issuance that fails leaves HTTP serving and says why in one line. tls = "files"
deploys a certificate of a CA made here with openssl, its key 0600 and never printed.
"""

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.deploy_helpers import SERVER_NAME, HostCleanup, Sshd, deploy_toml, fab, run
from tests.support.load import Load
from tests.support.ports import free_port, port_open, service_ports
from tests.support.processes import stop

PRODUCT = "myproduct"
ROOT = Path(f"/opt/{PRODUCT}")
NEEDS = ("/usr/sbin/sshd", "/usr/sbin/nginx", "/usr/bin/supervisord", "/usr/bin/certbot",
         "/usr/bin/pebble", "/usr/bin/pebble-challtestsrv", "/usr/bin/openssl")  # fmt: skip
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="deploys to this machine as root"),
    pytest.mark.skipif(not all(Path(p).exists() for p in NEEDS),
                       reason="needs sshd, nginx, supervisor, certbot, pebble, openssl"),
]  # fmt: skip
#: A domain pebble cannot validate: challtestsrv sends it to 127.0.0.2, where nothing listens.
UNREACHABLE = "unreachable.example.com"
FIGURES: dict[str, float] = {}


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A throwaway CA: its certificate and key."""
    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:true",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)  # fmt: skip
    return folder / "ca.pem", folder / "ca.key"


def make_leaf(
    folder: Path, ca: tuple[Path, Path], san: str, name: str, days: int = 2
) -> tuple[Path, Path]:
    """A certificate for ``san`` signed by ``ca``: its file and its key's."""
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=folder)  # fmt: skip
    ext = folder / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:false\n"
                   "extendedKeyUsage=serverAuth\n")  # fmt: skip
    # days=-1: an expired one (notAfter yesterday)
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-CAcreateserial", "-out", str(cert), "-days", str(days),
            "-extfile", str(ext), cwd=folder)  # fmt: skip
    return cert, key


def wait_port(port: int, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {port}: {log.read_text()[-2000:]}")
        time.sleep(0.05)


class Pebble:
    """pebble and pebble-challtestsrv on loopback; pebble validates HTTP-01 on ``http_port``."""

    def __init__(self, folder: Path, http_port: int) -> None:
        self.folder = folder
        self.http_port = http_port
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Pebble":
        f = self.folder
        # pebble's own HTTPS listener needs a certificate; the package ships none.
        self.listener_ca, ca_key = make_ca(f / "listener", "pebble listener CA")
        cert, key = make_leaf(f / "listener", (self.listener_ca, ca_key), "IP:127.0.0.1",
                              "listener")  # fmt: skip
        self.dns, self.challtest = free_port(), free_port()
        self.port, self.management = free_port(), free_port()
        (f / "pebble.json").write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management}",
            "certificate": str(cert), "privateKey": str(key),
            "httpPort": self.http_port, "tlsPort": free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }}))  # fmt: skip
        try:
            self._start(
                ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                 "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-dns01", f"127.0.0.1:{self.dns}", "-management", f"127.0.0.1:{self.challtest}"],
                self.challtest, "challtestsrv", {},
            )  # fmt: skip
            # Every order validated (no reused authorization), no nonce rejected at random
            # (certbot retries once only), no artificial delays.
            env = {"PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_VA_NOSLEEP": "1",
                   "PEBBLE_AUTHZREUSE": "0"}  # fmt: skip
            argv = ["pebble", "-config", str(f / "pebble.json"),
                    "-dnsserver", f"127.0.0.1:{self.dns}"]  # fmt: skip
            self._start(argv, self.port, "pebble", env)
            self.add_a(UNREACHABLE, "127.0.0.2")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self, argv: list[str], port: int, name: str, env: dict[str, str]) -> None:
        assert "PEBBLE_VA_ALWAYS_VALID" not in os.environ
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            self.procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                               env={**os.environ, **env}))  # fmt: skip
        wait_port(port, self.procs[-1], name, log)

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            stop(proc)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def add_a(self, host: str, address: str) -> None:
        body = json.dumps({"host": host, "addresses": [address]}).encode()
        url = f"http://127.0.0.1:{self.challtest}/add-a"
        with urllib.request.urlopen(urllib.request.Request(url, body), timeout=5) as answer:
            assert answer.status == 200

    def root(self) -> str:
        """pebble's issuing root of this run (a new one each start), from its management API."""
        context = ssl.create_default_context(cafile=str(self.listener_ca))
        url = f"https://127.0.0.1:{self.management}/roots/0"
        with urllib.request.urlopen(url, timeout=5, context=context) as answer:
            return answer.read().decode()


class Https(http.client.HTTPSConnection):
    """HTTPS to the name SERVER_NAME at 127.0.0.1:port: SNI and verification by the name."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        super().__init__(SERVER_NAME, port, context=context, timeout=10)

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def served(port: int, context: ssl.SSLContext) -> tuple[str, str, str]:
    """The serial of the certificate Nginx serves, the TLS version and the ALPN protocol."""
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        with context.wrap_socket(sock, server_hostname=SERVER_NAME) as tls:
            der = tls.getpeercert(binary_form=True)
            version, alpn = tls.version() or "", tls.selected_alpn_protocol() or ""
    done = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"],
                          input=der, capture_output=True, timeout=30)  # fmt: skip
    return done.stdout.decode().strip().removeprefix("serial="), version, alpn


#: What the TLS load sends: a write, which Nginx never sends twice.
UPDATE = (
    "update",
    "/api/v0/users/settings/update",
    {"user_id": 1, "settings": {"theme": "dark"}},
    lambda answer: answer == {"user_id": 1, "settings": {"theme": "dark", "language": "en"}},
)


def tls_load(port: int, context: ssl.SSLContext, threads: int = 3) -> Load:
    """Threads POSTing over HTTPS, a new TLS connection each (as many clients do), counting
    every answer that is not the expected 200 and every connection or handshake error."""
    return Load(lambda: Https(port, context), lambda thread, n: UPDATE, threads=threads,
                keep_alive=False, limit=600, max_requests=5000)  # fmt: skip


class Host:
    """This machine as the deploy's host, and the deploy.toml variants the test writes."""

    def __init__(self, folder: Path, sshd: Sshd) -> None:
        self.folder, self.sshd = folder, sshd
        self.http_port, self.tls_port, self.local_port = free_port(), free_port(), free_port()
        self.first_port = service_ports(2)
        self.secrets = folder / "myproduct.secrets.env"
        self.secrets.write_text("MYPRODUCT_TOKEN=tls-test\n")
        self.secrets.chmod(0o600)

    def config(self, name: str, top: str = "", tls_listen: bool = True) -> Path:
        text = deploy_toml(self.sshd.target, f"127.0.0.1:{self.http_port}", self.first_port,
                           self.secrets, local_port=self.local_port)  # fmt: skip
        text = text.replace('product = "myproduct"', f'product = "myproduct"\n{top}', 1)
        if tls_listen:
            text = text.replace("[nginx]\n", f'[nginx]\ntls_listen = "127.0.0.1:{self.tls_port}"\n')
        path = self.folder / f"{name}.toml"
        path.write_text(text)
        return path

    def fab(self, config: Path, *args: str) -> subprocess.CompletedProcess:
        return fab(*args, f"--product={PRODUCT}", "--config", str(config), key=self.sshd.key)

    def http(self, method: str, path: str, body: bytes = b"{}") -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        conn.request(method, path, body, {"Host": SERVER_NAME})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):
    cleanup = HostCleanup(PRODUCT)
    clash = cleanup.clashes()
    if clash:
        pytest.skip(clash)
    folder = tmp_path_factory.mktemp("tls")
    folder.chmod(0o755)  # the webroot-free parts certbot and nginx read are root's anyway
    try:
        with Sshd(folder / "ssh") as sshd:
            yield Host(folder, sshd)
    finally:
        cleanup()


def acme_lines(pebble: Pebble, domains: list[str]) -> str:
    return (f'tls = "acme"\ndomains = {json.dumps(domains)}\nacme_email = "ops@example.com"\n'
            f'acme_server = "{pebble.directory}"\nacme_ca_bundle = "{pebble.listener_ca}"\n'
            "hsts = true\n")  # fmt: skip


def test_acme_issuance_redirect_renewal(host: Host) -> None:
    with Pebble(host.folder / "pebble", host.http_port) as pebble:
        # 1. HTTP only, as before.
        plain = host.fab(host.config("plain", tls_listen=False), "deploy", "web1")
        assert plain.returncode == 0, plain.stdout[-4000:]
        assert host.http("POST", "/api/v0/echo/read").status == 200

        # 2. An issuance that fails (pebble cannot reach one domain): the deploy fails with
        # certbot's reason in one line and its log, rolled back; HTTP serves as before.
        bad = host.config("bad", acme_lines(pebble, [SERVER_NAME, UNREACHABLE]))
        failed = host.fab(bad, "deploy", "web1")
        assert failed.returncode == 1, failed.stdout[-4000:]
        [line] = [x for x in failed.stdout.splitlines() if "FAILED: " in x]
        assert "certbot: " in line and UNREACHABLE in line, line
        assert f"(log: /var/log/{PRODUCT}/certbot/letsencrypt.log)" in line, line
        assert "ROLLED BACK" in line, line
        assert host.http("POST", "/api/v0/echo/read").status == 200
        assert not port_open("127.0.0.1", host.tls_port)

        # 3. The certificate, for real: certbot through Nginx, pebble fetching the token.
        good = host.config("acme", acme_lines(pebble, [SERVER_NAME]))
        started = time.monotonic()
        done = host.fab(good, "deploy", "web1")
        FIGURES["acme deploy seconds (certificate included)"] = round(time.monotonic() - started)
        assert done.returncode == 0, done.stdout[-4000:]
        assert "https: https://api.example.com:" in done.stdout  # the smoke test over HTTPS
        root = pebble.root()
        context = ssl.create_default_context(cadata=root)
        context.set_alpn_protocols(["h2", "http/1.1"])
        serial, version, alpn = served(host.tls_port, context)
        assert version in ("TLSv1.2", "TLSv1.3") and alpn == "h2"
        with pytest.raises(ssl.SSLCertVerificationError):  # pebble's root, not the system's
            served(host.tls_port, ssl.create_default_context())
        conn = Https(host.tls_port, ssl.create_default_context(cadata=root))
        conn.request("POST", "/api/v0/echo/read", b'{"hello": "tls"}')
        answer = conn.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["hello"] == "tls"
        assert answer.getheader("Strict-Transport-Security") == "max-age=63072000"
        conn.close()

        # 4. Port 80: a POST gets 308 to the same URL over HTTPS; the challenge path is not
        # redirected (a missing token is a 404 from the webroot).
        moved = host.http("POST", "/api/v0/echo/read?x=1")
        assert moved.status == 308
        assert moved.getheader("Location") == (
            f"https://{SERVER_NAME}:{host.tls_port}/api/v0/echo/read?x=1")
        assert host.http("GET", "/.well-known/acme-challenge/none").status == 404

        # 5. The key is root's only; `fab status` shows the expiry; the renewer runs.
        keys = list((ROOT / "shared/tls/letsencrypt/archive" / PRODUCT).glob("privkey*.pem"))
        assert keys and all(stat.S_IMODE(k.stat().st_mode) == 0o600 and k.stat().st_uid == 0
                            for k in keys)  # fmt: skip
        status = host.fab(good, "status", "web1")
        assert re.search(rf"{SERVER_NAME}: expires \w+ +\d+ [\d:]+ \d+ GMT", status.stdout)
        assert re.search(rf"{PRODUCT}-certbot +RUNNING", status.stdout), status.stdout

        # 6. A forced renewal under load: Nginx reloads with the new certificate, no request
        # fails. The renewal program's own script, with certbot's --force-renewal, once the
        # program's own first run (nothing due) is over: certbot runs one at a time.
        renewer_log = Path(f"/var/log/{PRODUCT}/{PRODUCT}-certbot.log")
        for _ in range(600):
            if renewer_log.exists() and "due for renewal" in renewer_log.read_text():
                break
            time.sleep(0.1)
        assert "due for renewal" in renewer_log.read_text()
        with tls_load(host.tls_port, ssl.create_default_context(cadata=root)) as load:
            time.sleep(1)
            started = time.monotonic()
            renewed = run(f"{ROOT}/current/config/renew --force-renewal", timeout=300)
            assert renewed.returncode == 0, renewed.stdout + renewed.stderr
            new = serial
            for _ in range(100):  # old Nginx workers may answer for a moment
                new = served(host.tls_port, context)[0]
                if new != serial:
                    break
                time.sleep(0.1)
            FIGURES["forced renewal seconds"] = round(time.monotonic() - started, 1)
            time.sleep(1)
        assert new != serial, "Nginx still serves the old certificate"
        assert load.failures == [], load.failures[:5]
        assert load.total > 0
        FIGURES["requests during renewal"] = load.total
        FIGURES["failed during renewal"] = len(load.failures)
        print("figures:", FIGURES)


def test_files_deployed_served_and_secret(host: Host) -> None:
    work = host.folder / "files"
    ca = make_ca(work / "ca", "apiphant test CA")
    cert, key = make_leaf(work, ca, f"DNS:{SERVER_NAME}", "site")
    fullchain = work / "fullchain.pem"
    fullchain.write_text(cert.read_text() + ca[0].read_text())
    secrets = host.folder / "files.secrets.env"
    secrets.write_text(f"MYPRODUCT_TOKEN=tls-test\nAPIPHANT_TLS_CERT={fullchain}\n"
                       f"APIPHANT_TLS_KEY={key}\n")  # fmt: skip
    config = host.config("files", 'tls = "files"\ndomains = ["api.example.com"]\n')
    config.write_text(config.read_text().replace(str(host.secrets), str(secrets)))
    material = key.read_text().splitlines()[1]  # a line of the key itself

    dry = host.fab(config, "deploy", "web1", "--dry-run")
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert "private key" in dry.stdout and material not in dry.stdout + dry.stderr
    done = host.fab(config, "deploy", "web1")
    assert done.returncode == 0, done.stdout[-4000:]
    assert material not in done.stdout + done.stderr

    context = ssl.create_default_context(cafile=str(ca[0]))
    conn = Https(host.tls_port, context)
    conn.request("POST", "/api/v0/echo/read", b'{"hello": "files"}')
    answer = conn.getresponse()
    assert answer.status == 200 and json.loads(answer.read())["hello"] == "files"
    conn.close()
    live = ROOT / "current" / "tls"
    info = (live / "privkey.pem").stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o600, 0, 0)
    assert stat.S_IMODE(live.stat().st_mode) == 0o700
    assert (live / "privkey.pem").read_text() == key.read_text()
    # The programs' secrets lose the lines that name the files: they are the deploy's.
    programs = (ROOT / "current" / "config" / "secrets.env").read_text()
    assert "MYPRODUCT_TOKEN=tls-test" in programs and "APIPHANT_TLS" not in programs
    history = (ROOT / "history.log").read_text()
    assert material not in history and "PRIVATE KEY" not in history
    status = host.fab(config, "status", "web1")
    assert f"{SERVER_NAME}: expires" in status.stdout
    # Nobody but root reads the key: not the product's user, not Nginx's workers.
    for user in (PRODUCT, "www-data"):
        peek = run(f"runuser -u {user} -- cat {live / 'privkey.pem'}")
        assert peek.returncode != 0, f"{user} can read the private key"


def test_bad_tls_input_refused_before_any_host_changes(tmp_path: Path) -> None:
    """Each a one-line refusal, exit 2, before a connection: the host (sshd on a closed
    port) is never reached."""
    ca = make_ca(tmp_path / "ca", "apiphant test CA")
    cert, key = make_leaf(tmp_path, ca, f"DNS:{SERVER_NAME}", "site")
    other_cert, other_key = make_leaf(tmp_path, ca, f"DNS:{SERVER_NAME}", "other")
    old_cert, old_key = make_leaf(tmp_path, ca, f"DNS:{SERVER_NAME}", "old", days=-1)
    closed = free_port()
    base = deploy_toml(f"root@127.0.0.1:{closed}", "80", 8001, tmp_path / "s.env")

    def refused(top: str, secrets: str = "X=1\n") -> str:
        (tmp_path / "s.env").write_text(secrets)
        path = tmp_path / "deploy.toml"
        path.write_text(base.replace('product = "myproduct"', f'product = "myproduct"\n{top}'))
        done = fab("deploy", f"--product={PRODUCT}", "--config", str(path), "web1")
        assert done.returncode == 2, done.stdout + done.stderr
        lines = [x for x in done.stdout.splitlines() if x.startswith("error: ")]
        assert len(lines) == 1 and "Traceback" not in done.stdout + done.stderr, done.stdout
        assert "Deploying" not in done.stdout and "127.0.0.1" not in lines[0]
        return lines[0]

    acme = 'tls = "acme"\n'
    assert "domains: missing" in refused(acme + 'acme_email = "a@example.com"\n')
    assert "acme_email: missing" in refused(acme + 'domains = ["api.example.com"]\n')
    assert "domains: expected a list of host names" in refused(
        acme + 'domains = ["api.example.com/x"]\nacme_email = "a@example.com"\n')
    assert "domains: expected a list of host names" in refused(
        acme + 'domains = ["203.0.113.10"]\nacme_email = "a@example.com"\n')
    files = 'tls = "files"\ndomains = ["api.example.com"]\n'

    def lines(c: Path, k: Path) -> str:
        return f"APIPHANT_TLS_CERT={c}\nAPIPHANT_TLS_KEY={k}\n"

    line = refused(files, lines(tmp_path / "none.pem", key))
    assert "APIPHANT_TLS_CERT: no such file" in line and "none.pem" in line
    line = refused(files, lines(cert, other_key))
    assert "the key does not match the certificate" in line
    line = refused(files, lines(old_cert, old_key))
    assert "the certificate expired on " in line and "old.pem" in line
    line = refused('tls = "files"\ndomains = ["www.example.com"]\n', lines(cert, key))
    assert "not for www.example.com" in line
    assert shutil.which("openssl")
