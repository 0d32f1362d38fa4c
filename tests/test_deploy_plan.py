"""The deploy as steps, built from config alone, and the `fab` command line around it."""

import http.server
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest

from apiphant.deploy import commands, plan, render
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
    back = "Nginx sends requests to 127.0.0.1:{} again (at most fail_timeout 3s after a refusal)"
    assert whys[start:] == [
        f"restart myproduct-api-8001; wait for /health to answer release {RELEASE}",
        "restart myproduct-background",
        back.format(8001),
        f"restart myproduct-api-8002; wait for /health to answer release {RELEASE}",
        back.format(8002),
        "supervisor: add and remove programs to match the config",
    ]
    # Each a stage of its own: the next batch restarts once Nginx has the last one back.
    assert [s.stage for s in steps[start:]] == [1, 1, 2, 3, 4, 5]
    for step in steps[start:]:
        # Never a whole-group restart, never an update of every program on the host, and no
        # Nginx reload: that would close busy client connections.
        assert "supervisorctl restart all" not in step.command
        assert "supervisorctl update;" not in step.command
        assert "nginx -s reload" not in step.command
        assert "sleep 4" not in step.command.replace("waiting 4s'; sleep 4;", "")
    restart = steps[start]
    assert "supervisorctl restart myproduct-api-8001" in restart.command
    assert "http://127.0.0.1:8001/health" in restart.command
    check = steps[start + 2].command
    assert "-H 'Host: rotation.apiphant.invalid'" in check
    assert "http://127.0.0.1:8000/default" in check and '"$by" = 127.0.0.1:8001 ]' in check
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
    assert '"$by" = 10.0.0.12:9000 ]' in checks[0].command
    assert [s.host for s in the_plan.verify] == ["front"]
    assert "http://127.0.0.1:80" in the_plan.verify[0].command
    # Deploying only the backends: the smoke test goes to the workers; the front, not part of
    # this deploy, is still asked whether it sends requests to the restarted workers again.
    partial = deploy_plan(config, [config.host("b")])
    assert not any(s.why.startswith("nginx:") for s in partial.activate)
    assert {s.host for s in partial.activate if s.why.startswith("Nginx sends")} == {"front"}
    assert "http://10.0.0.12:9000" in partial.verify[0].command


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
        # The front's live config predates the check: the old fixed wait, fail_timeout + 1.
        ([], "10.0.0.3:8001", True, "no rotation check in this release's Nginx config: waiting 1s"),
    ],
)  # fmt: skip
def test_rotation_check(answers: list[str], address: str, ok: bool, said: str) -> None:
    handler = type("Front", (_Front,), {"answers": list(answers)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/default"
        command = commands.in_rotation(
            url, "rotation.apiphant.invalid", "X-Apiphant-Upstream", address, 0.1, slack=1
        )
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert (done.returncode == 0) == ok, done.stderr
    assert said in (done.stdout + done.stderr)


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
    assert check.count('"$by" = 10.0.0.12:9000 ]') == 2
    assert "http://127.0.0.1:8000/main" in check and "http://127.0.0.1:8000/reports" in check
