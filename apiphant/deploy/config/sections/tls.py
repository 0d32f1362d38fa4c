"""HTTPS: the top-level ``tls``, ``domains``, ``acme_*`` and ``hsts`` keys, and
``[nginx] tls_listen``."""

from pathlib import Path

from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.front import (
    DEFAULT_TLS_LISTEN,
    LETSENCRYPT_STAGING,
    TLS_CERT_KEY,
    TLS_KEY_KEY,
    TLS_MODES,
    Nginx,
    Tls,
)
from apiphant.deploy.config.keys import keys_of
from apiphant.deploy.config.patterns import ABS_PATH, ACME_URL, DOMAIN, EMAIL
from apiphant.deploy.config.reader import Reader, listen


def read_tls(top: Reader, n: Reader, nginx: Nginx, secrets: Path | None) -> Tls:
    """tls, domains, acme_*, hsts and [nginx] tls_listen: each checked, and each needed one
    present for the mode."""
    mode = top.text("tls", None, f"one of {', '.join(TLS_MODES)}", "off")
    if mode not in TLS_MODES:
        raise top.fail("tls", f"one of {', '.join(TLS_MODES)}", mode)
    if mode == "off":
        for key in (k for k in keys_of(Tls) if k != "tls"):
            if top.has(key):
                raise ConfigError(f"{top.shown}: {key}: only with tls = \"acme\" or \"files\"")
        if n.has("tls_listen"):
            raise ConfigError(
                f"{top.shown}: nginx.tls_listen: only with tls = \"acme\" or \"files\""
            )
        return Tls()
    if not top.has("domains"):
        raise ConfigError(
            f"{top.shown}: domains: missing, tls = \"{mode}\" needs the names the "
            "certificate is for, like [\"api.example.com\"]"
        )
    raw = top.table["domains"]
    if isinstance(raw, list):
        raw = [d.lower() if isinstance(d, str) else d for d in raw]
    domains = Reader(top.shown, "", {"domains": raw}, ("domains",)).names(
        "domains", DOMAIN, "host names like 'api.example.com' (no IP, no wildcard)"
    )
    if not domains:
        raise top.fail("domains", "at least one host name like 'api.example.com'", [])
    if mode == "acme":
        email = top.text("acme_email", EMAIL, "an email address for the CA's expiry notices")
        server = top.text("acme_server", ACME_URL, "an ACME directory URL like "
                          f"{LETSENCRYPT_STAGING}", Tls.acme_server)  # fmt: skip
        bundle = Tls.acme_ca_bundle
        if top.has("acme_ca_bundle"):
            bundle = top.text("acme_ca_bundle", ABS_PATH, "an absolute path on the hosts")
    else:
        for key in ("acme_email", "acme_server", "acme_ca_bundle"):
            if top.has(key):
                raise ConfigError(f"{top.shown}: {key}: only with tls = \"acme\"")
        email, server, bundle = Tls.acme_email, Tls.acme_server, Tls.acme_ca_bundle
        if secrets is None:
            raise ConfigError(
                f"{top.shown}: secrets: missing, tls = \"files\" reads {TLS_CERT_KEY}= and "
                f"{TLS_KEY_KEY}= (the certificate chain and key on this machine) from it"
            )
    host, port = listen(n, "tls_listen", DEFAULT_TLS_LISTEN)
    for key, taken in (("listen", nginx.listen_port), ("local_port", nginx.local_port)):
        if port == taken:
            raise n.fail("tls_listen", f"a port other than nginx.{key}'s ({taken})", port)
    return Tls(mode, domains, email, server, bundle, top.flag("hsts", Tls.hsts), host, port)
