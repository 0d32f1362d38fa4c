"""The deploy as steps, built from config alone, and the `fab` command line around it."""

import http.server
import io
import shutil
import subprocess
import sys
import tarfile
import threading
import tomllib
from pathlib import Path

import pytest

from apiphant.deploy import plan, render
from apiphant.deploy.argv import flag_names, hosts_as_flags
from apiphant.deploy.config import check_secrets, load, parse
from apiphant.deploy.console import DryRun, _Prefixed
from apiphant.deploy.host import releases
from apiphant.deploy.host.configs import unless_live
from apiphant.deploy.host.nginx import in_rotation
from apiphant.deploy.host.releases import record
from apiphant.deploy.host.supervisor import supervisor_sync
from apiphant.deploy.host.venv import pack_venv, virtualenv, virtualenv_from_archive
from apiphant.deploy.layout import Layout
from apiphant.deploy.ssh import local_environment
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
        config, hosts, RELEASE, tarball, rendered, "me@here since now", packages=PACKAGES,
        secrets=check_secrets(config),
    )  # fmt: skip


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


def test_a_host_that_has_the_releases_virtualenv_gets_the_code_alone(tmp_path: Path) -> None:
    """A code-only deploy: the hosts that said they have the virtualenv for these packages
    get an archive without wheels (kilobytes, not megabytes), the others the full one; and
    if it went away meanwhile the prepare stops there, saying so, before any switch."""
    config = three_hosts()
    hosts = list(config.hosts)
    rendered = render.render_all(config, hosts, RELEASE, WHEEL)
    full, code = Path("/tmp/myproduct.tar.gz"), Path("/tmp/myproduct-code.tar.gz")
    the_plan = plan.deploy_plan(config, hosts, RELEASE, full, rendered, "me", packages=PACKAGES,
                                code_only=(code, frozenset({"a"})))  # fmt: skip
    by_host = {h: [s for s in the_plan.prepare if s.host == h] for h in ("a", "b")}
    uploads = {h: [s.upload.local for s in steps if s.upload and s.upload.local]
               for h, steps in by_host.items()}  # fmt: skip
    assert uploads == {"a": [code], "b": [full]}
    assert any(s.why.endswith("(its virtualenv is on the host: no wheels)") for s in by_host["a"])
    venv = next(s.command for s in by_host["a"] if s.why.startswith("virtualenv"))
    assert "pip" not in venv and "is no longer on this host" in venv
    assert "\"$1/pip\" install" in next(s.command for s in by_host["b"] if "virtualenv" in s.why)
    # All had it: no archive with wheels at all.
    every = plan.deploy_plan(config, hosts, RELEASE, None, rendered, "me", packages=PACKAGES,
                             code_only=(code, frozenset({"a", "b"})))  # fmt: skip
    assert {s.upload.local for s in every.prepare if s.upload and s.upload.local} == {code}


def test_a_virtualenv_gone_since_the_host_was_asked_stops_the_prepare(
    tmp_path: Path, monkeypatch
) -> None:
    from apiphant.deploy import layout as layout_module
    from apiphant.deploy.layout import Layout

    monkeypatch.setattr(layout_module, "ROOT", str(tmp_path))
    paths = Layout("p").release(RELEASE)
    command = virtualenv(paths, "/nonexistent/python3", "p", "k3y", wheels=False)
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"virtualenv {tmp_path}/p/venvs/k3y is no longer on this host (the deploy sent no "
        "wheels, as the host had it when asked): deploy again"
    )


def test_a_host_prepares_in_few_steps_each_saying_its_parts() -> None:
    """The small steps with no decision between them run as one script, whose why names
    each part; the code and the rendered files travel as one archive each."""
    prepare = deploy_plan(one_host()).prepare
    assert [s.why for s in prepare] == [
        "apt packages; system user myproduct; release folder",
        "upload the release: product code, apiphant and the wheels",
        "upload the rendered files, one archive: apt.txt, logrotate, supervisor.conf, rotate, "
        "nginx.conf, nginx-main.conf, requirements.txt, environment, run",
        "virtualenv with apiphant and the product's requirements",
        "check: Supervisor config; check: nginx -t, full config; check: logrotate config",
    ]
    setup, checks = prepare[0].command, prepare[-1].command
    assert setup.index("apt-get install") < setup.index("useradd") < setup.index("install -d")
    order = ("supervisor.options", "nginx -t", "logrotate -d")
    assert [checks.index(part) for part in order] == sorted(checks.index(p) for p in order)
    # One step fails as a whole: a failed part stops the parts after it.
    failing = plan.merged("h", [("one", "echo one"), ("two", "false"), ("three", "echo three")])
    done = subprocess.run(["sh", "-c", failing.command], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (1, "one\n")
    code, files = (s.upload for s in prepare[1:3])
    assert code.unpack and files.unpack and not code.secret and not files.secret
    assert code.local == Path("/tmp/myproduct.tar.gz")


def test_the_logs_folder_is_open_to_nginx_workers_on_nginx_hosts_only() -> None:
    """After a rotation each Nginx worker (www-data) reopens its logs by name: on an Nginx
    host the logs folder's group is Nginx's user, elsewhere adm; others never read it."""
    prepare = deploy_plan(three_hosts()).prepare
    setup = {s.host: s.command for s in prepare if s.why.startswith("apt packages")}
    assert "install -d -m 0750 -o root -g www-data /var/log/myproduct &&" in setup["front"]
    for name in ("a", "b"):
        assert "install -d -m 0750 -o root -g adm /var/log/myproduct &&" in setup[name]


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
        "upload the rendered files, one archive: apt.txt, logrotate, supervisor.conf, rotate, "
        "nginx.conf, nginx-main.conf",
        "check: Supervisor config; check: nginx -t, full config; check: logrotate config",
    ]
    assert "virtualenv with apiphant and the product's requirements" in whys["a"]
    assert "upload the release: product code, apiphant and the wheels" in whys["a"]
    # Its release has no requirements.txt: the switch does not ask for a virtualenv.
    switch = next(s for s in deploy_plan(config).activate if s.host == "front" and s.switch)
    checked = f"[ ! -e /opt/myproduct/releases/{RELEASE}/config/requirements.txt ] || test -x "
    assert switch.command.startswith(checked)


def test_an_nginx_only_fronts_smoke_test_runs_from_the_deployer_through_a_tunnel() -> None:
    config = three_hosts()
    smoke, *api_hosts = deploy_plan(config).verify
    # Every API host is tested too, on its own first worker: the front's Nginx spreads the
    # test's requests over its pools, so one host's broken release could pass unseen.
    assert [(s.host, s.why) for s in api_hosts] == [
        ("a", "smoke test of this API host, on its first worker: myproduct/test.py "
              "http://10.0.0.11:8001"),
        ("b", "smoke test of this API host, on its first worker: myproduct/test.py "
              "http://10.0.0.12:9000"),
    ]  # fmt: skip
    assert f"/opt/myproduct/releases/{RELEASE}/config/run" in api_hosts[0].command
    assert smoke.host == "front" and not smoke.command and smoke.local is not None
    assert smoke.why == ("smoke test through Nginx, from the deployer: myproduct/test.py "
                         "through an SSH tunnel to front's http://127.0.0.1:8000")  # fmt: skip
    local = smoke.local
    assert local.argv == (sys.executable, "myproduct/test.py")
    assert local.cwd == str(MYPRODUCT.parent) and local.port == config.nginx.local_port
    assert dict(local.env) == {"APIPHANT_URL": "http://{tunnel}"}
    env = local_environment(local, "127.0.0.1:40000")
    assert env["APIPHANT_URL"] == "http://127.0.0.1:40000"
    # Printed as it runs, and where the tunnel goes.
    shown: list[str] = []
    DryRun(config, shown.append).run(smoke)
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
    first = f"restart myproduct-api-8001; wait for /health to answer release {RELEASE}"
    beside = f"{first}; restart myproduct-background (checked after the batches)"
    start = whys.index(beside)
    back = "Nginx sends requests to 127.0.0.1:{} again (at most 1s after a refusal)"
    assert whys[start:] == [
        # The background runner restarts beside the first worker: it serves no traffic, and
        # its start (a second of startsecs) holds up no batch: it is checked at the end.
        beside,
        back.format(8001),
        f"restart myproduct-api-8002; wait for /health to answer release {RELEASE}",
        back.format(8002),
        f"myproduct-background runs release {RELEASE}",
        "supervisor: add and remove programs to match the config",
    ]
    # Each a stage of its own: the next batch restarts once Nginx has the last one back.
    assert [s.stage for s in steps[start:]] == [1, 2, 3, 4, 5, 5]
    for step in steps[start:]:
        # Never a whole-group restart, never an update of every program on the host, and no
        # Nginx reload: that would close busy client connections.
        assert "supervisorctl restart all" not in step.command
        assert "supervisorctl update;" not in step.command
        assert "nginx -s reload" not in step.command
        assert "sleep 4" not in step.command.replace("waiting 4s'; sleep 4;", "")
    restart = steps[start]
    # Each program restarts through the kit's Supervisor client, uploaded before: one Python
    # start per worker (each supervisorctl was 0.2 s of CPU); a worker is checked on its
    # /health, the runner (no port) by the release in its environment once RUNNING.
    client = "/usr/bin/python3 /opt/myproduct/supervise.py -c /etc/supervisor/supervisord.conf"
    assert f"( {client} restart myproduct-api-8001 --log " in restart.command
    assert (f"--release {RELEASE} --env APIPHANT_RELEASE --health http://127.0.0.1:8001/health )"
            in restart.command)  # fmt: skip
    assert f"( {client} restart myproduct-background --log " in restart.command
    assert "--env APIPHANT_RELEASE --no-wait )" in restart.command
    check = steps[whys.index(f"myproduct-background runs release {RELEASE}")].command
    assert check.startswith(f"{client} restart myproduct-background --log ")
    assert check.endswith(f"--release {RELEASE} --env APIPHANT_RELEASE")
    assert "supervisorctl" not in restart.command
    upload = steps[whys.index("the kit's Supervisor client")]
    assert upload.upload.remote == "/opt/myproduct/supervise.py" and upload.upload.mode == 0o644
    assert upload.upload.content == Path(render.__file__).with_name("supervise.py").read_bytes()
    assert whys.index("the kit's Supervisor client") < whys.index(
        "supervisord: start if not running"
    )
    assert "http://127.0.0.1:8001/health" in restart.command
    check = steps[start + 1].command
    assert "--host rotation.apiphant.invalid" in check
    assert "http://127.0.0.1:8000/default" in check and "--address 127.0.0.1:8001 " in check
    reload = steps[whys.index("nginx: reload if its config changed, or start")].command
    assert (
        "if cat /opt/myproduct/current/config/nginx-main.conf "
        "/opt/myproduct/current/config/nginx.conf | cmp -s - " in reload
    )


def restarts_by_stage(the_plan: plan.Plan) -> list[list[tuple[str, str]]]:
    return [
        [(s.host, s.why.split(";")[0]) for s in stage if "/health" in s.why]
        for stage in plan.stages(the_plan.activate)
        if any("/health" in s.why for s in stage)
    ]


def test_three_hosts_backends_first_then_pools_side_by_side() -> None:
    config = three_hosts()
    the_plan = deploy_plan(config)
    switches = [(s.host, s.stage) for s in the_plan.activate if s.switch]
    assert switches == [("a", 0), ("b", 0), ("front", 1)]
    # Pool main (a) and pool reports (b) share no worker: their batches go side by side.
    assert restarts_by_stage(the_plan) == [
        [("a", "restart myproduct-api-8001"), ("b", "restart myproduct-api-9000")],
        [("a", "restart myproduct-api-8002"), ("b", "restart myproduct-api-9001")],
        [("b", "restart myproduct-api-9002")],
    ]
    checks = [s for s in the_plan.activate if s.why.startswith("Nginx sends")]
    assert [s.host for s in checks] == ["front"] * 3
    assert "http://127.0.0.1:8000/main" in checks[0].command
    assert "http://127.0.0.1:8000/reports" in checks[0].command
    assert "--address 10.0.0.12:9000 " in checks[0].command
    # The front's smoke test through Nginx, and every API host's on its own first worker.
    assert [s.host for s in the_plan.verify] == ["front", "a", "b"]
    assert the_plan.verify[0].local.port == 8000
    # Deploying only the backends: the smoke test goes to the workers; the front, not part of
    # this deploy, is still asked whether it sends requests to the restarted workers again.
    partial = deploy_plan(config, [config.host("b")])
    assert not any(s.why.startswith("nginx:") for s in partial.activate)
    assert {s.host for s in partial.activate if s.why.startswith("Nginx sends")} == {"front"}
    assert "http://10.0.0.12:9000" in partial.verify[0].command


def test_every_host_that_runs_the_agent_gets_this_deploys_first() -> None:
    """The rotation check and the cleanup run the kit's host agent: each host of the deploy
    gets it with the Supervisor client, before its first step that runs it; a front outside
    a deploy of backends, which checks the rotation all the same, gets it before its first
    check (it may hold an older kit's agent, or none)."""
    config = three_hosts()
    for hosts in (list(config.hosts), [config.host("b")]):
        the_plan = deploy_plan(config, hosts)
        flat = [*the_plan.activate, *the_plan.verify, *the_plan.finish]  # in stage order
        for name in {s.host for s in flat if "agent.py " in s.command}:
            first_use = next(i for i, s in enumerate(flat)
                             if s.host == name and "agent.py " in s.command)  # fmt: skip
            uploaded = [i for i, s in enumerate(flat) if s.host == name and s.upload
                        and s.upload.remote == "/opt/myproduct/agent.py"]  # fmt: skip
            assert len(uploaded) == 1 and uploaded[0] < first_use, (hosts, name)
            assert flat[uploaded[0]].upload.content == AGENT.read_bytes()


@pytest.mark.parametrize(
    "batch, expected",
    [
        ("2", [["9000", "9001"], ["9002"]]),
        ('"50%"', [["9000", "9001"], ["9002"]]),  # half of 3, rounded up
        ('"100%"', [["9000", "9001"], ["9002"]]),  # never the whole pool
        ("10", [["9000", "9001"], ["9002"]]),
    ],
)
def test_batches_per_pool(batch: str, expected: list[list[str]]) -> None:
    config = parse(tomllib.loads(f"batch = {batch}\n" + THREE_HOSTS), Path("deploy.toml"),
                   MYPRODUCT)  # fmt: skip
    main, reports = plan.batches(config, list(config.hosts))
    assert [[str(w.port) for w in batch] for batch in reports] == expected
    assert [[w.port for w in batch] for batch in main] == [[8001], [8002]]
    stages = restarts_by_stage(deploy_plan(config))
    # b's batch restarts in one step: its workers side by side on the host.
    assert stages[0][1] == ("b", "restart myproduct-api-9000, myproduct-api-9001")


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
    secrets.write_text("# the token\n  \t\nTOKEN=hunter2\n\n")
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
        # The release's own copy, as the checker parsed it: NAME=value lines, nothing else.
        assert step.upload.remote == f"/opt/myproduct/releases/{RELEASE}/config/secrets.env"
        assert step.upload.content == b"TOKEN=hunter2\n" and step.upload.local is None


def test_prepare_writes_into_the_new_release_only(tmp_path: Path) -> None:
    """Whatever fails before the switch, the hosts serve what they served, with the secrets
    they had: every file the prepare phase uploads is in the new release's folder, so a
    failure there leaves no live program reading anything new ("nothing live was touched")
    and a rollback restarts the old release with its own secrets."""
    secrets = tmp_path / "s.secrets.env"
    secrets.write_text("TOKEN=new\n")
    text = THREE_HOSTS.replace(
        'server_names = ["api.example.com"]', f'server_names = ["a.b"]\nsecrets = "{secrets}"'
    )
    config = parse(tomllib.loads(text), Path("deploy.toml"), MYPRODUCT)
    release = config.layout.release(RELEASE).dir
    uploads = [s.upload for s in deploy_plan(config).prepare if s.upload]
    assert uploads and any(u.secret for u in uploads)
    for upload in uploads:
        assert upload.remote == release or upload.remote.startswith(release + "/"), upload


def test_rollback_plan_restores_the_previous_release() -> None:
    config = one_host()
    back = plan.rollback_plan(config, list(config.hosts), {"web1": "20250101000000"})
    assert not back.lock and not back.prepare
    assert back.activate[0].switch
    assert (
        "/opt/myproduct/releases/20250101000000 /opt/myproduct/current.new"
        in back.activate[0].command
    )
    assert any("--release 20250101000000 --env APIPHANT_RELEASE --health" in s.command
               for s in back.activate)
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
        (["status", "db"], ["status", "--host", "db"]),
        (["render", "api", "db", "--out", "o"], ["render", "--host", "api", "--host", "db",
                                                  "--out", "o"]),
        (["db", "restore", "x.dump", "--yes"], ["db", "--host", "restore", "--host", "x.dump",
                                                 "--yes"]),
    ],
)
def test_hosts_as_positional_arguments(tokens: list[str], expected: list[str]) -> None:
    tasks = {
        name: flag_names(["product", "host", "config", "out", "lines", "release"])
        for name in ("deploy", "render", "status", "logs", "db")
    }
    leading = frozenset({"db"})
    assert hosts_as_flags(tokens, tasks, flag_names(["i", "identity"]), None, leading) == expected


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
    assert "/config/secrets.env (mode 0640, owner root:myproduct)" in out
    assert "-> /opt/myproduct/shared/secrets.env" not in out
    for text in (
        "==> lock",
        "==> prepare",
        "==> activate",
        "==> verify",
        "==> finish",
        "==> unlock",
        "nginx -t -q -c",
        "supervise.py -c /etc/supervisor/supervisord.conf restart myproduct-api-8001 --log",
        "upload supervise.py",
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


def test_supervisor_sync_names_only_the_deployments_programs() -> None:
    """Its own names and pattern go to the client (tests/test_supervise.py runs it against
    a real supervisord), never a bare update of every program; a failure lets the deploy
    go on."""
    from apiphant.deploy.layout import Layout

    command = supervisor_sync(Layout("p"), ["p-api-1", "p-background"])
    assert command.startswith("if [ -x /usr/bin/python3 ]; then /usr/bin/python3 /opt/p/supervise")
    assert (" sync '^p-(api-[0-9]+|background|certbot|logrotate)$' p-api-1 p-background; "
            "fi; true") in command
    assert command.endswith("; fi; true")


def test_a_hosts_output_is_shown_in_whole_lines() -> None:
    """Invoke flushes after every chunk it reads; a line cut across two chunks is still one
    line on the deployer's screen (the history's lines are read back from it)."""

    shown: list[str] = []
    stream = _Prefixed("[web1]   ", shown.append)
    for chunk in ("2026-12-01T01:14:59Z deploy", " outcome=failed\nsecond", " line\nno newline"):
        stream.write(chunk)
        stream.flush()
    assert shown == ["[web1]   2026-12-01T01:14:59Z deploy outcome=failed", "[web1]   second line"]
    stream.finish()
    assert shown[-1] == "[web1]   no newline"


#: The kit's host agent, which runs the rotation check and the cleanup on a host.
AGENT = Path(render.__file__).with_name("agent.py")


@pytest.fixture
def host_agent(tmp_path: Path, monkeypatch) -> Layout:
    """A deployment whose folder (in the test's, standing for /opt) holds the kit's host
    agent, as an activation leaves it."""
    from apiphant.deploy import layout as layout_module

    monkeypatch.setattr(layout_module, "ROOT", str(tmp_path))
    layout = Layout("p")
    Path(layout.root).mkdir()
    shutil.copy(AGENT, layout.agent)
    return layout


class _Front(http.server.BaseHTTPRequestHandler):
    """Answers as Nginx's rotation server would: the worker that answered, in rotation order
    (``answers``), or a 404 without the header (a release whose config has no such server)."""

    answers: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        assert self.headers["Host"] == "rotation.apiphant.invalid"
        if not self.answers:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.answers.append(self.answers.pop(0))
        self.send_response(200)
        self.send_header("X-Apiphant-Upstream", self.answers[-1])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    "answers, address, ok, said",
    [
        # Nginx answers from one worker after another: the restarted one shows up in a round.
        (["10.0.0.1:8001", "10.0.0.2:8001, 10.0.0.3:8001"], "10.0.0.3:8001", True,
         "10.0.0.3:8001 is in rotation"),
        # Never sent to (still marked failed, or unreachable from the front): the deploy stops.
        (["10.0.0.1:8001", "10.0.0.3:8001, 10.0.0.2:8001"], "10.0.0.3:8001", False,
         "Nginx sends no request to 10.0.0.3:8001: not back in rotation after 1.1s"),
        # The front's live config predates the check: a fixed wait of back_within.
        ([], "10.0.0.3:8001", True, "no rotation check in this release's Nginx config: waiting 1s"),
    ],
)  # fmt: skip
def test_rotation_check(
    answers: list[str], address: str, ok: bool, said: str, host_agent: Layout
) -> None:
    handler = type("Front", (_Front,), {"answers": list(answers)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/default"
        command = in_rotation(
            host_agent, url, "rotation.apiphant.invalid", "X-Apiphant-Upstream", address, 0.1,
            slack=1,
        )
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert (done.returncode == 0) == ok, done.stderr
    assert said in (done.stdout + done.stderr)


def test_rotation_check_tries_a_whole_round_of_the_pool_on_one_connection(
    host_agent: Layout,
) -> None:
    """Under load a lone probe lands on the restarted worker only by chance, between the
    load's requests; a try of the pool's size covers a turn of Nginx's round robin."""
    seen = {"connections": 0, "requests": 0}

    class Front(_Front):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection per try
        answers = ["10.0.0.1:8001", "10.0.0.2:8001", "10.0.0.2:8001, 10.0.0.3:8001"]

        def setup(self) -> None:
            seen["connections"] += 1
            super().setup()

        def do_GET(self) -> None:  # noqa: N802
            seen["requests"] += 1
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/default"
        command = in_rotation(host_agent, url, "rotation.apiphant.invalid",
                              "X-Apiphant-Upstream", "10.0.0.3:8001", 0.1, slack=1,
                              rounds=3)  # fmt: skip
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert done.returncode == 0, done.stderr
    assert "10.0.0.3:8001 is in rotation" in done.stdout
    assert seen == {"connections": 1, "requests": 3}


def test_pools_sharing_a_host_restart_as_one_group_each_worker_once() -> None:
    text = THREE_HOSTS.replace('[pools.main]\nhosts = ["a"]', '[pools.main]\nhosts = ["a", "b"]')
    config = parse(tomllib.loads('batch = "50%"\n' + text), Path("deploy.toml"), MYPRODUCT)
    # main: 5 workers (50%: 3), reports: b's 3 (50%: 2); the smaller wins, so no batch
    # holds all of reports.
    (group,) = plan.batches(config, list(config.hosts))
    assert [[w.port for w in batch] for batch in group] == [[8001, 8002], [9000, 9001], [9002]]
    the_plan = deploy_plan(config)
    restarts = [s.why.split(";")[0] for s in the_plan.activate if "/health" in s.why]
    assert restarts == [
        "restart myproduct-api-8001, myproduct-api-8002",
        "restart myproduct-api-9000, myproduct-api-9001",
        "restart myproduct-api-9002",
    ]
    # b's workers serve both pools: the front checks each pool sends to them again.
    check = next(s for s in the_plan.activate if "10.0.0.12:9001 again" in s.why).command
    assert check.count("--address 10.0.0.12:9000 ") == 2
    assert "http://127.0.0.1:8000/main" in check and "http://127.0.0.1:8000/reports" in check
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


def test_a_config_the_same_as_the_live_releases_is_not_checked_again(
    tmp_path: Path, monkeypatch
) -> None:
    """A code-only deploy renders the same Supervisor and logrotate configs: the live
    release's were checked before they went live, so the check (a Python start of
    Supervisor's parser per host) runs only for a config that changed, or on a first deploy."""
    from apiphant.deploy import layout as layout_module
    from apiphant.deploy.layout import Layout

    monkeypatch.setattr(layout_module, "ROOT", str(tmp_path))
    layout = Layout("p")
    paths = layout.release("20260102030405")
    command = unless_live(paths, "logrotate", "logrotate", "echo checked")

    def run() -> str:
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    Path(paths.config).mkdir(parents=True)
    Path(paths.config, "logrotate").write_text("/var/log/p/*.log { daily }\n")
    assert run() == "checked"  # a first deploy: nothing is live
    live = Path(layout.releases, "20260101000000", "config")
    live.mkdir(parents=True)
    Path(layout.current).symlink_to(live.parent)
    (live / "logrotate").write_text("/var/log/p/*.log { daily }\n")
    assert run() == "logrotate: config the same as the live release's, checked before it went live"
    (live / "logrotate").write_text("/var/log/p/*.log { weekly }\n")
    assert run() == "checked"


def test_hosts_of_one_platform_share_one_virtualenv_build(tmp_path: Path) -> None:
    """Of the hosts that lack the release's virtualenv, the first of each platform builds it
    and packs it; the deployer fetches it once and the others of that platform unpack it,
    getting the code alone (no wheels). A platform with one such host builds as before."""
    from apiphant.deploy.wheelhouse import Platform

    bookworm, jammy = Platform("3.11", "x86_64", (2, 36)), Platform("3.10", "x86_64", (2, 35))
    platforms = {"a": bookworm, "b": bookworm, "c": jammy, "d": bookworm, "e": jammy, "f":
                 Platform("3.11", "aarch64", (2, 36))}  # fmt: skip
    from types import SimpleNamespace  # venv_copies reads a host's rendered files alone

    wants = {h: SimpleNamespace(files={"requirements.txt": "apiphant\n"}) for h in platforms}
    copies = plan.venv_copies(["a", "b", "c", "d", "e", "f"], platforms, wants, tmp_path)
    assert copies.builders == {"a": ("b", "d"), "c": ("e",)}
    assert [copies.source(h) for h in "abcdef"] == ["", "a", "", "a", "c", ""]
    # A host whose rendered requirements differ builds its own.
    wants["d"] = SimpleNamespace(files={"requirements.txt": "apiphant\nextra\n"})
    assert plan.venv_copies(list("abcdef"), platforms, wants, tmp_path).builders == {
        "a": ("b",), "c": ("e",)}
    # deploy.toml's venv = "build": each builds its own.
    assert plan.venv_copies(list(platforms), platforms, wants, tmp_path, "build").builders == {}

    config = three_hosts()
    hosts = list(config.hosts)
    rendered = render.render_all(config, hosts, RELEASE, WHEEL)
    full, code = Path("/tmp/myproduct.tar.gz"), Path("/tmp/myproduct-code.tar.gz")
    copies = plan.VenvCopies({"a": ("b",)}, tmp_path)
    prepare = plan.deploy_plan(config, hosts, RELEASE, full, rendered, "me", packages=PACKAGES,
                               code_only=(code, frozenset()), copies=copies).prepare  # fmt: skip
    cut = plan.stages(prepare)
    assert len(cut) == 3
    first = {h: [s for s in cut[0] if s.host == h] for h in ("a", "b")}
    assert [s.upload.local for s in first["a"] if s.upload and s.upload.local] == [full]
    assert [s.upload.local for s in first["b"] if s.upload and s.upload.local] == [code]
    built = next(s for s in first["a"] if s.why.startswith("virtualenv"))
    assert built.why.endswith("; packed for b") and "\"$1/pip\" install" in built.command
    assert built.command.index("\"$1/pip\" install") < built.command.index("tar -C")
    assert not any(s.why.startswith("virtualenv") for s in first["b"])
    archive = f"/opt/myproduct/releases/{RELEASE}/venv.tar.zst"
    assert [(s.host, s.download) for s in cut[1] if s.download] == [
        ("a", plan.Download(archive, tmp_path / "a-venv.tar.zst", "the virtualenv"))
    ]
    assert [s.host for s in cut[1]] == ["a", "a"] and archive in cut[1][1].command
    upload, unpack = cut[2]
    assert (upload.host, upload.upload.local, upload.upload.remote) == (
        "b", tmp_path / "a-venv.tar.zst", archive)
    assert unpack.host == "b" and "tar --zstd -xf" in unpack.command and "pip" not in unpack.command
    # The dry run prints every stage, the download too.
    lines: list[str] = []
    for step in prepare:
        DryRun(config, lines.append).run(step)
    assert f"[a] download the virtualenv {archive} -> {tmp_path}/a-venv.tar.zst (on the " \
           "deployer)" in lines  # fmt: skip


def test_a_packed_virtualenv_unpacks_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    """What the builder packs (without its .complete) is what the receiver unpacks; the
    receiver marks it complete only once all of it is there, and the archive goes either
    way. Real tar and zstd, run by sh in a folder standing for the hosts' /opt."""
    from apiphant.deploy import layout as layout_module
    from apiphant.deploy.layout import Layout

    monkeypatch.setattr(layout_module, "ROOT", str(tmp_path))
    paths = Layout("p").release(RELEASE)
    venv = Path(paths.layout.venv("k3y"))
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "lib.txt").write_text("a package\n")
    (venv / ".complete").touch()
    (Path(paths.product("p")) / "api").mkdir(parents=True)
    (Path(paths.product("p")) / "api" / "echo.py").write_text("def read(request):\n    pass\n")

    def sh(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)

    gone = sh(pack_venv(paths, "n0ne"))  # tar's failure is the step's, not zstd's
    assert gone.returncode != 0 and "n0ne" in gone.stderr
    packed = sh(pack_venv(paths, "k3y"))
    assert packed.returncode == 0, packed.stderr
    archive = Path(paths.venv_archive)
    assert archive.stat().st_mode & 0o777 == 0o644
    listed = subprocess.run(["tar", "--zstd", "-tf", str(archive)], capture_output=True,
                            text=True, check=True, timeout=60).stdout.split()  # fmt: skip
    assert sorted(n.rstrip("/") for n in listed) == ["k3y", "k3y/bin", "k3y/bin/python",
                                                     "k3y/lib.txt"]  # fmt: skip
    kept = archive.read_bytes()

    # The receiver has no such virtualenv yet.
    import shutil

    shutil.rmtree(venv)
    done = sh(virtualenv_from_archive(paths, "p", "k3y"))
    assert done.returncode == 0, done.stderr
    assert (venv / "lib.txt").read_text() == "a package\n" and (venv / ".complete").exists()
    assert Path(paths.venv).resolve() == venv and not archive.exists()
    assert list((Path(paths.product("p")) / "api" / "__pycache__").glob("echo.*.pyc"))

    # A broken archive: no virtualenv marked complete, the archive gone, the step failed.
    shutil.rmtree(venv)
    archive.write_bytes(kept[: len(kept) // 2])
    broken = sh(virtualenv_from_archive(paths, "p", "k3y"))
    assert broken.returncode != 0
    assert not (venv / ".complete").exists() and not archive.exists()


#: The line of config/run that made a release of an earlier kit read the shared secrets.
SHARED_SECRETS_RUN = (
    "if [ -f /opt/shop/shared/secrets.env ]; then load /opt/shop/shared/secrets.env; fi\n"
)


def test_secrets_an_earlier_kit_shared_last_as_long_as_a_release_that_reads_them(
    tmp_path: Path,
) -> None:
    """A host deployed by an earlier kit has shared/secrets.env, read by the run script of
    each of its releases. A deploy now never writes it (each release has its own copy),
    and its cleanup removes it only once no kept release reads it: rolling back to an old
    release keeps working, and an old secret does not outlive the releases it was for."""
    from apiphant.deploy.layout import Layout

    layout = Layout("shop")
    root = tmp_path / "shop"
    for release, reads_shared in (("20250101000000", True), ("20250102000000", True),
                                  ("20250103000000", False)):  # fmt: skip
        folder = root / "releases" / release
        (folder / "config").mkdir(parents=True)
        (folder / ".good").touch()
        run = "set -eu\n" + (SHARED_SECRETS_RUN if reads_shared else
                             'load "$release/config/secrets.env"\n')  # fmt: skip
        # Its paths pointed into the temporary folder, as the cleanup's are below.
        (folder / "config" / "run").write_text(run.replace("/opt/shop", str(root)))
    (root / "current").symlink_to(root / "releases" / "20250103000000")
    (root / "shared").mkdir()
    shared = root / "shared" / "secrets.env"
    shared.write_text("TOKEN=old\n")
    shutil.copy(AGENT, root / "agent.py")  # as each activation uploads it

    def cleanup(keep: int) -> str:
        command = releases.cleanup(layout, keep).replace("/opt/shop", str(root))
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = cleanup(2)  # keeps ...03 and ...02, which reads the shared file
    assert "removing release 20250101000000" in out and shared.exists()
    out = cleanup(1)
    assert "removing release 20250102000000" in out and not shared.exists()
    assert f"removing {root}/shared/secrets.env: no kept release reads it" in out
    assert cleanup(1).count("removing") == 0  # nothing left to remove: no error either


@pytest.mark.parametrize(("typed", "kept"), [
    ("TOKEN=hunter2 python -m shop.report --password hunter2", "python"),
    ("python -c 'print(\"s3cret\")'", "python"),
    ("/opt/shop/current/venv/bin/tool --key=abc", "/opt/shop/current/venv/bin/tool"),
    ("sh -c 'exit 3'", "sh"),
    ("curl -H 'Authorization: Bearer abc", "curl"),  # an unclosed quote
    ("$(cat /secret) now", "?"),
    ("A=1 B=2", "?"),
])  # fmt: skip
def test_fab_run_is_recorded_by_its_commands_name_alone(typed: str, kept: str) -> None:
    """What was typed after the name may be a secret (a token, a password): the history,
    which outlives the command, keeps the name only."""
    from apiphant.deploy import tasks

    assert tasks.command_name(typed) == kept


def test_the_history_is_root_and_the_deployments_group_only(tmp_path: Path, monkeypatch) -> None:
    """The record command, run here with the host paths moved into the test's folder: a new
    history is 0640 from its first line, one an older kit left world-readable is mended, and
    its group is the deployment's once that exists (``daemon`` stands in for it: every
    Debian has it), root's until then."""
    import grp
    import os

    from apiphant.deploy import layout as layout_module
    from apiphant.deploy.layout import Layout

    monkeypatch.setattr(layout_module, "ROOT", str(tmp_path / "opt"))
    for product, older, group in (("daemon", False, "daemon"), ("daemon", True, "daemon"),
                                  ("nosuchgroupanywhere", False, "root")):  # fmt: skip
        layout = Layout(product)
        history = Path(layout.history)
        if older:
            history.write_text("an older kit's line\n")
            history.chmod(0o644)
        done = subprocess.run(["sh", "-c", record(layout, "a line")],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert history.read_text().endswith("a line\n")
        found = os.stat(history)
        assert (oct(found.st_mode & 0o777), grp.getgrgid(found.st_gid).gr_name) == ("0o640", group)
