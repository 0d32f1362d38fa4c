"""Security promises not checked elsewhere (see RELIABILITY.md for the whole list).

- Workers bind loopback or a private address, and run as the product's own user.
- A 500 says nothing of the exception: no message, no path, no secret.
- The secrets never reach a rendered (world-readable) file or the release tarball.
- Names, hosts and paths that could inject shell or config are refused; and were one
  to slip through, every command the deploy sends still quotes it (checked by running
  every command of a plan built with hostile names, with nothing on PATH).
"""

import dataclasses
import os
import re
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
import requests

from apiphant.deploy import layout as layout_module
from apiphant.deploy import plan, render
from apiphant.deploy.artifacts import build_tarball
from apiphant.deploy.config import Config, ConfigError, load, parse
from apiphant.deploy.host import agents as host_agents
from apiphant.deploy.host.releases import current_release, releases
from apiphant.deploy.host.uploads import upload_commands
from tests.deploy_helpers import CHECKOUT, fab
from tests.servers import serving
from tests.test_deploy_config import ONE_HOST, THREE_HOSTS

MYPRODUCT = CHECKOUT / "myproduct"
RELEASE = "20260102030405"
WHEEL = "apiphant-1.0.0-py3-none-any.whl"
SECRET = "hunter2-sekret-9931"
BASH = shutil.which("bash") or "/bin/bash"


def parsed(text: str, product_dir: Path = MYPRODUCT) -> Config:
    return parse(tomllib.loads(text), Path("deploy.toml"), product_dir)


def refused(text: str, product_dir: Path = MYPRODUCT) -> str:
    with pytest.raises(ConfigError) as caught:
        parsed(text, product_dir)
    return str(caught.value)


# Where workers listen, and as whom


@pytest.mark.parametrize(
    "address", ["0.0.0.0", "::", "8.8.8.8", "2001:4860:4860::8888", "224.0.0.1", "255.255.255.255"]
)
def test_workers_never_bind_a_public_or_wildcard_address(address: str) -> None:
    text = THREE_HOSTS.replace('private_address = "10.0.0.12"', f'private_address = "{address}"')
    message = refused(text)
    assert message.startswith("deploy.toml: hosts.b.private_address: expected a private address")


@pytest.mark.parametrize("address", ["10.0.0.12", "172.16.5.4", "192.168.1.2", "fd00::12"])
def test_private_addresses_are_bound(address: str) -> None:
    text = THREE_HOSTS.replace('private_address = "10.0.0.12"', f'private_address = "{address}"')
    config = parsed(text)
    assert {w.bind for w in config.workers(config.host("b"))} == {address}
    assert {w.bind for w in config.workers(config.host("a"))} == {"10.0.0.11"}


@pytest.mark.parametrize(
    "name",
    ["root", "daemon", "bin", "nobody", "sshd", "mail",
     "postgres", "redis", "mysql", "nginx", "mariadb", "memcache", "docker", "ubuntu"],
)  # fmt: skip
def test_a_product_named_after_a_system_account_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / name / "api").mkdir(parents=True)
    message = refused(ONE_HOST.replace('"myproduct"', f'"{name}"'), tmp_path / name)
    assert message.startswith("deploy.toml: product: expected a name that is not a system")


def test_every_program_runs_as_the_product_user_never_root() -> None:
    config = parsed(THREE_HOSTS.replace('roles = ["api"]\n', 'roles = ["api", "background"]\n', 1))
    seen = 0
    for host in config.hosts:
        files = render.render_host(config, host, RELEASE, WHEEL)
        text = files.files.get("supervisor.conf", "")
        for section in re.split(r"^(?=\[program:)", text, flags=re.M)[1:]:
            users = re.findall(r"^user=(.*)$", section, flags=re.M)
            if section.startswith("[program:myproduct-logrotate]"):
                # The kit's log rotation renames root's logs and signals root's daemons; it
                # runs only the release's root-owned files, none the product user can change.
                assert users == ["root"], section
                assert "\ncommand=/opt/myproduct/current/config/rotate --loop " in section
                continue
            assert users == ["myproduct"], section
            seen += 1
    assert seen == 6  # a: 2 workers + background; b: 3 workers


def test_nginx_bounds_headers_and_bodies_in_time_and_size() -> None:
    text = ONE_HOST + '[api]\nmax_body = "256K"\n[nginx]\nclient_timeout = 7\nsend_timeout = 9\n'
    config = parsed(text)
    files = render.render_host(config, config.hosts[0], RELEASE, WHEEL).files
    for line in (
        "client_max_body_size 262144;",  # the app's own limit: the workers' --max-body
        "client_body_timeout 7s;",
        "send_timeout 9s;",
    ):
        assert f"    {line}\n" in files["nginx.conf"], line
    # Header timeouts and tokens: the http context (Nginx takes them from the default server).
    for line in ("server_tokens off;", "client_header_timeout 7s;"):
        assert f"\n    {line}\n" in files["nginx-main.conf"], line
    assert files["supervisor.conf"].count("--max-body 262144 ") == 2


# 500 answers

HANDLERS = {
    "api/v0/fail.py": f"""
        import errno
        from pathlib import Path
        from apiphant.hatches import raw_environ, raw_response

        SECRET = "{SECRET}"


        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("/srv/app/" + SECRET)


        def read(request):
            how = request.how
            if how == "message":
                raise RuntimeError("cannot open /srv/app/db.sqlite with password " + SECRET)
            if how == "key":
                return {{}}[SECRET]
            if how == "oserror":
                raise OSError(errno.ENOENT, "No such file or directory", "/srv/app/" + SECRET)
            if how == "unprintable":
                raise Unprintable()
            if how == "unencodable":
                return {{"path": Path("/srv/app/" + SECRET)}}
            if how == "chained":
                try:
                    raise ValueError(SECRET)
                except ValueError as error:
                    raise LookupError("/srv/app/config.toml") from error
            if how == "recursion":
                return read(request)
            return {{"ok": True}}


        @raw_environ
        def create(environ):
            raise PermissionError(13, "Permission denied", "/srv/app/" + SECRET)


        @raw_response
        def update(request, start_response):
            def body():
                raise RuntimeError("/srv/app/" + SECRET)
                yield b""
            start_response("200 OK", [("Content-Type", "application/json")])
            return body()
    """,
}


@pytest.mark.parametrize(
    ("action", "how"),
    [
        ("read", "message"),
        ("read", "key"),
        ("read", "oserror"),
        ("read", "unprintable"),
        ("read", "unencodable"),
        ("read", "chained"),
        ("read", "recursion"),
        ("create", ""),
        ("update", ""),
    ],
)
def test_a_500_says_nothing_of_the_exception(make_product, tmp_path, action, how) -> None:
    product = make_product(HANDLERS)
    with serving(product, tmp_path) as live:
        url = f"{live.url}/api/v0/fail/{action}"
        answer = requests.post(url, json={"how": how}, timeout=10)
        assert answer.status_code == 500
        body = answer.content
        for leak in (SECRET.encode(), b"/srv", b"Traceback", b"Error:", b"errno", b".py"):
            assert leak not in body, body
        assert body in (b'{"error": "500 Internal Server Error"}', b"Internal Server Error")
        # The worker goes on serving, and the details are in its log, for its owner.
        ok = requests.post(f"{live.url}/api/v0/fail/read", json={"how": "fine"}, timeout=10)
        assert ok.json() == {"ok": True}
    assert "Traceback" in live.log()


# Secrets


def _with_secrets(tmp_path: Path, inside_product: bool = False) -> tuple[Path, Path]:
    """A copy of myproduct whose deploy.toml names a secrets file."""
    product = tmp_path / "myproduct"
    if not product.exists():
        shutil.copytree(MYPRODUCT, product, ignore=shutil.ignore_patterns("__pycache__"))
    secrets = (product / "keys.txt") if inside_product else (tmp_path / "prod.secrets.env")
    secrets.write_text(f"API_TOKEN={SECRET}\n")
    secrets.chmod(0o600)
    config = product / "deploy.toml"
    config.write_text(
        (MYPRODUCT / "deploy.toml")
        .read_text()
        .replace('# secrets = "~/.config/apiphant/myproduct.secrets.env"', f'secrets = "{secrets}"')
    )
    return product, secrets


def test_secrets_are_in_no_rendered_file(tmp_path: Path) -> None:
    product, secrets = _with_secrets(tmp_path)
    out = tmp_path / "rendered"
    done = fab("render", f"--product={product}", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert SECRET not in done.stdout + done.stderr
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) == 9
    for path in written:
        assert SECRET not in path.read_text(), path
        assert "API_TOKEN" not in path.read_text(), path
    # Only the launcher names the secrets file: it reads it when a program starts.
    naming = sorted(p.name for p in written if "secrets.env" in p.read_text())
    assert naming == ["environment", "run"]  # environment: a comment saying where they are
    assert '"$release/config/secrets.env"' in (out / "web1" / "run").read_text()


def test_secrets_are_never_packed_into_the_release(tmp_path: Path) -> None:
    """A secrets file kept inside the product folder, under any name, stays out of the
    tarball; so do *.secrets.env and .env files."""
    product, secrets = _with_secrets(tmp_path, inside_product=True)
    (product / "other.secrets.env").write_text(f"X={SECRET}\n")
    (product / "api" / ".env").write_text(f"X={SECRET}\n")
    config = load(product / "deploy.toml")
    assert config.secrets == secrets
    wheel = tmp_path / WHEEL
    wheel.write_bytes(b"not really a wheel")
    work = tmp_path / "work"
    work.mkdir()
    tarball = build_tarball(config, RELEASE, wheel, work)
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
        assert "myproduct/api/v0/echo.py" in names
        for member in archive.getmembers():
            assert not member.name.endswith(("keys.txt", ".secrets.env", ".env")), member.name
            if member.isfile():
                assert SECRET.encode() not in archive.extractfile(member).read(), member.name


# Injection


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('"myproduct"', '"myproduct;id"'), "product"),
        (('"api.example.com"', '"api.example.com; return 200"'), "server_names"),
        (('"api.example.com"', '"$host"'), "server_names"),
        (('"root@203.0.113.10"', '"-oProxyCommand=touch /tmp/x"'), "hosts.web1.ssh"),
        (('"root@203.0.113.10"', '"root@203.0.113.10 -p 22"'), "hosts.web1.ssh"),
        (('roles = ["nginx", "api"]', 'roles = ["nginx", "api"]\nprivate_address = "10.0.0.1;id"'),
         "hosts.web1.private_address"),
        (('[hosts.web1]', 'python = "/usr/bin/python3 -c id"\n[hosts.web1]'), "python"),
        (('[hosts.web1]', 'python = "/usr/bin/$(id)"\n[hosts.web1]'), "python"),
        (('[hosts.web1]', '[nginx]\nlisten = "80; include /etc/passwd"\n[hosts.web1]'),
         "nginx.listen"),
        (('[hosts.web1]', '[environment]\n"A;B" = "x"\n[hosts.web1]'), "environment.A;B"),
        (('[hosts.web1]', '[environment]\nA = "x\\ny=z"\n[hosts.web1]'), "environment.A"),
    ],
)  # fmt: skip
def test_names_that_could_inject_are_refused(change: tuple[str, str], key: str) -> None:
    old, new = change
    assert old in ONE_HOST
    assert f"deploy.toml: {key}: " in refused(ONE_HOST.replace(old, new, 1))


def test_environment_values_are_taken_literally(tmp_path: Path) -> None:
    """Shell in an [environment] value is never run: config/run exports it as text, and
    it is in no file a shell or Supervisor parses."""
    canary = tmp_path / "INJECTED"
    value = f"$(touch {canary})`touch {canary}`;touch {canary} \"%(ENV_HOME)s' $HOME"
    text = ONE_HOST.replace("[hosts.web1]", f"[environment]\nODD = '''{value}'''\n[hosts.web1]")
    config = parsed(text)
    files = render.render_host(config, config.hosts[0], RELEASE, WHEEL).files
    assert f"ODD={value}\n" in files["environment"]
    for name in ("supervisor.conf", "nginx.conf", "run", "logrotate"):
        assert canary.name not in files[name], name
    root = tmp_path / "opt"
    release = root / "releases" / RELEASE
    (release / "config").mkdir(parents=True)
    (release / "venv" / "bin").mkdir(parents=True)
    (release / "config" / "environment").write_text(files["environment"])
    (root / "current").symlink_to(release)
    probe = release / "venv" / "bin" / "probe"
    probe.write_text('#!/bin/sh\nprintf "%s" "$ODD"\n')
    probe.chmod(0o755)
    (release / "config" / "run").write_text(files["run"].replace("/opt/myproduct", str(root)))
    run = root / "current" / "config" / "run"  # as Supervisor starts it
    done = subprocess.run(["sh", str(run), "probe"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert done.stdout == value
    assert not canary.exists()


HOSTILE = "x';/usr/bin/touch {c};'\"$(/usr/bin/touch {c})\"`injected {c}`;injected {c} #"


def _hostile_plan(canary: Path) -> tuple[Config, list[str]]:
    """Every command of a deploy, a rollback and the other tasks, for a config whose names
    got past the checks: product, private address and the Python path carrying shell."""
    payload = HOSTILE.format(c=canary)
    base = parsed(THREE_HOSTS.replace('roles = ["api"]\n', 'roles = ["api", "background"]\n', 1))
    hosts = tuple(
        dataclasses.replace(h, private_address=f"10.0.0.9{payload}") if h.private_address else h
        for h in base.hosts
    )
    python = f"/nonexistent/python3{payload}"
    config = dataclasses.replace(base, product=payload, hosts=hosts, python=python)
    chosen = list(config.hosts)
    rendered = render.render_all(config, chosen, RELEASE, WHEEL)
    tarball = Path(f"/tmp/{payload}.tar.gz")
    deploy = plan.deploy_plan(
        config, chosen, RELEASE, tarball, rendered, f"me {payload}", packages="0123456789abcdef"
    )
    back = plan.rollback_plan(config, chosen, {h.name: "20250101000000" for h in chosen})
    found = []
    operator = (
        plan.status_plan(config, chosen)
        + plan.logs_plan(config, chosen, 5, False)
        + plan.unlock_plan(config, chosen)
        + plan.run_plan(config, chosen, f"echo {payload}")
        + plan.maintenance_plan(config, chosen, True)
        + plan.maintenance_plan(config, chosen, False)
        + plan.history_plan(config, chosen, 5)
        + plan.record_steps(config, chosen, f"deploy by {payload}")
    )
    for step in deploy.steps() + back.steps() + list(operator):
        if step.upload:
            stage, install = upload_commands(step.upload, f"/tmp/staged{payload}")
            found += [stage, install]
        else:
            found.append(step.command)
    layout = config.layout
    found += [current_release(layout), releases(layout)]
    return config, found


def test_every_command_quotes_what_it_is_given(tmp_path: Path, monkeypatch) -> None:
    """Run each command of the plan with nothing on PATH: a name not quoted would run the
    payload's commands (`injected`, looked up on PATH: logged by bash's
    command_not_found_handle; /usr/bin/touch: it would create the canary). Neither may
    happen. Nothing else runs: the host paths are moved into the test's folder, and no
    absolute program path exists."""
    monkeypatch.setattr(layout_module, "ROOT", str(tmp_path / "opt"))
    monkeypatch.setattr(layout_module, "LOG_ROOT", str(tmp_path / "log"))
    monkeypatch.setattr(host_agents, "SUPERVISOR_PYTHON", "/nonexistent/python3")
    canary = tmp_path / "CANARY"
    ran = tmp_path / "ran.log"
    config, found = _hostile_plan(canary)
    assert len(found) > 40
    empty = tmp_path / "empty-path"
    empty.mkdir()
    handler = f'command_not_found_handle() {{ printf "%s\\n" "$1" >> {ran}; return 1; }}; '
    for command in found:
        done = subprocess.run(
            [BASH, "--norc", "--noprofile", "-c", handler + command],
            cwd=tmp_path,
            env={"PATH": str(empty), "HOME": str(tmp_path), "LANG": "C"},
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert not canary.exists(), command
        names = ran.read_text().split() if ran.exists() else []
        assert "injected" not in names, command
        assert "syntax error" not in done.stderr, (command, done.stderr)
    # The commands did run: what they called was looked up (and logged) by name.
    assert {"mkdir", "supervisorctl", "curl"} <= set(ran.read_text().split())
    assert os.listdir(tmp_path / "empty-path") == []
