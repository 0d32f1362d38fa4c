"""Rendered files: what they say, and that the real tools accept them.

nginx -t runs on the rendered site wrapped in a minimal nginx.conf,
Supervisor's own parser reads the programs, logrotate -d the rotation;
all without connecting anywhere.
"""

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import jinja2
import pytest

from apiphant.app import DEFAULT_MAX_BODY
from apiphant.deploy import commands, render
from apiphant.deploy import layout as layout_module
from apiphant.deploy.config import load, parse
from apiphant.deploy.layout import LOGROTATE
from tests.deploy_helpers import CHECKOUT, fab
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


def test_supervisor_programs_say_what_the_issue_asks() -> None:
    conf = one_host().files["supervisor.conf"]
    assert "[group:" not in conf  # each program its own group: update restarts one at a time
    for port in (8001, 8002):
        assert f"[program:myproduct-api-{port}]" in conf
        assert (
            f"command=/opt/myproduct/current/config/run apiphant myproduct 127.0.0.1:{port} "
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


def test_the_run_launcher_loads_environment_and_secrets(tmp_path: Path) -> None:
    """config/run, with its paths pointed into a temporary folder, starts a program with the
    clear environment, the secrets taken literally, and the release id: the release it
    belongs to, whether started as current/config/run (Supervisor) or from the release
    itself (the release phase, before the switch)."""
    files = one_host().files
    root = tmp_path / "opt"
    release = root / "releases" / RELEASE
    (release / "config").mkdir(parents=True)
    (release / "venv" / "bin").mkdir(parents=True)
    (release / "config" / "environment").write_text(files["environment"])
    (root / "shared").mkdir()
    (root / "shared" / "secrets.env").write_text("TOKEN=a b $(echo no) 'x'\n# c\n\nLAST=1")
    (root / "current").symlink_to(release)
    probe = release / "venv" / "bin" / "probe"
    probe.write_text('#!/bin/sh\necho "$TOKEN|$LAST|$APIPHANT_LOG_LEVEL|$APIPHANT_RELEASE|$*"\n')
    probe.chmod(0o755)
    (release / "config" / "run").write_text(files["run"].replace("/opt/myproduct", str(root)))
    for run in (root / "current" / "config" / "run", release / "config" / "run"):
        done = subprocess.run(["sh", str(run), "probe", "--x", "y z"], capture_output=True,
                              text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"a b $(echo no) 'x'|1|INFO|{RELEASE}|--x y z\n"


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


@needs_nginx
def test_nginx_accepts_the_sites(tmp_path: Path) -> None:
    sites = {"web1": one_host().files["nginx.conf"]}
    sites.update({"front": three_hosts()["front"].files["nginx.conf"]})
    for name, site in sites.items():
        site = site.replace("/var/log/myproduct/", f"{tmp_path}/")
        checked = _nginx_t(tmp_path, site)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"


def test_supervisor_parser_accepts_the_programs(tmp_path: Path) -> None:
    python = commands.SUPERVISOR_PYTHON
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
