"""HTTPS's pure parts: tls in deploy.toml, the rendered TLS site, certbot's commands, the plan.

The real issuance, renewal and serving are in test_deploy_tls.py; here nothing connects.
"""

import subprocess
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from apiphant.deploy import plan, render, tls
from apiphant.deploy.config import (
    LETSENCRYPT,
    LETSENCRYPT_STAGING,
    Tls,
    parse,
    parse_secrets,
    secrets_lines,
)
from apiphant.deploy.console import describe_upload
from apiphant.deploy.host.certbot import (
    RENEW_EVERY,
    certbot_certonly,
    certbot_renew,
    certificates,
    https_check,
    obtain_certificate,
    tls_dirs,
)
from apiphant.deploy.layout import Layout
from apiphant.deploy.ssh import Remote
from tests.deploy_helpers import CHECKOUT
from tests.test_deploy_config import ONE_HOST, THREE_HOSTS, error_of, parsed
from tests.test_deploy_plan import PACKAGES
from tests.test_deploy_render import _nginx_t, needs_nginx

MYPRODUCT = CHECKOUT / "myproduct"
RELEASE = "20260102030405"
WHEEL = "apiphant-1.0.0-py3-none-any.whl"
#: THREE_HOSTS with a private address for the front, and a second front (host a).
FRONT_PRIVATE = ('roles = ["nginx"]', 'roles = ["nginx"]\nprivate_address = "10.0.0.10"')
A_FRONT = ('roles = ["api"]\n\n[hosts.b]', 'roles = ["api", "nginx"]\n\n[hosts.b]')
ACME = 'tls = "acme"\ndomains = ["api.example.com"]\nacme_email = "ops@example.com"\n'


def with_top(text: str, top: str) -> str:
    return text.replace('product = "myproduct"', f'product = "myproduct"\n{top}', 1)


def acme_config(top: str = "", text: str = ONE_HOST):
    return parsed(with_top(text, ACME + top))


def files_config(tmp_path: Path, text: str = ONE_HOST):
    secrets = tmp_path / "s.env"
    secrets.write_text("TOKEN=x\n")
    top = f'tls = "files"\ndomains = ["api.example.com"]\nsecrets = "{secrets}"\n'
    return parsed(with_top(text, top))


# Configuration


def test_tls_is_off_by_default_and_acme_defaults_to_lets_encrypt() -> None:
    assert parsed(ONE_HOST).tls == Tls()
    config = acme_config()
    assert config.tls.acme and config.tls.acme_server == LETSENCRYPT
    assert config.tls.listen == "443" and config.tls.port_suffix == "" and not config.tls.hsts
    staging = acme_config(f'acme_server = "{LETSENCRYPT_STAGING}"\nhsts = true\n')
    assert staging.tls.acme_server == LETSENCRYPT_STAGING and staging.tls.hsts
    upper = parsed(with_top(ONE_HOST, ACME.replace("api.example.com", "API.Example.com")))
    assert upper.tls.domains == ("api.example.com",)


def test_the_certificates_domains_join_the_server_names() -> None:
    both = ACME.replace('["api.example.com"]', '["api.example.com", "www.example.com"]')
    two = parsed(with_top(ONE_HOST.replace('["api.example.com"]', '["api.example.com"]'), both))
    assert two.server_names == ("api.example.com",)
    assert two.site_names == ("api.example.com", "www.example.com")


@pytest.mark.parametrize(
    "top, expected",
    [
        ('tls = "yes"', "tls: expected one of off, acme, files, got 'yes'"),
        ('tls = "acme"\nacme_email = "a@example.com"', "domains: missing, tls = \"acme\" needs"),
        ('tls = "acme"\ndomains = ["api.example.com"]', "acme_email: missing, expected an email"),
        ('tls = "acme"\ndomains = []\nacme_email = "a@example.com"', "domains: expected at least"),
        (ACME.replace("api.example.com", "api.example.com/x"), "domains: expected a list of host"),
        (ACME.replace("api.example.com", "*.example.com"), "domains: expected a list of host"),
        (ACME.replace("api.example.com", "10.0.0.1"), "domains: expected a list of host"),
        (ACME.replace("api.example.com", "localhost"), "domains: expected a list of host"),
        (ACME.replace("api.example.com", "-a.example.com"), "domains: expected a list of host"),
        (ACME.replace("ops@example.com", "ops"), "acme_email: expected an email address"),
        (ACME + 'acme_server = "http://ca.example/dir"', "acme_server: expected an ACME dir"),
        (ACME + 'acme_ca_bundle = "ca.pem"', "acme_ca_bundle: expected an absolute path"),
        (ACME + "hsts = 1", "hsts: expected true or false, got 1"),
        ('domains = ["api.example.com"]', 'domains: only with tls = "acme" or "files"'),
        ("hsts = true", 'hsts: only with tls = "acme" or "files"'),
        ('tls = "files"\ndomains = ["a.example.com"]', "secrets: missing, tls = \"files\" reads"),
        ('tls = "files"\ndomains = ["a.example.com"]\nacme_email = "a@example.com"\n'
         'secrets = "/s.env"', 'acme_email: only with tls = "acme"'),
    ],
)
def test_bad_tls_settings_are_one_line_naming_the_key(top: str, expected: str) -> None:
    assert expected in error_of(with_top(ONE_HOST, top + "\n"))


def test_tls_listen_apart_from_the_other_ports() -> None:
    text = with_top(ONE_HOST, ACME) + '\n[nginx]\ntls_listen = "80"\n'
    assert "nginx.tls_listen: expected a port other than nginx.listen's (80)" in error_of(text)
    text = with_top(ONE_HOST, ACME).replace('roles = ["nginx", "api"]',
                                            'roles = ["nginx", "api"]\nfirst_port = 1443')
    text += '\n[nginx]\ntls_listen = "1444"\n'
    assert "hosts.web1.first_port: worker ports apart from nginx.tls_listen (1444)" in (
        error_of(text))
    text = ONE_HOST + '\n[nginx]\ntls_listen = "8443"\n'
    assert 'nginx.tls_listen: only with tls = "acme" or "files"' in error_of(text)


def test_several_fronts_with_acme_need_private_addresses() -> None:
    two_fronts = THREE_HOSTS.replace(*A_FRONT)
    message = error_of(with_top(two_fronts, ACME))
    assert "hosts.front.private_address: missing, with tls = \"acme\" each Nginx host" in message
    fixed = two_fronts.replace(*FRONT_PRIVATE)
    config = parsed(with_top(fixed, ACME))
    assert config.acme_peers(config.host("front")) == ["10.0.0.11"]
    assert config.acme_peers(config.host("a")) == ["10.0.0.10"]
    assert config.role_names(config.host("b")) == ("api", "python")
    assert config.role_names(config.host("a")) == ("api", "nginx", "acme", "python")
    assert config.role_names(config.host("front")) == ("nginx", "acme")


# Rendering


def test_acme_site_redirects_port_80_and_serves_tls_on_443() -> None:
    config = acme_config("hsts = true\n")
    files = render.render_host(config, config.hosts[0], RELEASE, WHEEL)
    site = files.files["nginx.conf"]
    port80, _, tls_server = site.partition("listen 443 ssl http2;")
    challenge = "location ^~ /.well-known/acme-challenge/ {\n        root /opt/myproduct/shared/"
    assert challenge in port80
    assert "return 308 https://$host$request_uri;" in port80
    assert "proxy_pass" not in port80
    for line in (
        "ssl_certificate /opt/myproduct/shared/tls/letsencrypt/live/myproduct/fullchain.pem;",
        "ssl_certificate_key /opt/myproduct/shared/tls/letsencrypt/live/myproduct/privkey.pem;",
        "ssl_trusted_certificate /opt/myproduct/shared/tls/letsencrypt/live/myproduct/chain.pem;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        f"ssl_ciphers {render.TLS_CIPHERS};",
        "ssl_session_cache shared:myproduct_tls:10m;",
        "ssl_stapling on;",
        "listen 127.0.0.1:8000;",  # the smoke test's loopback way in, plain HTTP
        "proxy_set_header X-Forwarded-Proto $scheme;",
    ):
        assert line in tls_server, line
    # HSTS on every answer of the 443 server, Nginx's own JSON errors too.
    assert tls_server.count('add_header Strict-Transport-Security "max-age=63072000" always;') == (
        1 + len(render.NGINX_ERRORS))
    # Before the first certificate: port 80 alone, the API and the challenge, no TLS.
    first = files.files["nginx-http.conf"]
    assert "ssl" not in first and "return 308" not in first
    assert "location ^~ /.well-known/acme-challenge/" in first and "listen 80;" in first
    main = files.files["nginx-main.conf"]
    assert "listen 443 ssl http2 default_server;" in main and "ssl_reject_handshake on;" in main
    # certbot from apt, renewed by a Supervisor program of root's.
    assert "certbot" in files.apt and "certbot" in files.files["apt.txt"]
    supervisor = files.files["supervisor.conf"]
    assert "[program:myproduct-certbot]\n" in supervisor
    assert "command=/opt/myproduct/current/config/renew --loop\n" in supervisor
    assert files.mode("renew") == 0o755
    assert certbot_renew(config.layout, config.tls) in files.files["renew"]
    assert f"sleep {RENEW_EVERY}" in files.files["renew"] and RENEW_EVERY == 43200


def test_tls_off_renders_as_before() -> None:
    config = parsed(ONE_HOST)
    files = render.render_host(config, config.hosts[0], RELEASE, WHEEL)
    assert "ssl" not in files.files["nginx.conf"]
    assert "listen 443" not in files.files["nginx-main.conf"]
    assert "acme" not in files.files["nginx.conf"] and "certbot" not in files.apt
    assert "renew" not in files.files and "nginx-http.conf" not in files.files


def test_files_site_reads_the_releases_own_copy(tmp_path: Path) -> None:
    config = files_config(tmp_path)
    files = render.render_host(config, config.hosts[0], RELEASE, WHEEL)
    site = files.files["nginx.conf"]
    tls_dir = f"/opt/myproduct/releases/{RELEASE}/tls"
    assert f"ssl_certificate {tls_dir}/fullchain.pem;" in site
    assert f"ssl_certificate_key {tls_dir}/privkey.pem;" in site
    assert "acme-challenge" not in site and "return 308 https://$host$request_uri;" in site
    assert "certbot" not in files.apt and "renew" not in files.files


def test_multi_front_acme_asks_its_peers_for_challenge_answers() -> None:
    fronts = THREE_HOSTS.replace(*FRONT_PRIVATE).replace(*A_FRONT)
    config = parsed(with_top(fronts, ACME))
    site = render.render_host(config, config.host("front"), RELEASE, WHEEL).files["nginx.conf"]
    assert "upstream myproduct_acme_peers {\n    server 10.0.0.11:80;\n}" in site
    assert "try_files $uri @myproduct_acme_peers;" in site
    assert "if ($http_x_apiphant_acme) {\n            return 404;" in site  # no loops


@needs_nginx
def test_nginx_accepts_the_tls_sites(tmp_path: Path) -> None:
    """nginx -t with a real certificate and key made here, for each variant of the site."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem"), "-days", "1", "-subj", "/CN=api.example.com"],
                   check=True, capture_output=True)  # fmt: skip
    config = acme_config("hsts = true\n")
    files = render.render_host(config, config.hosts[0], RELEASE, WHEEL).files
    for name in ("nginx.conf", "nginx-http.conf"):
        site = files[name].replace("/var/log/myproduct/", f"{tmp_path}/")
        for path in ("fullchain.pem", "chain.pem"):
            site = site.replace(f"{config.layout.acme_live}/{path}", str(tmp_path / "c.pem"))
        site = site.replace(config.layout.acme_key, str(tmp_path / "k.pem"))
        checked = _nginx_t(tmp_path, site)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _key_and_request(tmp_path: Path, name: str, *x509: str) -> None:
    """A P-256 key NAME.key and, with ``x509`` (-x509 ...), a self-signed NAME.pem; else a
    request NAME.csr; for api.example.com."""
    _openssl("req", *x509, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(tmp_path / f"{name}.key"), "-out",
             str(tmp_path / (f"{name}.pem" if x509 else f"{name}.csr")), "-days", "1",
             "-subj", "/CN=api.example.com", "-addext", "subjectAltName=DNS:api.example.com")


def chainless_certificates(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """Two certificates that come alone, made here with openssl: a self-signed one, and one
    issued straight from a private root (as mkcert issues them) whose root is not in the file."""
    _key_and_request(tmp_path, "self", "-x509")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(tmp_path / "root.key"), "-out", str(tmp_path / "root.pem"),
             "-days", "1", "-subj", "/CN=Private Root")
    _key_and_request(tmp_path, "leaf")
    (tmp_path / "ext").write_text("subjectAltName=DNS:api.example.com\n")
    _openssl("x509", "-req", "-in", str(tmp_path / "leaf.csr"), "-CA", str(tmp_path / "root.pem"),
             "-CAkey", str(tmp_path / "root.key"), "-CAcreateserial", "-days", "1",
             "-extfile", str(tmp_path / "ext"), "-out", str(tmp_path / "leaf.pem"))
    return {name: (tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
            for name in ("self", "leaf")}  # fmt: skip


def _files_with(tmp_path: Path, cert: Path, key: Path):
    secrets = tmp_path / f"{cert.stem}.env"
    secrets.write_text(f"TOKEN=x\nAPIPHANT_TLS_CERT={cert}\nAPIPHANT_TLS_KEY={key}\n")
    top = f'tls = "files"\ndomains = ["api.example.com"]\nsecrets = "{secrets}"\n'
    config = parsed(with_top(ONE_HOST, top))
    return config, tls.load_files(config)


@needs_nginx
def test_a_certificate_without_a_chain_is_served_and_smoke_tested(tmp_path: Path) -> None:
    """tls = "files" with a certificate that comes alone: the release's issuer file (Nginx's
    ssl_trusted_certificate, the smoke test's --cacert) is the certificate itself, not an
    empty file that `nginx -t` refuses; real nginx -t on the site, and the smoke test's own
    curl against a real TLS server on loopback that serves it."""
    import http.server
    import ssl
    import threading

    from tests.deploy_helpers import free_port

    for name, (cert, key) in chainless_certificates(tmp_path).items():
        config, files = _files_with(tmp_path, cert, key)
        assert files.issuer == cert.read_bytes(), name
        paths = config.layout.release(RELEASE)
        here = tmp_path / f"{name}-tls"
        here.mkdir()
        for path, content in ((paths.tls_fullchain, files.fullchain), (paths.tls_key, files.key),
                              (paths.tls_issuer, files.issuer)):  # fmt: skip
            (here / Path(path).name).write_bytes(content)
        site = render.render_host(config, config.hosts[0], RELEASE, WHEEL).files["nginx.conf"]
        assert f"ssl_trusted_certificate {paths.tls_issuer};" in site
        site = site.replace(paths.tls + "/", f"{here}/").replace("/var/log/myproduct/", f"{here}/")
        checked = _nginx_t(tmp_path, site)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"

        port = free_port()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(here / "fullchain.pem", here / "privkey.pem")

        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f'{{"release": "{RELEASE}"}}'.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.HTTPServer(("127.0.0.1", port), Health)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            t = Tls("files", ("api.example.com",), listen_host="127.0.0.1", listen_port=port)
            check = https_check(t, "api.example.com", str(here / "issuer.pem"), RELEASE)
            done = subprocess.run(["sh", "-c", check], capture_output=True, text=True, timeout=30)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
        assert done.stdout.startswith("https: https://api.example.com:")


@needs_nginx
def test_ipv6_private_addresses_are_bracketed_for_nginx(tmp_path: Path) -> None:
    """Fronts and API hosts with IPv6 private addresses: every ADDRESS:PORT Nginx reads has
    the address in brackets (the peers of the ACME challenge too), and nginx -t accepts it."""
    _key_and_request(tmp_path, "c", "-x509")
    fronts = THREE_HOSTS.replace(*A_FRONT).replace(*FRONT_PRIVATE)
    for old, new in (("10.0.0.10", "fd00::10"), ("10.0.0.11", "fd00::11"),
                     ("10.0.0.12", "fd00::12")):  # fmt: skip
        fronts = fronts.replace(old, new)
    config = parsed(with_top(fronts, ACME))
    files = render.render_host(config, config.host("front"), RELEASE, WHEEL).files
    assert "upstream myproduct_acme_peers {\n    server [fd00::11]:80;\n}" in files["nginx.conf"]
    assert "server [fd00::12]:9000 max_fails=1" in files["nginx.conf"]
    for name in ("nginx.conf", "nginx-http.conf"):
        site = files[name].replace("/var/log/myproduct/", f"{tmp_path}/")
        for path in ("fullchain.pem", "chain.pem"):
            site = site.replace(f"{config.layout.acme_live}/{path}", str(tmp_path / "c.pem"))
        site = site.replace(config.layout.acme_key, str(tmp_path / "c.key"))
        checked = _nginx_t(tmp_path, site)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"
    workers = render.render_host(config, config.host("b"), RELEASE, WHEEL).files
    assert "apiphant serve myproduct [fd00::12]:9000 " in workers["supervisor.conf"]


# Commands


def test_certbot_commands() -> None:
    layout = Layout("shop")
    t = Tls("acme", ("api.example.com", "www.example.com"), "ops@example.com",
            "https://ca.example/dir", "/etc/ssl/private-ca.pem")  # fmt: skip
    base = ("REQUESTS_CA_BUNDLE=/etc/ssl/private-ca.pem /usr/bin/certbot --non-interactive "
            "--config-dir /opt/shop/shared/tls/letsencrypt --work-dir /opt/shop/shared/tls/work "
            "--logs-dir /var/log/shop/certbot")  # fmt: skip
    assert certbot_certonly(layout, t) == (
        f"{base} certonly --agree-tos --email ops@example.com --no-eff-email "
        "--server https://ca.example/dir --cert-name shop --webroot -w /opt/shop/shared/acme "
        "-d api.example.com -d www.example.com --keep-until-expiring"
    )
    renew = certbot_renew(layout, t)
    assert renew.startswith(f"{base} renew --cert-name shop --no-random-sleep-on-renew "
                            "--deploy-hook 'nginx -t -q && ")  # fmt: skip
    without = certbot_certonly(layout, Tls("acme", ("a.example.com",), "o@example.com"))
    assert without.startswith("/usr/bin/certbot ") and f"--server {LETSENCRYPT} " in without
    for command in (renew, obtain_certificate(
            layout, t, {"nginx-http.conf": layout.site}, [layout.site + ".x"], ["/a", "/b"]),
            https_check(t, "api.example.com", layout.acme_chain, RELEASE),
            certificates([("api.example.com", layout.acme_fullchain)])):  # fmt: skip
        assert subprocess.run(["bash", "-n", "-c", command]).returncode == 0, command


def test_obtain_serves_the_challenge_over_http_only_without_a_certificate() -> None:
    layout = Layout("shop")
    t = Tls("acme", ("api.example.com",), "ops@example.com")
    command = obtain_certificate(
        layout, t, {"nginx-http.conf": layout.site}, [], ["/m", "/h"])
    head, _, tail = command.partition(certbot_certonly(layout, t))
    assert f"if [ ! -s {layout.acme_fullchain} ]; then" in head
    assert f"ln -sfn {layout.current_config}/nginx-http.conf" in head and "nginx -t -q" in head
    assert "Detail:" in tail and f"(log: {layout.certbot_log})" in tail


def test_https_check_by_name_against_the_issuer() -> None:
    t = Tls("files", ("api.example.com",), listen_host="127.0.0.1", listen_port=8443)
    command = https_check(t, "api.example.com", "/r/tls/issuer.pem", RELEASE)
    assert "--resolve api.example.com:8443:127.0.0.1 https://api.example.com:8443/health" in command
    assert "if [ -s /r/tls/issuer.pem ]; then answer=$(curl" in command
    assert "--cacert /r/tls/issuer.pem https://api.example.com:8443/health" in command
    assert f"*'\"release\": \"{RELEASE}\"'*)" in command


def test_https_check_asks_from_loopback_even_on_a_public_address() -> None:
    """/health names the release to the deployment alone: the check connects from loopback,
    so Nginx's X-Forwarded-For tells the worker that the host itself asks."""
    for host, source in (("203.0.113.5", "127.0.0.1"), ("", "127.0.0.1"), ("2001:db8::5", "::1")):
        t = Tls("files", ("api.example.com",), listen_host=host, listen_port=443)
        command = https_check(t, "api.example.com", "", RELEASE)
        assert f"curl -fsS --max-time 5 --interface {source} --resolve" in command, host


def test_https_check_takes_the_release_or_status_alone_never_another_release() -> None:
    """Workers name their release to the deployment alone: through a front they do not
    trust (no private_address), {"status": "ok"} is what the check gets, and passes."""
    import json
    import shlex

    t = Tls("files", ("api.example.com",), listen_host="127.0.0.1", listen_port=8443)
    _, _, check = https_check(t, "api.example.com", "", RELEASE).partition(" && ")
    for answer, passes in (
        ({"status": "ok", "product": "myproduct", "release": RELEASE}, True),
        ({"status": "ok"}, True),
        ({"status": "ok", "product": "myproduct", "release": "20250101000000"}, False),
        ({"error": "502 Bad Gateway"}, False),
    ):
        text = json.dumps(answer)
        done = subprocess.run(["sh", "-c", f"answer={shlex.quote(text)} && {check}"],
                              capture_output=True, text=True)  # fmt: skip
        assert (done.returncode == 0) is passes, (answer, done.stdout, done.stderr)


def test_a_reason_steps_failure_ends_with_its_last_stderr_line() -> None:
    config = acme_config()
    remote = Remote(config)
    step = plan.Step("web1", "certificate", "certbot", kind="reason")
    result = SimpleNamespace(exited=1, stdout="", stderr="noise\ncertbot: refused (log: /l)\n\n")
    assert remote._failure(step, result) == (
        "web1: certificate failed (exit 1): certbot: refused (log: /l)")
    plain = plan.Step("web1", "other", "x")
    assert remote._failure(plain, result) == "web1: other failed (exit 1)"


# Plans


def deploy_plan(config, tls_files=None, secrets=None) -> plan.Plan:
    rendered = render.render_all(config, config.hosts, RELEASE, WHEEL)
    return plan.deploy_plan(config, list(config.hosts), RELEASE, Path("/tmp/r.tar.gz"), rendered,
                            "me@here", packages=PACKAGES, tls_files=tls_files,
                            secrets=secrets)  # fmt: skip


def test_acme_plan_gets_the_certificate_between_switch_and_link() -> None:
    config = acme_config()
    the_plan = deploy_plan(config)
    whys = [s.why for s in the_plan.activate]
    cert = next(i for i, w in enumerate(whys) if w.startswith("certificate for api.example.com"))
    assert whys[cert - 1].startswith("make release") and whys[cert + 1] == "link configs into /etc"
    assert the_plan.activate[cert].kind == "reason"
    assert whys[cert + 2] == "check: nginx -t, with the certificate"
    setup = the_plan.prepare[0]
    assert setup.why.endswith("; release folder; certbot's folders and the ACME webroot")
    assert setup.command.endswith(tls_dirs(config.layout))
    check = next(s for s in the_plan.prepare if "check: nginx -t, full config" in s.why)
    assert f"[ -s {config.layout.acme_fullchain} ] || own=" in check.command
    assert [s.why for s in the_plan.verify][-1].startswith("smoke test over HTTPS: api.example.com")
    # A rollback serves what was served before: no issuance, no HTTPS smoke test.
    back = plan.rollback_plan(config, list(config.hosts), {"web1": "20250101000000"})
    assert not any(s.kind == "reason" for s in back.activate)
    assert not any("HTTPS" in s.why for s in back.verify)
    for step in the_plan.steps() + back.steps():
        if step.command:
            assert subprocess.run(["bash", "-n", "-c", step.command]).returncode == 0, step.why


def test_files_plan_uploads_the_key_private_and_never_shows_it(tmp_path: Path) -> None:
    config = files_config(tmp_path)
    files = tls.Files(Path("/c.pem"), Path("/k.pem"), b"CHAIN", b"KEY-MATERIAL", b"ISSUER")
    the_plan = deploy_plan(config, files, b"TOKEN=x\n")
    uploads = {s.upload.remote: s.upload for s in the_plan.prepare if s.upload}
    tls_dir = f"/opt/myproduct/releases/{RELEASE}/tls"
    # Their folder, root's only, is made with the release folder, before the uploads.
    assert the_plan.prepare[0].command.endswith(f"install -d -m 0700 {tls_dir}")
    key = uploads[f"{tls_dir}/privkey.pem"]
    assert (key.mode, key.owner, key.group, key.secret) == (0o600, "root", "root", True)
    assert uploads[f"{tls_dir}/fullchain.pem"].content == b"CHAIN"
    assert uploads[f"{tls_dir}/issuer.pem"].content == b"ISSUER"
    secrets = uploads[f"/opt/myproduct/releases/{RELEASE}/config/secrets.env"]
    assert secrets.content == b"TOKEN=x\n" and secrets.local is None and secrets.secret
    shown = [describe_upload(u) for u in uploads.values()]
    assert "private key /k.pem" in "\n".join(shown) and "KEY" not in "".join(
        s for s in shown if "private key" not in s)
    assert not any("KEY-MATERIAL" in s for s in shown)
    status = plan.status_plan(config, list(config.hosts))[0].command
    assert "/opt/myproduct/current/tls/fullchain.pem" in status and "expires" in status


def test_tls_files_helpers() -> None:
    one = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    two = b"-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----"
    assert tls.split_chain(one + b"junk\n" + two) == [one, two + b"\n"]
    assert tls.covers(["api.example.com"], "api.example.com")
    assert tls.covers(["*.example.com"], "api.example.com")
    assert not tls.covers(["*.example.com"], "a.b.example.com")
    assert not tls.covers(["example.com"], "api.example.com")
    text = "A=1\nAPIPHANT_TLS_CERT=/c\nB=2\nAPIPHANT_TLS_KEY=/k\n"
    assert secrets_lines(parse_secrets(text, "s")) == b"A=1\nB=2\n"  # the deploy's lines


def test_shipped_examples_still_load() -> None:
    parse(tomllib.loads((MYPRODUCT / "deploy.toml").read_text()), MYPRODUCT / "deploy.toml",
          MYPRODUCT)  # fmt: skip
