"""Rendered files: what they say, and that the real tools accept them.

nginx -t runs on the rendered site wrapped in a minimal nginx.conf,
Supervisor's own parser reads the programs, logrotate -d the rotation;
all without connecting anywhere.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jinja2
import pytest

from apiphant.app import DEFAULT_MAX_BODY
from apiphant.deploy import layout as layout_module
from apiphant.deploy import render
from apiphant.deploy.config import ConfigError, load, parse, parse_secrets, secrets_lines
from apiphant.deploy.host.agents import SUPERVISOR_PYTHON
from apiphant.deploy.layout import LOGROTATE
from tests.deploy_helpers import CHECKOUT, fab, private_nginx
from tests.test_deploy_config import ONE_HOST, THREE_HOSTS

MYPRODUCT = CHECKOUT / "myproduct"
RELEASE = "20260102030405"
WHEEL = "apiphant-1.0.0-py3-none-any.whl"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def one_host() -> render.HostFiles:
    config = load(MYPRODUCT / "deploy.toml")
    return render.render_host(config, config.hosts[0], RELEASE, WHEEL)


def three_hosts() -> dict[str, render.HostFiles]:
    config = parse(tomllib.loads(THREE_HOSTS), Path("deploy.toml"), MYPRODUCT)
    return render.render_all(config, config.hosts, RELEASE, WHEEL)


def test_one_host_files_and_links() -> None:
    files = one_host()
    assert set(files.files) == {
        "apt.txt",
        "requirements.txt",
        "environment",
        "logrotate",
        "rotate",
        "supervisor.conf",
        "run",
        "nginx.conf",
        "nginx-main.conf",
    }
    assert files.links == {
        "supervisor.conf": "/etc/supervisor/conf.d/myproduct.conf",
        "nginx.conf": "/etc/nginx/sites-enabled/myproduct.conf",
        "nginx-main.conf": "/etc/nginx/nginx.conf",
    }
    # The link of earlier deploys goes: the system's logrotate would rotate the logs as well.
    assert files.unlinks == ("/etc/logrotate.d/myproduct", "/etc/nginx/sites-enabled/default")
    assert files.mode("run") == 0o755 and files.mode("nginx.conf") == 0o644
    assert files.mode("rotate") == 0o755
    assert set(files.apt) >= {"nginx", "supervisor", "python3-venv", "curl", "logrotate"}


def test_an_nginx_only_front_has_no_python_files() -> None:
    """A front that runs Nginx only runs none of the product's programs: no config/run, no
    requirements, no environment (its smoke test runs from the deployer, through an SSH
    tunnel); only the kit's rotation of its logs, under Supervisor."""
    hosts = three_hosts()
    front = hosts["front"]
    assert set(front.files) == {"apt.txt", "logrotate", "rotate", "supervisor.conf",
                                "nginx.conf", "nginx-main.conf"}  # fmt: skip
    assert front.links == {
        "supervisor.conf": "/etc/supervisor/conf.d/myproduct.conf",
        "nginx.conf": "/etc/nginx/sites-enabled/myproduct.conf",
        "nginx-main.conf": "/etc/nginx/nginx.conf",
    }
    assert "run" in hosts["a"].files and hosts["a"].mode("run") == 0o755


def test_nginx_site_says_what_the_issue_asks() -> None:
    site = one_host().files["nginx.conf"]
    assert f"client_max_body_size {DEFAULT_MAX_BODY};" in site
    assert "proxy_http_version 1.1;" in site
    # Keep-alive to the workers, except for the smoke test's loopback listener: it leaves
    # no idle connection for a worker the next deploy restarts to wait for.
    assert "proxy_set_header Connection $myproduct_upstream_connection;" in site
    assert "map $server_port $myproduct_upstream_connection {\n    8000 close;\n" \
           '    default "";\n}' in site  # fmt: skip
    assert "upstream myproduct_default {" in site and "keepalive 32;" in site
    # The rolling restart's rotation check asks one Nginx process for all of them.
    assert "zone myproduct_default 64k;" in site
    assert "server 127.0.0.1:8001 max_fails=1 fail_timeout=0s;  # web1 myproduct-api-8001" in site
    assert "proxy_read_timeout 60s;" in site and "proxy_connect_timeout 2s;" in site
    assert "access_log /var/log/myproduct/nginx-access.log myproduct_apiphant;" in site
    # Retries: a refused connection always; a request already sent only for /read.
    assert site.count("proxy_next_upstream error timeout;") == 1
    assert "location ~ ^/api/v[0-9]+/.+/read$ {" in site
    assert site.count("proxy_next_upstream error timeout non_idempotent;") == 1
    # Only the configured names; the smoke test has a listener of its own, on loopback.
    assert "server_name api.example.com;" in site
    assert "listen 127.0.0.1:8000;" in site and "localhost" not in site


def test_nginx_is_hardened_for_the_whole_host() -> None:
    """Settings Nginx takes from the http context or a listen socket's default server (the
    header timeout, server tokens) and the catch-all that replaces Debian's default site are
    in the main config the kit owns: sites of two deployments may share a host."""
    site = one_host().files["nginx.conf"]
    main = one_host().files["nginx-main.conf"]
    http = main.partition("\nhttp {")[2]
    for line in ("server_tokens off;", "client_header_timeout 15s;",
                 "reset_timedout_connection on;"):  # fmt: skip
        assert f"\n    {line}\n" in http, line
    assert "\nlimit_conn_zone $binary_remote_addr zone=myproduct_conn:10m;\n" in site
    assert "limit_req_zone" not in site  # off unless configured
    catch_all = http.partition("    server {")[2].partition("\n    }\n")[0]
    assert "listen 80 default_server;" in catch_all and "server_name _;" in catch_all
    assert "return 404 '{\"error\": \"404 Not Found\"}';" in catch_all
    assert "default_server" not in site and "server_tokens" not in site
    assert "    limit_conn myproduct_conn 100;\n    limit_conn_status 429;\n" in site
    assert "error_page 502 @myproduct_502;" in site
    assert "return 429 '{\"error\": \"429 Too Many Requests\"}';" in site
    assert "worker_connections 16384;" in main and "worker_rlimit_nofile 17408;" in main
    assert "include /etc/nginx/sites-enabled/*;" in main


def test_rate_limit_when_configured() -> None:
    config = parse(
        {**tomllib.loads((MYPRODUCT / "deploy.toml").read_text()),
         "nginx": {"limit_req": "5r/s", "limit_req_burst": 3, "limit_conn": 0}},
        MYPRODUCT / "deploy.toml", MYPRODUCT,
    )  # fmt: skip
    site = render.render_host(config, config.hosts[0], RELEASE, WHEEL).files["nginx.conf"]
    assert "limit_req_zone $binary_remote_addr zone=myproduct_req:10m rate=5r/s;" in site
    assert "limit_req zone=myproduct_req burst=3 nodelay;" in site
    assert "limit_conn" not in site


def test_workers_get_the_json_values_limit_of_deploy_toml() -> None:
    from apiphant.request import DEFAULT_MAX_JSON_VALUES
    from tests.test_deploy_config import ONE_HOST, parsed

    assert f" --max-json-values {DEFAULT_MAX_JSON_VALUES} " in one_host().files["supervisor.conf"]
    config = parsed(ONE_HOST + "[api]\nmax_json_values = 250000\n")
    files = render.render_host(config, config.hosts[0], RELEASE, WHEEL).files
    assert " --max-json-values 250000 " in files["supervisor.conf"]


def test_supervisor_programs_say_what_the_issue_asks() -> None:
    conf = one_host().files["supervisor.conf"]
    assert "[group:" not in conf  # each program its own group: update restarts one at a time
    for port in (8001, 8002):
        assert f"[program:myproduct-api-{port}]" in conf
        assert (
            f"command=/opt/myproduct/current/config/run apiphant serve myproduct 127.0.0.1:{port} "
            f"--max-body {DEFAULT_MAX_BODY} " in conf
        )
    for line in (
        "user=myproduct",
        "directory=/opt/myproduct/current",
        "autorestart=true",
        "stopsignal=TERM",
        "stopwaitsecs=15",  # above --drain-timeout 10
        "stdout_logfile=/var/log/myproduct/myproduct-api-8001.log",
        'environment=HOME="/opt/myproduct",USER="myproduct"',
    ):
        assert line in conf
    assert "--drain-timeout 10 --drain-idle-grace 2" in conf
    assert "[program:myproduct-background]" in conf
    assert (
        "command=/opt/myproduct/current/config/run apiphant-background myproduct --stop-timeout 10"
        in conf
    )
    assert RELEASE not in conf, "the Supervisor config must not change from release to release"


def test_release_specific_files() -> None:
    files = one_host().files
    assert f"/opt/myproduct/releases/{RELEASE}/wheels/{WHEEL}\n" in files["requirements.txt"]
    assert "APIPHANT_LOG_LEVEL=INFO\nSENTRY_ENVIRONMENT=production\n" in files["environment"]
    for name in ("nginx.conf", "supervisor.conf", "logrotate", "run"):
        assert RELEASE not in files[name]
    assert "kill -USR2" in files["logrotate"] and "kill -USR1" in files["logrotate"]


def test_templates_fail_on_unknown_names(tmp_path: Path) -> None:
    (tmp_path / "x.j2").write_text("{{ product }} {{ prodcut }}")
    env = render.environment()
    env.loader = jinja2.FileSystemLoader(str(tmp_path))
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("x.j2").render(product="p")


def test_product_requirements_are_installed(tmp_path: Path) -> None:
    product = tmp_path / "myproduct"
    shutil.copytree(MYPRODUCT, product, ignore=shutil.ignore_patterns("__pycache__"))
    (product / "requirements.txt").write_text("# ours\nrequests-toolbelt>=1.0  # uploads\n\n")
    config = load(product / "deploy.toml")
    text = render.render_host(config, config.hosts[0], RELEASE, WHEEL).files["requirements.txt"]
    assert text.splitlines()[-1] == "requests-toolbelt>=1.0"


def test_a_product_overrides_one_template(tmp_path: Path) -> None:
    """A template under the product's deploy/templates/ replaces the kit's of the same name,
    extends nothing else, and `fab render` says which came from the product."""
    product = tmp_path / "myproduct"
    shutil.copytree(MYPRODUCT, product, ignore=shutil.ignore_patterns("__pycache__"))
    own = product / render.OVERRIDES
    own.mkdir(parents=True)
    (own / "logrotate.j2").write_text("{{ paths.logs }}/*.log {\n    weekly\n}\n")
    (own / "notes.j2").write_text("not a kit template: ignored\n")
    config = load(product / "deploy.toml")
    files = render.render_host(config, config.hosts[0], RELEASE, WHEEL).files
    assert files["logrotate"] == f"{config.layout.logs}/*.log {{\n    weekly\n}}\n"
    assert files["nginx.conf"] == one_host().files["nginx.conf"]
    assert render.overridden(config) == ["logrotate.j2"]
    done = fab("render", f"--product={product}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{config.layout.logs}/*.log {{\n    weekly\n}}" in done.stdout
    assert "templates from the product (deploy/templates/): logrotate.j2" in done.stdout


def lay_out_release(tmp_path: Path, secrets: bytes) -> tuple[Path, Path]:
    """A release folder with its config/run and environment as rendered, and ``secrets`` as
    the deploy writes them into it; ``current`` points at it. Returns (root, release)."""
    files = one_host().files
    root = tmp_path / "opt"
    release = root / "releases" / RELEASE
    (release / "config").mkdir(parents=True)
    (release / "venv" / "bin").mkdir(parents=True)
    (release / "config" / "environment").write_text(files["environment"])
    (release / "config" / "secrets.env").write_bytes(secrets)
    (release / "config" / "run").write_text(files["run"].replace("/opt/myproduct", str(root)))
    (root / "current").symlink_to(release)
    return root, release


def test_the_run_launcher_loads_environment_and_secrets(tmp_path: Path) -> None:
    """config/run, with its paths pointed into a temporary folder, starts a program with the
    clear environment, the release's secrets taken literally, and the release id: the
    release it belongs to, whether started as current/config/run (Supervisor) or from the
    release itself (the release phase, before the switch)."""
    text = "TOKEN=a b $(echo no) 'x'\n# c\n\nLAST=1"
    root, release = lay_out_release(tmp_path, secrets_lines(parse_secrets(text, "s")))
    probe = release / "venv" / "bin" / "probe"
    probe.write_text('#!/bin/sh\necho "$TOKEN|$LAST|$APIPHANT_LOG_LEVEL|$APIPHANT_RELEASE|$*"\n')
    probe.chmod(0o755)
    for run in (root / "current" / "config" / "run", release / "config" / "run"):
        done = subprocess.run(["sh", str(run), "probe", "--x", "y z"], capture_output=True,
                              text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"a b $(echo no) 'x'|1|INFO|{RELEASE}|--x y z\n"


#: A secrets file as people write them: blank and whitespace-only lines (one that stopped
#: every program once), comments, indented ones, values with blanks, quotes inside, shell
#: syntax, equals signs, a hash, backslashes, tabs, non-ASCII, an empty value; no end of line.
SECRETS_FILE = (
    "# production\n"
    "   \n"
    "\t\n"
    "  # an indented comment\n"
    "TOKEN=a b  \n"
    "DSN=https://k:p@o.example/1?a=b&c=d\n"
    "SHELL_LIKE=$(id) `id` ${HOME} $HOME \\n \\\n"
    "QUOTES=it's \"fine\"\n"
    "HASH=#not a comment\n"
    "TAB=a\tb\n"
    "EMPTY=\n"
    "UNICODE=süß ✓\n"
    "\n"
    "TOKEN=the last one counts\n"
    "LAST=no newline"
)


def test_the_launcher_loads_exactly_what_the_checker_parsed(tmp_path: Path) -> None:
    """One parser for the secrets file: the deploy checks it with ``parse_secrets`` and
    writes the release's copy with ``secrets_lines``; the launcher on the host loads that
    copy. Every line the checker accepts reaches the program as the checker read it, and
    no line it accepts (a whitespace-only one) stops the launcher under ``set -eu``."""
    pairs = parse_secrets(SECRETS_FILE, "secrets file s")
    assert [k for k, _ in pairs] == ["TOKEN", "DSN", "SHELL_LIKE", "QUOTES", "HASH", "TAB",
                                     "EMPTY", "UNICODE", "TOKEN", "LAST"]  # fmt: skip
    root, release = lay_out_release(tmp_path, secrets_lines(pairs))
    probe = release / "venv" / "bin" / "probe"
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    probe.write_text(f"#!/bin/sh\nexec {sys.executable} -c '{dump}'\n")
    probe.chmod(0o755)
    run = root / "current" / "config" / "run"
    done = subprocess.run(["sh", str(run), "probe"], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"]})  # fmt: skip
    assert done.returncode == 0, done.stderr
    environ = json.loads(done.stdout)
    assert {k: environ.get(k) for k, _ in pairs} == dict(pairs)


def _nginx_t(tmp_path: Path, site: str) -> subprocess.CompletedProcess:
    """nginx -t on a site file inside a minimal nginx.conf (a lone site cannot be tested)."""
    (tmp_path / "site.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{ include {tmp_path}/site.conf; }}\n"
    )
    return subprocess.run(
        [
            NGINX,
            "-t",
            "-q",
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "error.log"),
            "-c",
            str(conf),
        ],
        capture_output=True,
        text=True,
    )


needs_nginx = pytest.mark.skipif(not os.path.exists(NGINX), reason="needs nginx")


def _nginx_t_host(tmp_path: Path, main: str, sites: dict[str, str]) -> subprocess.CompletedProcess:
    """nginx -t on a rendered nginx-main.conf with the rendered ``sites`` as the only sites,
    as a host has them; system paths moved into ``tmp_path`` (deploy_helpers.private_nginx)."""
    folder = tmp_path / "host"
    (folder / "sites").mkdir(parents=True, exist_ok=True)
    for name, site in sites.items():
        (folder / "sites" / name).write_text(re.sub(r"/var/log/[^/ ]+/", f"{folder}/", site))
    conf = folder / "nginx.conf"
    conf.write_text(private_nginx(main, folder, folder / "sites" / "*"))
    return subprocess.run([NGINX, "-t", "-q", "-p", str(folder), "-e", str(folder / "error.log"),
                           "-c", str(conf)], capture_output=True, text=True)  # fmt: skip


@needs_nginx
def test_fractional_nginx_timeouts_render_in_milliseconds(tmp_path: Path) -> None:
    """Nginx takes no fraction of a second ("0.5s" fails nginx -t): whole seconds stay "15s",
    anything else is rendered in milliseconds, and real nginx -t accepts the main config and
    the site; less than a millisecond is refused in one line."""
    timeouts = {"connect_timeout": 0.5, "read_timeout": 2.25, "send_timeout": 1.5,
                "client_timeout": 0.75, "keepalive_timeout": 30,
                "upstream_keepalive_timeout": 0.25}  # fmt: skip
    data = tomllib.loads((MYPRODUCT / "deploy.toml").read_text())
    config = parse({**data, "nginx": timeouts}, MYPRODUCT / "deploy.toml", MYPRODUCT)
    files = render.render_host(config, config.hosts[0], RELEASE, WHEEL).files
    site, main = files["nginx.conf"], files["nginx-main.conf"]
    for line in ("proxy_connect_timeout 500ms;", "proxy_read_timeout 2250ms;",
                 "proxy_send_timeout 1500ms;", "send_timeout 1500ms;",
                 "client_body_timeout 750ms;", "keepalive_timeout 30s;",
                 "keepalive_timeout 250ms;", "fail_timeout=0s;"):  # fmt: skip
        assert line in site, line
    assert "client_header_timeout 750ms;" in main
    checked = _nginx_t_host(tmp_path, main, {"myproduct.conf": site})
    assert checked.returncode == 0, checked.stderr
    with pytest.raises(ConfigError) as caught:
        parse({**data, "nginx": {"read_timeout": 0.0004}}, MYPRODUCT / "deploy.toml", MYPRODUCT)
    assert str(caught.value) == ("deploy.toml: nginx.read_timeout: expected at least 0.001 "
                                 "seconds (Nginx counts milliseconds), got 0.0004")  # fmt: skip


@needs_nginx
def test_nginx_accepts_the_sites(tmp_path: Path) -> None:
    sites = {"web1": one_host().files["nginx.conf"]}
    sites.update({"front": three_hosts()["front"].files["nginx.conf"]})
    for name, site in sites.items():
        site = site.replace("/var/log/myproduct/", f"{tmp_path}/")
        checked = _nginx_t(tmp_path, site)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"


def test_supervisor_parser_accepts_the_programs(tmp_path: Path) -> None:
    python = SUPERVISOR_PYTHON
    if subprocess.run([python, "-c", "import supervisor"], capture_output=True).returncode:
        pytest.skip("needs Debian's supervisor")
    for name, files in {"web1": one_host(), **three_hosts()}.items():
        if "supervisor.conf" not in files.files:
            continue
        # Supervisor checks that the user and the log folder exist: the deploy makes both
        # before its own check.
        text = files.files["supervisor.conf"].replace("user=myproduct", "user=nobody")
        text = text.replace("/var/log/myproduct/", f"{tmp_path}/")
        (tmp_path / f"{name}.conf").write_text(text)
        main = tmp_path / "supervisord.conf"
        main.write_text(f"[supervisord]\n[include]\nfiles = {tmp_path}/{name}.conf\n")
        code = (
            "import sys; from supervisor.options import ServerOptions; o = ServerOptions(); "
            "o.realize(['-c', sys.argv[1]]); "
            "print(' '.join(sorted(g.name for g in o.process_group_configs)))"
        )
        done = subprocess.run([python, "-c", code, str(main)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        expected = {
            "web1": "myproduct-api-8001 myproduct-api-8002 myproduct-background",
            "front": "",
            "a": "myproduct-api-8001 myproduct-api-8002",
            "b": "myproduct-api-9000 myproduct-api-9001 myproduct-api-9002",
        }
        expected = {k: f"{v} myproduct-logrotate".lstrip() for k, v in expected.items()}
        assert done.stdout.strip() == expected[name]


@pytest.mark.skipif(not shutil.which("logrotate"), reason="needs logrotate")
def test_logrotate_accepts_the_rotation(tmp_path: Path) -> None:
    conf = tmp_path / "myproduct"
    conf.write_text(one_host().files["logrotate"])
    done = subprocess.run(
        ["logrotate", "-d", "-s", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "rotating pattern: /var/log/myproduct/*.log" in done.stderr


# One main Nginx config for every deployment on a host (apiphant.deploy.hostwide)

STAGING = {"server_names": ["staging.example.com"],
           "nginx": {"listen": "127.0.0.1:8080", "local_port": 8100},
           "hosts": {"web1": {"first_port": 9001}}}  # fmt: skip


def _deployment(env: str, over: dict, top: dict | None = None):
    from apiphant.deploy.config import merge

    data = merge(tomllib.loads((MYPRODUCT / "deploy.toml").read_text()), over)
    return parse({**data, **(top or {})}, MYPRODUCT / "deploy.toml", MYPRODUCT, env)


def _host_answer(etc: Path) -> str:
    """The deploy's question (hostwide.question) asked of a host whose /etc/nginx is ``etc``:
    the same shell, its two paths moved."""
    from apiphant.deploy.hostwide import question
    from apiphant.deploy.layout import NGINX_CONF, NGINX_SITES

    command = question().replace(NGINX_CONF, str(etc / "nginx.conf"))
    command = command.replace(NGINX_SITES, str(etc / "sites-enabled"))
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.replace(str(etc / "sites-enabled"), NGINX_SITES)


@needs_nginx
def test_deployments_on_one_host_share_what_its_main_nginx_config_serves(tmp_path: Path) -> None:
    """Production (TLS on 443, 20,000 connections) and staging (plain, its own port) on one
    host: whichever deploys last renders a main config with both catch-all servers, the TLS
    one, the larger sizing and both record lines, read from the live one on the host; real
    nginx -t accepts it with both sites. A deployment whose site is gone is dropped."""
    from apiphant.deploy import hostwide

    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=api.example.com"],
                   check=True, capture_output=True)  # fmt: skip
    production = _deployment("production", {"nginx": {"worker_connections": 20000}},
                             {"tls": "acme", "domains": ["api.example.com"],
                              "acme_email": "ops@example.com"})  # fmt: skip
    staging = _deployment("staging", STAGING)
    etc = tmp_path / "etc"
    (etc / "sites-enabled").mkdir(parents=True)

    def deploy(config) -> dict[str, str]:
        """What a deploy to web1 renders, given the host as it is; then the host as the
        deploy leaves it: its main config and its site live."""
        answer = _host_answer(etc)
        others = hostwide.others_on("web1", answer, config.layout.name)
        files = render.render_host(config, config.hosts[0], RELEASE, WHEEL,
                                   neighbours=others).files  # fmt: skip
        (etc / "nginx.conf").write_text(files["nginx-main.conf"])
        site = files["nginx.conf"].replace(production.layout.acme_fullchain, str(cert))
        site = site.replace(production.layout.acme_chain, str(cert))
        site = site.replace(production.layout.acme_key, str(key))
        (etc / "sites-enabled" / Path(config.layout.site).name).write_text(site)
        return files

    first = deploy(production)["nginx-main.conf"]
    assert "\n# apiphant-deployment myproduct worker_connections=20000 client_timeout_ms=15000 " \
           "listen=80 tls_listen=443 local_port=8000\n" in first  # fmt: skip
    for main in (deploy(staging)["nginx-main.conf"], deploy(production)["nginx-main.conf"]):
        http = main.partition("\nhttp {")[2]
        for line in ("listen 80 default_server;", "listen 127.0.0.1:8080 default_server;",
                     "listen 443 ssl http2 default_server;"):  # fmt: skip
            assert http.count(line) == 1, line
        assert "worker_connections 20000;" in main and "worker_rlimit_nofile 21024;" in main
        assert "# apiphant-deployment myproduct-staging worker_connections=16384 " \
               "client_timeout_ms=15000 listen=127.0.0.1:8080 tls_listen=- local_port=8100\n" \
               in main  # fmt: skip
        assert "# apiphant-deployment myproduct worker_connections=20000 " in main
        sites = {p.name: p.read_text() for p in (etc / "sites-enabled").iterdir()}
        checked = _nginx_t_host(tmp_path, main, sites)
        assert checked.returncode == 0, checked.stderr

    (etc / "sites-enabled" / "myproduct-staging.conf").unlink()  # staging gone from the host
    alone = deploy(production)["nginx-main.conf"]
    assert "myproduct-staging" not in alone and "127.0.0.1:8080" not in alone
    assert hostwide.others_on("web1", _host_answer(etc), "myproduct-staging") == (
        hostwide.Needs("myproduct", 20000, 15.0, "80", "443", 8000),)


@pytest.mark.parametrize(
    "over, message",
    [
        ({"nginx": {"client_timeout": 5}},
         "web1: nginx.client_timeout: myproduct-staging has 5s, myproduct on the same host has "
         "15s: the host's Nginx reads every request's head with one value; give both the same"),
        ({"nginx": {"local_port": 8000}},
         "web1: nginx.local_port: myproduct-staging has 127.0.0.1:8000, which myproduct on the "
         "same host has as its nginx.local_port: each deployment on a host needs its own "
         "local_port"),
        ({"nginx": {"listen": "443"}},
         "web1: nginx.listen: myproduct-staging has 443, which myproduct on the same host has "
         "as its nginx.tls_listen: one socket cannot serve both plain HTTP and TLS"),
    ],
    ids=["header-timeout", "local-port", "plain-and-tls"],
)
def test_a_conflict_between_deployments_on_one_host_is_one_line(over: dict, message: str) -> None:
    from apiphant.deploy import hostwide
    from apiphant.deploy.config import merge

    production = hostwide.Needs("myproduct", 16384, 15.0, "80", "443", 8000)
    staging = _deployment("staging", merge(STAGING, over))
    own = hostwide.Needs.of(staging)
    with pytest.raises(ConfigError) as caught:
        hostwide.merge("web1", own, [production])
    assert str(caught.value) == message
    with pytest.raises(ConfigError):  # the renderer refuses it too
        render.render_host(staging, staging.hosts[0], RELEASE, WHEEL, neighbours=(production,))
    # The same listen for both, plainly, and more connections for one: merged.
    same = hostwide.merge("web1", hostwide.Needs.of(_deployment("staging", STAGING)),
                          [production, hostwide.Needs("other", 30000, 15.0, "127.0.0.1:8080",
                                                      "", 8200)])  # fmt: skip
    assert same.listens == ["127.0.0.1:8080", "80"] and same.tls_listens == ["443"]
    assert same.worker_connections == 30000


def test_a_record_the_kit_cannot_read_is_refused_in_one_line() -> None:
    from apiphant.deploy import hostwide

    answer = ("# apiphant-deployment shop worker_connections=1; include /x\n"
              "site /etc/nginx/sites-enabled/shop.conf\n")  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        hostwide.others_on("web1", answer, "shop-staging")
    assert str(caught.value).startswith(
        "web1: /etc/nginx/nginx.conf: a line the deploy kit cannot read: "
        "'# apiphant-deployment shop worker_connections=1; include /x'")
    assert hostwide.others_on("web1", "", "shop") == ()  # Debian's own nginx.conf: no one


def test_every_host_rotates_its_logs_by_a_supervised_logrotate() -> None:
    """No cron or systemd timer needed: a Supervisor program of root's runs config/rotate,
    which runs logrotate with the deployment's own state file every [logs] check_every, on
    every host (an Nginx-only front too); a log rotates daily or past [logs] max_size."""
    text = THREE_HOSTS + "\n[logs]\nmax_size = '64K'\ncheck_every = 30\n"
    config = parse(tomllib.loads(text), Path("deploy.toml"), MYPRODUCT)
    for host in config.hosts:
        files = render.render_host(config, host, RELEASE, WHEEL).files
        program = files["supervisor.conf"].partition("[program:myproduct-logrotate]\n")[2]
        assert program, host.name
        assert "\ncommand=/opt/myproduct/current/config/rotate --loop 30\n" in program
        assert "\nuser=root\n" in program
        assert "\nstdout_logfile=/var/log/myproduct/myproduct-logrotate.log\n" in program
        assert ("/usr/sbin/logrotate -s /opt/myproduct/shared/logrotate.state "
                "/opt/myproduct/current/config/logrotate") in files["rotate"]  # fmt: skip
        rotation = files["logrotate"]
        assert "\n    daily\n    maxsize 65536\n" in rotation
        assert "kill -USR2" in rotation and ("kill -USR1" in rotation) == host.has("nginx")
        # Rotated by renaming, never copied and truncated (which loses what is written
        # between the copy and the truncation); the renamed file is compressed one
        # rotation later, once its daemon has reopened its log.
        assert "copytruncate" not in rotation and "\n    delaycompress\n" in rotation


@pytest.mark.skipif(os.geteuid() != 0 or not Path(LOGROTATE).exists(),
                    reason="needs root and logrotate")  # fmt: skip
def test_two_environments_on_one_host_rotate_only_their_own_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production and staging on one host: each one's rendered config/rotate, run for real
    (logrotate, in a folder of the test's), rotates its own logs once, by its own state
    file, and never the other's; running it again rotates nothing twice."""
    monkeypatch.setattr(layout_module, "ROOT", str(tmp_path / "opt"))
    monkeypatch.setattr(layout_module, "LOG_ROOT", str(tmp_path / "log"))
    # No daemon of this machine is signalled: the test hosts' test does that part.
    monkeypatch.setattr(render, "SUPERVISOR_PIDFILE", str(tmp_path / "supervisord.pid"))
    monkeypatch.setattr(render, "NGINX_PIDFILE", str(tmp_path / "nginx.pid"))
    text = ONE_HOST + "\n[logs]\nmax_size = '1K'\n"
    layouts, scripts = {}, {}
    for env in ("production", "staging"):
        config = parse(tomllib.loads(text), Path("deploy.toml"), MYPRODUCT, env)
        layout = config.layout
        files = render.render_host(config, config.hosts[0], RELEASE, WHEEL)
        paths = layout.release(RELEASE)
        Path(paths.config).mkdir(parents=True)
        for name, body in files.files.items():
            Path(paths.config, name).write_text(body)
            Path(paths.config, name).chmod(files.mode(name))
        Path(layout.current).symlink_to(paths.dir)
        Path(layout.shared).mkdir()
        Path(layout.logs).mkdir(parents=True, mode=0o750)
        Path(layout.log("p")).write_text(f"{env}\n" * 400)  # past 1K
        layouts[env], scripts[env] = layout, f"{layout.current_config}/rotate"
    production, staging = layouts["production"], layouts["staging"]
    assert production.logs != staging.logs and production.rotator != staging.rotator
    assert production.logrotate_state != staging.logrotate_state

    def rotated(layout) -> list[str]:
        return sorted(p.name for p in Path(layout.logs).iterdir())

    def run(env: str) -> None:
        done = subprocess.run([scripts[env]], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

    run("production")
    assert rotated(production) == ["p.log.1"]
    assert rotated(staging) == ["p.log"]
    assert Path(staging.logrotate_state).exists() is False
    assert staging.logs + "/" not in Path(production.logrotate_state).read_text()
    run("staging")
    run("production")
    assert rotated(production) == ["p.log.1"] and rotated(staging) == ["p.log.1"]
    assert Path(production.log("p") + ".1").read_text() == "production\n" * 400
    assert Path(staging.log("p") + ".1").read_text() == "staging\n" * 400
    assert production.logs + "/" not in Path(staging.logrotate_state).read_text()
