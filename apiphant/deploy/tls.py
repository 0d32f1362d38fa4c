"""tls = "files": the certificate chain and key on this machine, checked before any host changes.

The secrets file names them (``APIPHANT_TLS_CERT=``, ``APIPHANT_TLS_KEY=``), as it holds what
never goes into git. Every refusal is one line naming the secrets file, the key and the path;
the key's content never appears in a message, a plan or the history.
"""

import re
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from apiphant.deploy.config import TLS_CERT_KEY, TLS_KEY_KEY, Config, ConfigError, read_secrets

PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----\r?\n?", re.S)
PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]+ )?PRIVATE KEY-----")
TLS_LINES = (TLS_CERT_KEY, TLS_KEY_KEY)


@dataclass(frozen=True)
class Files:
    """What a tls = "files" deploy uploads; ``key`` only ever as a secret upload."""

    cert_path: Path
    key_path: Path
    fullchain: bytes
    key: bytes
    #: What the certificate is checked against (the smoke test's trust, Nginx's
    #: ssl_trusted_certificate): the chain without its first certificate, the CA that issued
    #: it; or, when the file holds the certificate alone (self-signed, or issued straight
    #: from a private root such as mkcert's), the certificate itself. Never empty: Nginx
    #: refuses an empty ssl_trusted_certificate.
    issuer: bytes

    def __repr__(self) -> str:
        return f"Files({self.cert_path}, key {self.key_path})"


def split_chain(pem: bytes) -> list[bytes]:
    """The certificates of a PEM file, in order."""
    return [m.group(0).rstrip(b"\r\n") + b"\n" for m in PEM_CERT.finditer(pem)]


def _named(config: Config) -> dict[str, Path]:
    assert config.secrets is not None  # checked by config.parse for tls = "files"
    values = {}
    for key, value in read_secrets(config) or ():
        if key in TLS_LINES:
            path = Path(value.strip()).expanduser()
            values[key] = path if path.is_absolute() else config.secrets.parent / path
    return values


def _not_after(cert: Path) -> float:
    """The certificate's end of validity, by openssl (the local one, as the hosts' is)."""
    done = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(cert)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    if done.returncode != 0 or not done.stdout.startswith("notAfter="):
        raise ValueError((done.stderr.strip().splitlines() or ["not a certificate"])[-1])
    return ssl.cert_time_to_seconds(done.stdout.strip().removeprefix("notAfter="))


def _names(cert: Path) -> list[str]:
    done = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                           str(cert)], capture_output=True, text=True, timeout=30)  # fmt: skip
    return re.findall(r"DNS:([^,\s]+)", done.stdout)


def covers(names: list[str], domain: str) -> bool:
    """A certificate's DNS names cover ``domain``: exactly, or by a one-label wildcard."""
    for name in (n.lower() for n in names):
        if name == domain or (name.startswith("*.") and domain.partition(".")[2] == name[2:]):
            return True
    return False


def load_files(config: Config, now: float | None = None) -> Files:
    """Read and check the files: present, a chain and a key, the key the certificate's,
    valid now, covering every domain. Raises ConfigError with one line."""
    where = f"secrets file {config.secrets}"
    named = _named(config)
    for key in TLS_LINES:
        if key not in named:
            raise ConfigError(
                f"{where}: {key}: missing, tls = \"files\" needs {TLS_CERT_KEY}="
                f"/path/fullchain.pem and {TLS_KEY_KEY}=/path/privkey.pem"
            )
    cert, key = named[TLS_CERT_KEY], named[TLS_KEY_KEY]
    for name, path in ((TLS_CERT_KEY, cert), (TLS_KEY_KEY, key)):
        if not path.is_file():
            raise ConfigError(f"{where}: {name}: no such file {str(path)!r}")
    try:
        fullchain, private = cert.read_bytes(), key.read_bytes()
    except OSError as error:
        raise ConfigError(f"{where}: cannot read {error.filename}: {error.strerror}") from None
    chain = split_chain(fullchain)
    if not chain:
        raise ConfigError(f"{where}: {TLS_CERT_KEY}: {cert} holds no PEM certificate")
    if not PEM_KEY.search(private):
        raise ConfigError(f"{where}: {TLS_KEY_KEY}: {key} holds no PEM private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as error:
        why = "the key does not match the certificate" if "MISMATCH" in str(error) else (
            f"key and certificate do not load together ({error.reason or error})")
        raise ConfigError(f"{where}: {TLS_KEY_KEY}: {key}: {why} {cert}") from None
    try:
        not_after = _not_after(cert)
    except ValueError as error:
        raise ConfigError(f"{where}: {TLS_CERT_KEY}: {cert}: {error}") from None
    if not_after <= (time.time() if now is None else now):
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(not_after))
        raise ConfigError(f"{where}: {TLS_CERT_KEY}: {cert}: the certificate expired on {when}")
    names = _names(cert)
    for domain in config.tls.domains:
        if not covers(names, domain):
            raise ConfigError(
                f"{where}: {TLS_CERT_KEY}: {cert}: the certificate is not for {domain} "
                f"(it names: {', '.join(names) or 'no DNS name'})"
            )
    return Files(cert, key, b"".join(chain), private, b"".join(chain[1:]) or chain[0])
