"""The deploy as steps, built from config alone, and the `fab` command line around it."""

import subprocess
import tomllib
from pathlib import Path

import pytest

from apiphant.deploy import plan, render
from apiphant.deploy.argv import flag_names, hosts_as_flags
from apiphant.deploy.config import load, parse
from tests.deploy_helpers import CHECKOUT, fab
from tests.test_deploy_config import THREE_HOSTS

MYPRODUCT = CHECKOUT / "myproduct"
RELEASE = "20260102030405"
#: What the release's virtualenv holds (wheelhouse.packages_key): its shared venv's name.
PACKAGES = "0123456789abcdef"
WHEEL = "apiphant-1.0.0-py3-none-any.whl"


def deploy_plan(config, hosts=None) -> plan.Plan:
    hosts = hosts or list(config.hosts)
    rendered = render.render_all(config, hosts, RELEASE, WHEEL)
    tarball = Path("/tmp/myproduct.tar.gz")
    return plan.deploy_plan(
        config, hosts, RELEASE, tarball, rendered, "me@here since now", packages=PACKAGES
    )


def one_host():
    return load(MYPRODUCT / "deploy.toml")


def three_hosts():
    return parse(tomllib.loads(THREE_HOSTS), Path("deploy.toml"), MYPRODUCT)


def index(steps: list[plan.Step], text: str) -> int:
    return next(i for i, s in enumerate(steps) if text in s.why)


def test_phases_in_order_and_validation_before_the_switch() -> None:
    the_plan = deploy_plan(one_host())
    steps = the_plan.steps()
    assert steps[0].kind == "lock" and "deploy.lock" in steps[-1].command
    switch = next(i for i, s in enumerate(steps) if s.switch)
    for check in ("check: Supervisor", "check: nginx -t", "check: logrotate", "virtualenv"):
        assert index(steps, check) < switch
    assert switch < index(steps, "link configs") < index(steps, "restart myproduct-api-8001")
    assert index(steps, "restart myproduct-api-8001") < index(steps, "restart myproduct-api-8002")
    assert index(steps, "restart myproduct-api-8002") < index(steps, "smoke test")
    assert index(steps, "smoke test") < index(steps, "mark release") < index(steps, "keep the 5")
    assert all(not s.switch for s in the_plan.prepare)
    uploads = [s.upload.remote for s in the_plan.prepare if s.upload]
    assert f"/opt/myproduct/releases/{RELEASE}/config/nginx.conf" in uploads
    assert not any(u.startswith("/etc/") for u in uploads), "nothing live before the switch"


def test_workers_restart_one_at_a_time_without_nginx_reloads() -> None:
    steps = deploy_plan(one_host()).activate
    whys = [s.why for s in steps]
    start = whys.index(f"restart myproduct-api-8001; wait for /health to answer release {RELEASE}")
    assert whys[start:] == [
        f"restart myproduct-api-8001; wait for /health to answer release {RELEASE}",
        "wait 4s: Nginx takes the restarted worker back (fail_timeout 3s) before the next restarts",
        f"restart myproduct-api-8002; wait for /health to answer release {RELEASE}",
        "restart myproduct-background",
        "supervisor: add and remove programs to match the config",
    ]
    for step in steps[start:]:
        # Never a whole-group restart, never an update of every program on the host, and no
        # Nginx reload: that would close busy client connections.
        assert "supervisorctl restart all" not in step.command
        assert "supervisorctl update;" not in step.command
        assert "nginx -s reload" not in step.command
    restart = steps[start]
    assert "supervisorctl restart myproduct-api-8001" in restart.command
    assert "http://127.0.0.1:8001/health" in restart.command
    reload = steps[whys.index("nginx: reload if its config changed, or start")].command
    assert (
        "if cat /opt/myproduct/current/config/nginx-main.conf "
        "/opt/myproduct/current/config/nginx.conf | cmp -s - " in reload
    )


def test_three_hosts_backends_first() -> None:
    config = three_hosts()
    the_plan = deploy_plan(config)
    switches = [s.host for s in the_plan.activate if s.switch]
    assert switches == ["a", "b", "front"]
    restarts = [(s.host, s.why.split(";")[0]) for s in the_plan.activate if "/health" in s.why]
    assert restarts == [
        ("a", "restart myproduct-api-8001"),
        ("a", "restart myproduct-api-8002"),
        ("b", "restart myproduct-api-9000"),
        ("b", "restart myproduct-api-9001"),
        ("b", "restart myproduct-api-9002"),
    ]
    assert [s.host for s in the_plan.verify] == ["front"]
    assert "http://127.0.0.1:80" in the_plan.verify[0].command
    # Deploying only the backends: the smoke test goes to the workers.
    partial = deploy_plan(config, [config.host("b")])
    assert not any(s.why.startswith("nginx:") for s in partial.activate)
    assert "http://10.0.0.12:9000" in partial.verify[0].command


def test_every_command_is_valid_shell() -> None:
    config = three_hosts()
    the_plan = deploy_plan(config)
    back = plan.rollback_plan(
        config, list(config.hosts), {h.name: "<previous>" for h in config.hosts}
    )
    for step in the_plan.steps() + back.steps():
        if step.command:
            checked = subprocess.run(["bash", "-n", "-c", step.command], capture_output=True)
            assert checked.returncode == 0, (step.why, checked.stderr)


def test_secrets_upload_is_private_and_only_where_programs_run(tmp_path: Path) -> None:
    secrets = tmp_path / "s.secrets.env"
    secrets.write_text("TOKEN=hunter2\n")
    text = THREE_HOSTS.replace(
        'server_names = ["api.example.com"]', f'server_names = ["a.b"]\nsecrets = "{secrets}"'
    )
    config = parse(tomllib.loads(text), Path("deploy.toml"), MYPRODUCT)
    uploads = [s for s in deploy_plan(config).prepare if s.upload and s.upload.secret]
    assert [s.host for s in uploads] == ["a", "b"]
    for step in uploads:
        # Readable by the product's programs, not writable by them: its lines become every
        # program's environment (PYTHONPATH and a sitecustomize.py would be code execution).
        assert step.upload.mode == 0o640 and step.upload.owner == "root"
        assert step.upload.group == "myproduct"
        assert step.upload.remote == "/opt/myproduct/shared/secrets.env"
        assert step.upload.content is None and step.upload.local == secrets


def test_rollback_plan_restores_the_previous_release() -> None:
    config = one_host()
    back = plan.rollback_plan(config, list(config.hosts), {"web1": "20250101000000"})
    assert not back.lock and not back.prepare
    assert back.activate[0].switch
    assert (
        "/opt/myproduct/releases/20250101000000 /opt/myproduct/current.new"
        in back.activate[0].command
    )
    assert any('"release": "20250101000000"' in s.command for s in back.activate)
    assert (
        "/opt/myproduct/releases/20250101000000/config/run sh -c 'python myproduct/test.py'"
        in back.verify[0].command
    )


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["deploy", "--product=x", "web1"], ["deploy", "--product=x", "--host", "web1"]),
        (
            ["deploy", "--product", "x", "web1", "web2", "--dry-run"],
            ["deploy", "--product", "x", "--host", "web1", "--host", "web2", "--dry-run"],
        ),
        (["deploy", "--product=x"], ["deploy", "--product=x"]),
        (
            ["logs", "--lines", "5", "web1", "-i", "k"],
            ["logs", "--lines", "5", "--host", "web1", "-i", "k"],
        ),
        (["render", "a", "status", "b"], ["render", "--host", "a", "status", "--host", "b"]),
        (["deploy", "--", "web1"], ["deploy", "--", "web1"]),
        (["nothing", "web1"], ["nothing", "web1"]),
    ],
)
def test_hosts_as_positional_arguments(tokens: list[str], expected: list[str]) -> None:
    tasks = {
        name: flag_names(["product", "host", "config", "out", "lines", "release"])
        for name in ("deploy", "render", "status", "logs")
    }
    assert hosts_as_flags(tokens, tasks, flag_names(["i", "identity"])) == expected


def test_dry_run_prints_everything_and_connects_to_nothing(tmp_path: Path) -> None:
    secrets = tmp_path / "x.secrets.env"
    secrets.write_text("SENTRY_DSN=https://hunter2@o.example/1\n")
    config = tmp_path / "deploy.toml"
    config.write_text(
        (MYPRODUCT / "deploy.toml")
        .read_text()
        .replace('# secrets = "~/.config/apiphant/myproduct.secrets.env"', f'secrets = "{secrets}"')
    )
    # 203.0.113.10 is TEST-NET-3: a connection attempt would hang, not answer.
    done = fab(
        "deploy", "--product=myproduct", "--config", str(config), "--dry-run", "web1", timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "hunter2" not in out + done.stderr
    assert "upload secrets" in out and "(content not shown)" in out
    assert "-> /opt/myproduct/shared/secrets.env (mode 0640, owner root:myproduct)" in out
    for text in (
        "==> lock",
        "==> prepare",
        "==> activate",
        "==> verify",
        "==> finish",
        "==> unlock",
        "nginx -t -q -c",
        "supervisorctl restart myproduct-api-8001",
        "on a failure after the switch: rollback",
        "make release <previous> current",
        "dry run: nothing was run",
    ):
        assert text in out, text
    assert "local $ " in out and "pip wheel --no-deps" in out


def test_rollback_dry_run_names_its_target_and_connects_to_nothing() -> None:
    done = fab("rollback", "--product=myproduct", "--dry-run", "web1", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "make release <previous> current" in done.stdout
    assert "==> lock" in done.stdout and "==> unlock" in done.stdout
    named = fab("rollback", "--product=myproduct", "--release", "2026", "--dry-run", timeout=60)
    assert "error: --release: expected a release id like 20250102030405, got '2026'" in named.stdout


@pytest.mark.parametrize(
    ("programs", "status", "updated"),
    [
        (["p-api-1"], "p-api-3 RUNNING\nother RUNNING\n", "update p-api-1 p-api-3"),
        ([], "other RUNNING\n", ""),  # never a bare `supervisorctl update`: it touches all
    ],
)
def test_supervisor_sync_updates_only_the_products_programs(programs, status, updated) -> None:
    from apiphant.deploy import commands
    from apiphant.deploy.layout import Layout

    fake = (
        "supervisorctl() { case $1 in pid) echo 1 ;; "
        f'status) printf {status!r} ;; update) echo "$*" ;; esac; }}; '
    )
    done = subprocess.run(
        ["bash", "-c", fake + commands.supervisor_sync(Layout("p"), programs)],
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == updated


def test_a_hosts_output_is_shown_in_whole_lines() -> None:
    """Invoke flushes after every chunk it reads; a line cut across two chunks is still one
    line on the deployer's screen (the history's lines are read back from it)."""
    from apiphant.deploy.runner import _Prefixed

    shown: list[str] = []
    stream = _Prefixed("[web1]   ", shown.append)
    for chunk in ("2026-12-01T01:14:59Z deploy", " outcome=failed\nsecond", " line\nno newline"):
        stream.write(chunk)
        stream.flush()
    assert shown == ["[web1]   2026-12-01T01:14:59Z deploy outcome=failed", "[web1]   second line"]
    stream.finish()
    assert shown[-1] == "[web1]   no newline"
