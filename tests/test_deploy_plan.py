"""The deploy as steps, built from config alone, and the `fab` command line around it."""

import io
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from apiphant.deploy import plan, render, runner
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
    release_dir = f"/opt/myproduct/releases/{RELEASE}"
    assert uploads == [release_dir, f"{release_dir}/config"]
    assert not any(u.startswith("/etc/") for u in uploads), "nothing live before the switch"


def test_a_host_prepares_in_few_steps_each_saying_its_parts() -> None:
    """The small steps with no decision between them run as one script, whose why names
    each part; the code and the rendered files travel as one archive each."""
    prepare = deploy_plan(one_host()).prepare
    assert [s.why for s in prepare] == [
        "apt packages; system user myproduct; release folder",
        "upload the release: product code, apiphant wheel",
        "upload the rendered files, one archive: apt.txt, logrotate, nginx.conf, nginx-main.conf, "
        "supervisor.conf, requirements.txt, environment, run",
        "virtualenv with apiphant and the product's requirements",
        "check: Supervisor config; check: nginx -t, full config; check: logrotate config",
    ]
    setup, checks = prepare[0].command, prepare[-1].command
    assert setup.index("apt-get install") < setup.index("useradd") < setup.index("install -d")
    assert checks.index("supervisor.options") < checks.index("nginx -t") < checks.index("logrotate")
    # One step fails as a whole: a failed part stops the parts after it.
    failing = plan.merged("h", [("one", "echo one"), ("two", "false"), ("three", "echo three")])
    done = subprocess.run(["sh", "-c", failing.command], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (1, "one\n")
    code, files = (s.upload for s in prepare[1:3])
    assert code.unpack and files.unpack and not code.secret and not files.secret
    assert code.local == Path("/tmp/myproduct.tar.gz")


def test_the_rendered_files_archive_holds_exactly_the_hosts_files_with_their_modes() -> None:
    config = three_hosts()
    rendered = render.render_all(config, list(config.hosts), RELEASE, WHEEL)
    the_plan = deploy_plan(config)
    for host in config.hosts:
        step = next(s for s in the_plan.prepare if s.host == host.name and s.upload
                    and s.upload.remote.endswith("/config"))  # fmt: skip
        archive = tarfile.open(fileobj=io.BytesIO(step.upload.content), mode="r:gz")
        members = {m.name: m for m in archive.getmembers()}
        files = rendered[host.name]
        assert set(members) == set(files.files), host.name
        for name, member in members.items():
            assert member.isfile() and (member.uid, member.gid) == (0, 0)
            assert member.mode == files.mode(name), (host.name, name)
            assert archive.extractfile(member).read().decode() == files.files[name]
    # The same files, the same bytes: a plan built twice uploads the same archive.
    again = deploy_plan(config)
    assert [s.upload.content for s in again.prepare if s.upload] == [
        s.upload.content for s in the_plan.prepare if s.upload
    ]


def test_an_nginx_only_host_gets_no_python() -> None:
    """No code, no virtualenv, no secrets, no Python package on a front that runs Nginx only;
    the API hosts get all of them."""
    config = three_hosts()
    rendered = render.render_all(config, list(config.hosts), RELEASE, WHEEL)
    front = rendered["front"]
    assert not {"run", "requirements.txt", "environment"} & set(front.files)
    assert not {"python3", "python3-venv"} & set(front.apt)
    assert {"run", "requirements.txt", "environment"} <= set(rendered["a"].files)
    assert {"python3", "python3-venv"} <= set(rendered["a"].apt)
    prepare = deploy_plan(config).prepare
    whys = {name: [s.why for s in prepare if s.host == name] for name in ("front", "a")}
    assert whys["front"] == [
        "apt packages; system user myproduct; release folder",
        "upload the rendered files, one archive: apt.txt, logrotate, nginx.conf, nginx-main.conf",
        "check: nginx -t, full config; check: logrotate config",
    ]
    assert "virtualenv with apiphant and the product's requirements" in whys["a"]
    assert "upload the release: product code, apiphant wheel" in whys["a"]
    # Its release has no requirements.txt: the switch does not ask for a virtualenv.
    switch = next(s for s in deploy_plan(config).activate if s.host == "front" and s.switch)
    checked = f"[ ! -e /opt/myproduct/releases/{RELEASE}/config/requirements.txt ] || test -x "
    assert switch.command.startswith(checked)


def test_an_nginx_only_fronts_smoke_test_runs_from_the_deployer_through_a_tunnel() -> None:
    config = three_hosts()
    (smoke,) = deploy_plan(config).verify
    assert smoke.host == "front" and not smoke.command and smoke.local is not None
    assert smoke.why == ("smoke test through Nginx, from the deployer: myproduct/test.py "
                         "through an SSH tunnel to front's http://127.0.0.1:8000")  # fmt: skip
    local = smoke.local
    assert local.argv == (sys.executable, "myproduct/test.py")
    assert local.cwd == str(MYPRODUCT.parent) and local.port == config.nginx.local_port
    assert dict(local.env) == {"APIPHANT_URL": "http://{tunnel}"}
    env = runner.local_environment(local, "127.0.0.1:40000")
    assert env["APIPHANT_URL"] == "http://127.0.0.1:40000"
    # Printed as it runs, and where the tunnel goes.
    shown: list[str] = []
    runner.Executor(config, shown.append).run(smoke)
    assert shown[1] == (
        "[front] $ (on the deployer; {tunnel}: an SSH tunnel to front's 127.0.0.1:8000) "
        f"cd {MYPRODUCT.parent} && APIPHANT_URL='http://{{tunnel}}' {sys.executable} "
        "myproduct/test.py"
    )
    # A rollback: the deployer's test.py may test what only the failed release has; the
    # front answers /health through the tunnel, each API host runs its own release's test.
    back = plan.rollback_plan(config, list(config.hosts), {h.name: "20250101000000"
                                                         for h in config.hosts})  # fmt: skip
    assert [(s.host, s.why.split(":")[0]) for s in back.verify] == [
        ("front", "check through Nginx, from the deployer"),
        ("a", "smoke test of the release gone back to, on the first worker"),
        ("b", "smoke test of the release gone back to, on the first worker"),
    ]
    assert back.verify[0].local.argv[1] == "-c"
    assert "/opt/myproduct/releases/20250101000000/config/run" in back.verify[1].command



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
    assert the_plan.verify[0].local.port == 8000
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


def test_fab_run_on_an_nginx_only_host_is_refused_in_one_line(tmp_path: Path) -> None:
    """An Nginx-only host has no release code and no virtualenv to run a command in."""
    from apiphant.deploy import tasks

    config = tmp_path / "deploy.toml"
    config.write_text(THREE_HOSTS)
    target = tasks.Target(product=str(MYPRODUCT), config=str(config))
    status = tasks.run(target, ["front"], "python -V", dry_run=True)
    assert status == tasks.BAD_INPUT
    allowed = tasks.run(target, ["a"], "python -V", dry_run=True)
    assert allowed == 0
