"""HTTPS (tls = "acme" | "files"): certbot's folders and runs, the first certificate, the
check over HTTPS and the certificates' expiry."""

from __future__ import annotations

from collections.abc import Iterable
from shlex import quote as q
from typing import TYPE_CHECKING

from apiphant.deploy.host.configs import link
from apiphant.deploy.host.nginx import nginx_ready, nginx_test_reload
from apiphant.deploy.host.shell import join
from apiphant.deploy.host.system import LOGS_OWNER
from apiphant.deploy.layout import CERTBOT, HEALTH_PATH, Layout

if TYPE_CHECKING:
    from apiphant.deploy.config import Tls

#: Seconds between two ``certbot renew`` runs of the renewal program: twice a day, as
#: certbot's own timer; a certificate is renewed once it has less than 30 days left.
RENEW_EVERY = 12 * 3600


def tls_dirs(layout: Layout) -> str:
    """certbot's folders, root's only; the challenge webroot, readable by Nginx's workers."""
    owner, group, mode = LOGS_OWNER
    return join(
        f"install -d -m 0700 {q(layout.tls)} {q(layout.letsencrypt)} {q(layout.certbot_work)}",
        f"install -d -m {mode:04o} -o {owner} -g {group} {q(layout.certbot_logs)}",
        f"install -d -m 0755 {q(layout.acme_webroot)}",
    )


def _certbot(layout: Layout, tls: Tls) -> str:
    """certbot with the deployment's own folders (and a private ACME CA's bundle)."""
    env = f"REQUESTS_CA_BUNDLE={q(tls.acme_ca_bundle)} " if tls.acme_ca_bundle else ""
    return (
        f"{env}{CERTBOT} --non-interactive --config-dir {q(layout.letsencrypt)} "
        f"--work-dir {q(layout.certbot_work)} --logs-dir {q(layout.certbot_logs)}"
    )


def certbot_certonly(layout: Layout, tls: Tls) -> str:
    """Obtain (or keep, when it covers the domains and is not due) the certificate, by HTTP-01
    from the webroot Nginx serves on port 80."""
    domains = " ".join(f"-d {q(d)}" for d in tls.domains)
    return (
        f"{_certbot(layout, tls)} certonly --agree-tos --email {q(tls.acme_email)} "
        f"--no-eff-email --server {q(tls.acme_server)} --cert-name {q(layout.cert_name)} "
        f"--webroot -w {q(layout.acme_webroot)} {domains} --keep-until-expiring"
    )


def certbot_renew(layout: Layout, tls: Tls) -> str:
    """Renew what is due (or more, with arguments such as --force-renewal appended); Nginx
    reloads once a certificate changed. No random sleep: the program's schedule is its own."""
    return (
        f"{_certbot(layout, tls)} renew --cert-name {q(layout.cert_name)} "
        f"--no-random-sleep-on-renew --deploy-hook {q(nginx_test_reload())}"
    )


def _reason(output: str, log: str) -> str:
    """certbot's reason for a failure in one line (its Detail:, else its last word), and its
    log."""
    return (
        f'reason=$(printf "%s\\n" "${output}" | sed -n "s/^ *Detail: *//p" | head -n 1); '
        f'[ -n "$reason" ] || reason=$(printf "%s\\n" "${output}" | grep -v -e "^Ask for help" '
        '-e "^Saving debug log" -e "^ *$" | tail -n 1); '
        f'echo "certbot: $reason (log: {log})" >&2'
    )


def obtain_certificate(
    layout: Layout, tls: Tls, http_links: dict[str, str], unused: Iterable[str],
    nginx_files: Iterable[str],
) -> str:  # fmt: skip
    """The first deploy's chicken and egg: with no certificate yet, Nginx first serves port 80
    alone (the API over HTTP, as before, and the challenge), then certbot gets one. Later
    deploys only make certbot add new domains; renewal is the renewal program's."""
    first = join(
        "echo 'no certificate yet: Nginx serves the ACME challenge on port 80 first'",
        link(http_links, unused, layout.current_config),
        "nginx -t -q",
        nginx_ready(nginx_files, layout.nginx_loaded),
    )
    return join(
        tls_dirs(layout),
        f"if [ ! -s {q(layout.acme_fullchain)} ]; then {first}; fi",
        f"out=$({certbot_certonly(layout, tls)} 2>&1); rc=$?; "
        'printf "%s\\n" "$out" | grep -v "^ *$" | tail -n 3; '
        f'if [ "$rc" -ne 0 ]; then {_reason("out", layout.certbot_log)}; false; fi',
    )


def https_check(tls: Tls, domain: str, cafile: str, release: str) -> str:
    """/health over HTTPS from the host itself, by the certificate's name: the chain must
    verify against the CA that issued it (``cafile``; the system's CAs when it is empty),
    and the release must answer. Workers name their release to the deployment alone: a
    front they do not trust as a proxy (a front without ``private_address``) gets
    ``{"status": "ok"}`` from them, which passes too; another release never does."""
    url = f"https://{domain}{tls.port_suffix}{HEALTH_PATH}"
    resolve = f"{domain}:{tls.listen_port}:{tls.local_address}"
    needle = f'"release": "{release}"'
    # From loopback, even to a listener on a public address: the workers name their release
    # to the deployment alone, and Nginx tells them who asks (X-Forwarded-For).
    source = "::1" if ":" in tls.local_address else "127.0.0.1"
    curl = f"curl -fsS --max-time 5 --interface {source} --resolve {q(resolve)}"
    fetch = f"answer=$({curl} {q(url)})"
    if cafile:
        fetch = (f"if [ -s {q(cafile)} ]; then answer=$({curl} --cacert {q(cafile)} {q(url)}); "
                 f"else {fetch}; fi")  # fmt: skip
    ok = '"status": "ok"'
    return (
        f'{fetch} && case "$answer" in '
        f"*{q(needle)}*) echo {q(f'https: {url} verified, answers release {release}')};; "
        f"*'\"release\"'*) echo {q(f'https: {url} answers another release than {release}')}"
        " >&2; false;; "
        f"*{q(ok)}*) echo {q(f'https: {url} verified, answers ok')};; "
        f"*) echo {q(f'https: {url} answers no status')} >&2; false;; esac"
    )


def certificates(paths: Iterable[tuple[str, str]]) -> str:
    """One line per certificate: its name and when it expires (``fab status``)."""
    parts = []
    for name, cert in paths:
        parts.append(
            f"if [ -s {q(cert)} ]; then printf '  %s: expires %s\\n' {q(name)} "
            f"\"$(openssl x509 -noout -enddate -in {q(cert)} | sed 's/^notAfter=//')\"; "
            f"else printf '  %s: none yet\\n' {q(name)}; fi"
        )
    return "echo 'certificates:'; " + "; ".join(parts) if parts else "true"
