"""Every setting is declared once, in apiphant.settings.schema, and every surface that takes it
agrees with that one entry: the server's Limits, the deploy configuration's [api] and
[background], the Supervisor command line the deploy kit renders, and the docs tables."""

import ast
import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from apiphant.settings import options, schema, tables, values
from apiphant.settings.schema import ALL, BY_NAME, Render
from tests.servers import REPO

PACKAGE = REPO / "apiphant"
#: Run on a host by its system Python: one stdlib-only file each, never importing apiphant.
HOST_PROGRAMS = ("apiphant/deploy/supervise.py", "apiphant/deploy/agent.py")


# One entry per setting


@pytest.mark.parametrize("field", ["name", "flag", "env", "deploy"])
def test_names_flags_variables_and_keys_are_each_declared_once(field: str) -> None:
    spelled = [getattr(s, field) for s in ALL if getattr(s, field)]
    assert len(spelled) == len(set(spelled)), sorted(x for x in spelled if spelled.count(x) > 1)


def test_every_setting_is_complete() -> None:
    for s in ALL:
        assert s.help and "\n" not in s.help, s.name
        assert s.flag or s.positional or s.env, f"{s.name}: nothing sets it"
        assert bool(s.flag or s.positional) == bool(s.commands), s.name
        assert not (s.flag and s.positional), s.name
        if s.supervisor in (Render.ALWAYS, Render.IF_NOT_DEFAULT, Render.FLAG):
            assert s.flag, f"{s.name}: on the Supervisor line with no flag"
        if s.supervisor is Render.ENVIRONMENT:
            assert s.env, f"{s.name}: in the environment with no variable"
        if s.deploy:
            assert s.deploy.partition(".")[0] in ("api", "background", "database"), s.name
            assert s.kind.toml is not None, f"{s.name}: a deploy.toml key its kind cannot read"
        options.help_text(s)  # its {placeholders} fill in


# The server's Limits


def test_every_field_of_the_servers_limits_is_a_setting_with_its_default() -> None:
    from apiphant.server import Limits

    fields = {f.name: f.default for f in dataclasses.fields(Limits)}
    assert set(fields) == {s.name for s in schema.SERVE if s.limits}
    for name, default in fields.items():
        expected = BY_NAME[name].default
        if name == "max_connections":  # the command asks the open-files limit instead
            assert expected is None
            expected = schema.DIRECT_MAX_CONNECTIONS
        assert default == expected, name


def test_the_limits_come_from_resolved_values() -> None:
    from apiphant.server import Limits

    resolved = {s.name: s.default for s in schema.SERVE}
    resolved["max_connections"] = 7
    assert Limits(**options.limits(resolved)) == Limits(max_connections=7)


def test_the_defaults_the_application_spells_are_the_schemas() -> None:
    from apiphant.app import DEFAULT_MAX_BODY
    from apiphant.request import DEFAULT_MAX_JSON_VALUES

    assert DEFAULT_MAX_BODY == BY_NAME["max_body"].default == schema.DEFAULT_MAX_BODY
    assert DEFAULT_MAX_JSON_VALUES == BY_NAME["max_json_values"].default


#: Where a setting's default is used, not declared: each must take it from the schema.
DEFAULT_USERS = {
    "apiphant/http/server.py": ("Limits",),
    "apiphant/app.py": ("DEFAULT_MAX_BODY",),
    "apiphant/request.py": ("DEFAULT_MAX_JSON_VALUES",),
    "apiphant/background.py": ("DEFAULT_STOP_TIMEOUT",),
    "apiphant/deploy/config/model.py": ("DEFAULT_STOP_TIMEOUT", "Api", "Background"),
}


def _numbers_in(node: ast.AST) -> list[object]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and isinstance(n.value, int | float) and not isinstance(n.value, bool)]  # fmt: skip


@pytest.mark.parametrize("relative", DEFAULT_USERS)
def test_no_default_is_copied_from_the_schema(relative: str) -> None:
    """A number literal where a setting's default is used is a copy that drifts: the
    constants and the fields of Limits, Api and Background read the schema instead."""
    copied = []
    for node in ast.parse((REPO / relative).read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name in DEFAULT_USERS[relative]:
            copied += [(f"{node.name}.{item.target.id}", _numbers_in(item.value))
                       for item in node.body if isinstance(item, ast.AnnAssign)
                       and item.value is not None]  # fmt: skip
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if set(names) & set(DEFAULT_USERS[relative]) and node.value is not None:
                copied.append((names[0], _numbers_in(node.value)))
    found = {name for name, _ in copied}
    assert found >= {n for n in DEFAULT_USERS[relative] if n.isupper()}, found
    assert [(name, numbers) for name, numbers in copied if numbers] == []


# The deploy configuration


@pytest.mark.parametrize("section", ["api", "background"])
def test_the_deploy_configurations_fields_are_the_settings_with_their_defaults(section) -> None:
    """[api] is Api and [background] is Background: one field per setting whose deploy key
    is in that table, of the same name and default, and no field without a setting."""
    from apiphant.deploy import config

    cls = {"api": config.Api, "background": config.Background}[section]
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    assert {f"{section}.{name}" for name in fields} == {
        s.deploy for s in ALL if (s.deploy or "").startswith(f"{section}.")}  # fmt: skip
    for name, default in fields.items():  # a deployment's own where it has one (docs: off)
        assert default == schema.deploy_default(BY_NAME[name]), name
    assert config.DEFAULT_STOP_TIMEOUT == BY_NAME["stop_timeout"].default
    assert BY_NAME["stop_timeout"].deploy == "background.stop_timeout"


#: Options for a developer's machine, which a deployment never sets.
DEVELOPMENT_ONLY = {"reload", "debug"}


@pytest.mark.parametrize("command", ["serve", "background"])
def test_every_option_of_the_programs_is_settable_in_deploy_toml(command: str) -> None:
    """What ``apiphant serve`` and ``apiphant-background`` take, a deployment can set: by a
    deploy.toml key, or derived by the deploy from other keys."""
    unsettable = [s.name for s in schema.of_command(command)
                  if s.flag and s.name not in DEVELOPMENT_ONLY and not (s.deploy or s.derived)]
    assert unsettable == []  # fmt: skip


@pytest.mark.parametrize("section", ["api", "background"])
def test_the_keys_deploy_toml_allows_are_the_schemas(section: str) -> None:
    message = _deploy_error(section, "no_such_key", 1) or ""
    allowed = message.partition("(expected one of: ")[2].rstrip(")").split(", ")
    assert sorted(allowed) == sorted(s.deploy.partition(".")[2] for s in ALL
                                     if (s.deploy or "").startswith(f"{section}."))


ONE_HOST = """
product = "myproduct"
server_names = ["api.example.com"]

[hosts.web1]
ssh = "root@203.0.113.10"
roles = ["nginx", "api", "background"]
"""

BAD_TOML_VALUES = [0, -1, 1.5, "x", True, 86400, [1], ["a", "a"], ["a b"]]
#: Checked beyond their kind: the drain against Nginx's keep-alive, CORS by its policy.
CHECKED_AGAINST_OTHERS = {"drain_timeout", "cors_origins", "cors_headers"}


def _deploy_error(section: str, key: str, value: object) -> str | None:
    from apiphant.deploy.config import ConfigError, parse

    data = tomllib.loads(ONE_HOST)
    data[section] = {key: value}
    try:
        parse(data, Path("deploy.toml"), REPO / "myproduct")
    except ConfigError as error:
        return str(error)
    return None


@pytest.mark.parametrize("setting", [s for s in ALL if s.deploy], ids=lambda s: s.name)
def test_the_schemas_toml_parsers_read_each_key_as_the_deploy_configuration_does(setting) -> None:
    """Same values accepted, same words for a mistake: the schema's parsers can replace the
    configuration's own without a message changing."""
    section, _, key = setting.deploy.partition(".")
    for value in BAD_TOML_VALUES:
        try:
            ours = f"deploy.toml: {setting.deploy}: {setting.kind.toml(value)}"
        except ValueError as error:
            ours = f"deploy.toml: {setting.deploy}: {error}"
        else:
            ours = None
        theirs = _deploy_error(section, key, value)
        if ours is None and key in CHECKED_AGAINST_OTHERS:
            continue  # a value of the right kind that another rule refuses
        assert theirs == ours, (setting.name, value)


# The Supervisor command line


def _rendered_command(api: str, program: str) -> str:
    from apiphant.deploy import render
    from apiphant.deploy.config import parse

    data = tomllib.loads(ONE_HOST + api)
    config = parse(data, Path("deploy.toml"), REPO / "myproduct")
    files = render.render_host(config, config.hosts[0], "20260101000000", "apiphant.whl")
    line, *_ = [line for line in files.files["supervisor.conf"].splitlines()
              if line.startswith("command=") and f"/run {program} " in line]  # fmt: skip
    return line


def test_a_deployment_serves_no_docs_unless_api_docs_is_on() -> None:
    """apiphant serve shows /api/docs by default; a deployment's workers get --no-docs, and
    with [api] docs = true no flag and the docs extra (Swagger UI's files) in the release.
    The deploy sets APIPHANT_DOCS's meaning: [environment] may not."""
    from apiphant.deploy.config import ConfigError, parse

    def config_of(api: str):
        return parse(tomllib.loads(ONE_HOST + api), Path("deploy.toml"), REPO / "myproduct")

    assert BY_NAME["docs"].default is True and config_of("").api.docs is False
    assert _rendered_command("", "apiphant serve").endswith(" --no-docs")
    assert "docs" not in config_of("").apiphant_extras()
    on = "[api]\ndocs = true\n"
    assert "docs" not in _rendered_command(on, "apiphant serve")
    assert "docs" in config_of(on).apiphant_extras()
    with pytest.raises(ConfigError, match=r"environment.APIPHANT_DOCS: set by the deploy from "
                                          r"\[api\] docs"):
        config_of('[environment]\nAPIPHANT_DOCS = "true"\n')


NON_DEFAULT_API = """
[api]
max_body = "512K"
max_json_values = 5000
keepalive_timeout = 70.5
header_timeout = 7
request_timeout = 20
drain_timeout = 12
max_connections = 900
access_log = true
cors_origins = ["https://app.example.com"]
cors_headers = ["Authorization"]
cors_credentials = true
max_active = 50
queue_timeout = 2.5
linger_timeout = 1.5
linger_time = 12
docs = true

[background]
stop_timeout = 2.5
"""


@pytest.mark.parametrize("api", ["", NON_DEFAULT_API], ids=["defaults", "every-key-set"])
def test_the_rendered_supervisor_lines_are_the_schemas_command_lines(api: str) -> None:
    from apiphant.deploy.config import parse

    config = parse(tomllib.loads(ONE_HOST + api), Path("deploy.toml"), REPO / "myproduct")
    resolved = {**dataclasses.asdict(config.api),
                "drain_idle_grace": config.nginx.drain_idle_grace}  # fmt: skip
    line = _rendered_command(api, "apiphant serve")
    assert line.endswith(" myproduct 127.0.0.1:8001 " + " ".join(
        options.command_line(resolved, "serve")))  # fmt: skip
    background = {"stop_timeout": config.background_stop_timeout}
    assert _rendered_command(api, "apiphant-background").endswith(
        " apiphant-background myproduct " + " ".join(options.command_line(background,
                                                                          "background")))


def test_the_rendered_api_line_parses_back_to_the_configured_values() -> None:
    from apiphant import cli
    from apiphant.deploy.config import Api, parse
    from apiphant.deploy.config.keys import keys_of

    config = parse(tomllib.loads(ONE_HOST + NON_DEFAULT_API), Path("deploy.toml"),
                   REPO / "myproduct")  # fmt: skip
    assert list(tomllib.loads(NON_DEFAULT_API)["api"]) == list(keys_of(Api))
    argv = _rendered_command(NON_DEFAULT_API, "apiphant serve").split(" apiphant ", 1)[1].split()
    found = options.resolve(cli.parser().parse_args(argv), "serve", environ={})
    for field in dataclasses.fields(config.api):
        setting = BY_NAME[field.name]
        assert getattr(config.api, field.name) != schema.deploy_default(setting), field.name
        if setting.supervisor is not Render.ENVIRONMENT:
            assert found[field.name].value == getattr(config.api, field.name), field.name


def test_the_programs_environment_carries_the_cors_settings_of_api() -> None:
    """cors_credentials reaches the workers as APIPHANT_CORS_CREDENTIALS=true, and only when
    true: [environment] may still set that variable itself, as it could before."""
    from apiphant.deploy.config import ConfigError, parse

    def environment(toml: str) -> list[tuple[str, str]]:
        config = parse(tomllib.loads(ONE_HOST + toml), Path("deploy.toml"), REPO / "myproduct")
        return [(k, v) for k, v in config.program_environment() if k.startswith("APIPHANT_CORS")]

    assert environment(NON_DEFAULT_API) == [
        ("APIPHANT_CORS_ORIGINS", "https://app.example.com"),
        ("APIPHANT_CORS_HEADERS", "Authorization"), ("APIPHANT_CORS_CREDENTIALS", "true")]
    assert environment("[api]\ncors_credentials = false\n") == []
    by_hand = '[environment]\nAPIPHANT_CORS_CREDENTIALS = "yes"\n'
    assert environment(by_hand) == [("APIPHANT_CORS_CREDENTIALS", "yes")]
    with pytest.raises(ConfigError, match=r"^deploy.toml: api.cors_credentials: "
                                          r"APIPHANT_CORS_CREDENTIALS is in \[environment\] too"):
        environment(by_hand + "[api]\ncors_credentials = true\n")
    with pytest.raises(ConfigError, match=r"^deploy.toml: api.cors_credentials: '\*' allows"):
        environment('[api]\ncors_origins = ["*"]\ncors_credentials = true\n')


def test_new_settings_appear_on_the_command_line_only_when_changed() -> None:
    resolved = {s.name: s.default for s in schema.SERVE}
    line = options.command_line(resolved, "serve")
    assert "--max-active" not in line and "--max-connections" not in line
    resolved.update(max_active=5, queue_timeout=0.5, access_log=True)
    assert options.command_line(resolved, "serve")[-5:] == [
        "--max-active", "5", "--queue-timeout", "0.5", "--access-log"]


#: Every name a template could use before the command lines came from the schema: products
#: override templates (PRODUCT/deploy/templates/), so none of them may go or change its name.
CONTEXT_KEYS_BEFORE = {
    "acme_challenge", "acme_peers", "api", "api_stopwait", "apt", "background_program",
    "background_stop_timeout", "background_stopwait", "certbot_renew", "certificate",
    "default_pool", "deployment", "environment", "first_port", "host", "hsts_max_age", "https",
    "ident", "logrotate_run", "logs", "main", "nginx", "nginx_errors", "nginx_pidfile",
    "nginx_user", "not_found", "paths", "pip", "pools", "product", "product_requirements",
    "release", "release_env", "renew_every", "renewer_program", "rotator_program",
    "secrets_file", "server_names", "services", "supervisor_pidfile", "tls", "tls_ciphers",
    "user", "wheel", "workers",
}  # fmt: skip
PATHS_BEFORE = {
    "acme_webroot", "current", "current_config", "logrotate_state", "logs", "maintenance",
    "release", "root", "shared", "site", "supervisor_include", "venv", "wheels",
}  # fmt: skip


def test_the_templates_context_keeps_every_name_and_gains_the_command_lines() -> None:
    from apiphant.deploy import render, roles
    from apiphant.deploy.config import parse
    from apiphant.deploy.layout import HEALTH_PATH

    config = parse(tomllib.loads(ONE_HOST + NON_DEFAULT_API), Path("deploy.toml"),
                   REPO / "myproduct")  # fmt: skip
    host = config.hosts[0]
    found = render.context(config, host, "20260101000000", "apiphant.whl",
                           roles.for_host(config.role_names(host), roles.load_roles()))
    assert set(found) >= CONTEXT_KEYS_BEFORE | {"api_args", "background_args", "health_path"}
    assert set(found["paths"]) >= PATHS_BEFORE
    assert found["api_args"] == " ".join(options.command_line(
        {**dataclasses.asdict(config.api), "drain_idle_grace": config.nginx.drain_idle_grace},
        "serve"))  # fmt: skip
    assert found["background_args"] == "--stop-timeout 2.5"
    assert found["health_path"] == HEALTH_PATH == "/health"


# The command lines


def _option_strings(parser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings}


def _subparser(parser, name: str):
    [sub] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sub.choices[name]


@pytest.mark.parametrize("command", ["serve", "routes", "background", "smoke"])
def test_each_commands_options_are_the_schemas_flags(command: str) -> None:
    from apiphant import background, cli
    from apiphant.testing import smoke

    parser = {"background": background.parser, "smoke": smoke.parser}.get(
        command, lambda: _subparser(cli.parser(), command))()
    flags = {s.flag for s in schema.of_command(command) if s.flag}
    negated = {"--no-" + s.flag[2:] for s in schema.of_command(command)
               if s.flag and s.kind is schema.FLAG and s.default}  # fmt: skip
    assert _option_strings(parser) == flags | negated | {"-h", "--help"}
    positionals = [a.dest for a in parser._actions if not a.option_strings]
    assert positionals == [s.name for s in schema.of_command(command) if s.positional]


def _example(setting) -> tuple[list[str], object]:
    """Command-line words that set ``setting`` to something other than its default."""
    if setting.kind is schema.FLAG:  # on by default: --no-NAME turns it off
        return ([f"--no-{setting.flag[2:]}"], False) if setting.default else ([setting.flag], True)
    text = {"size": "512K", "count": "7"}.get(setting.kind.name, "2.5")
    if setting.repeat:
        return [setting.flag, "x", setting.flag, "y"], ["x", "y"]
    return [setting.flag, text], setting.kind.cli(text)


@pytest.mark.parametrize("setting", [s for s in schema.SERVE if s.flag], ids=lambda s: s.name)
def test_every_serve_setting_parses_through_the_command_and_reaches_its_use(setting) -> None:
    from apiphant import cli
    from apiphant.server import Limits

    words, expected = _example(setting)
    args = cli.parser().parse_args(["serve", "myproduct", *words])
    found = options.resolve(args, "serve", environ={})
    assert found[setting.name] == options.Resolved(expected, setting.flag)
    others = {name: r for name, r in found.items() if name not in (setting.name, "product")}
    assert all(r.source == "default" for r in others.values()), others
    if setting.limits:
        value = {name: r.value for name, r in found.items()}
        assert getattr(Limits(**options.limits(value)), setting.name) == expected


def test_an_environment_variable_sets_what_the_command_line_does_not() -> None:
    from apiphant import cli

    environ = {"APIPHANT_CORS_ORIGINS": "https://a.example, https://b.example",
               "APIPHANT_CORS_CREDENTIALS": "yes"}  # fmt: skip
    args = cli.parser().parse_args(["serve", "myproduct", "--cors-origin", "https://c.example"])
    found = options.resolve(args, "serve", environ)
    assert found["cors_origins"] == options.Resolved(["https://c.example"], "--cors-origin")
    assert found["cors_credentials"] == options.Resolved(True, "APIPHANT_CORS_CREDENTIALS")
    assert found["cors_headers"] == options.Resolved((), "default")


def test_no_command_spells_an_option_of_its_own() -> None:
    """Every ``--flag`` comes from the schema through settings/options.py; the exceptions are
    apiphant's own --version and the host's programs (supervise.py, agent.py), which must
    each stay one stdlib-only file."""
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(REPO))
        if relative in ("apiphant/settings/options.py", *HOST_PROGRAMS):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_argument"):  # fmt: skip
                spelled += [f"{relative}: {arg.value}" for arg in node.args
                            if isinstance(arg, ast.Constant) and str(arg.value).startswith("-")]
    assert spelled == ["apiphant/cli.py: --version"]


def test_a_queue_past_max_active_is_answered_503_after_the_queue_timeout(make_product, tmp_path
                                                                           ) -> None:  # fmt: skip
    """``--max-active 1 --queue-timeout 0.2``: with one request running, the next waits its
    turn for 0.2 s and gets 503 with Retry-After; the first still gets its answer."""
    import threading

    import requests

    from tests.servers import serving

    root = make_product({"api/v0/slow.py": SLOW}, name="queued")
    with serving(root, tmp_path, "--max-active", "1", "--queue-timeout", "0.2") as live:
        url = f"{live.url}/api/v0/slow/read"
        first: list[requests.Response] = []
        runner = threading.Thread(target=lambda: first.append(requests.post(url, json={},
                                                                            timeout=30)))
        runner.start()
        try:
            _wait_for(root / "api" / "v0" / "started")
            second = requests.post(url, json={}, timeout=30)
        finally:
            (root / "api" / "v0" / "release").touch()
            runner.join(30)
        assert second.status_code == 503 and second.headers["Retry-After"] == "1"
        assert second.json() == {"error": "503 Service Unavailable"}
        assert [r.status_code for r in first] == [200]


SLOW = """
    import time
    from pathlib import Path

    HERE = Path(__file__).parent

    def read(request):
        (HERE / "started").touch()
        deadline = time.monotonic() + 20
        while not (HERE / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # cooperative: monkey-patched
        return {"done": True}
"""


def _wait_for(path: Path, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


# The value parsers, per surface


def test_sizes_read_alike_from_the_command_line_and_deploy_toml() -> None:
    for text, size in (("1048576", 1048576), ("512K", 524288), ("1m", 1048576), ("2G", 2**31)):
        assert values.size(text) == values.toml_size(text) == size
    assert values.toml_size(4096) == 4096
    for bad in ("0", "0K", "", "1.5M", "-1", "lots", "M"):
        with pytest.raises(ValueError, match="expected a size like 1048576, 512K or 1M"):
            values.size(bad)
        with pytest.raises(ValueError, match="expected a size like 1048576, '512K' or '1M'"):
            values.toml_size(bad)


def test_each_surface_keeps_its_bounds_for_seconds() -> None:
    assert values.cli_seconds("0.001") == 0.001 and values.cli_seconds("inf") == float("inf")
    assert values.grace_seconds("0") == 0 and values.grace_seconds("inf") == float("inf")
    assert values.stop_seconds("0") == 0
    for parse, bad in ((values.cli_seconds, "0.0009"), (values.grace_seconds, "-1"),
                       (values.stop_seconds, "inf"), (values.seconds, "inf"),
                       (values.seconds, "0"), (values.cli_seconds, "nan")):  # fmt: skip
        with pytest.raises(ValueError, match=f"got '{bad}'"):
            parse(bad)
    with pytest.raises(ValueError, match="expected a positive number of seconds, got 86400"):
        values.toml_seconds(86400)


# The documentation tables


def test_every_table_renders() -> None:
    for group in schema.GROUPS:
        table = tables.render(f"settings {group}")
        assert table.count("\n") == len(schema.GROUPS[group]) + 2
    serve = tables.render("options serve")
    assert "| `--max-body MAX_BODY` | `1M` | largest request body, bytes or K/M; larger gets 413 |"\
        in serve.splitlines()  # fmt: skip
    assert "`--max-connections MAX_CONNECTIONS` | the open-files limit |" in serve
    assert "| `stop_timeout` | `10` |" in tables.render("deploy background")
    with pytest.raises(tables.TableError):
        tables.render("settings nowhere")


def test_marked_tables_are_rewritten_and_checked(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# Options\n<!-- generated: options background -->\nstale\n"
                   "<!-- end generated -->\nafter\n")  # fmt: skip
    assert tables.main(["--check", str(tmp_path)]) == 1
    assert tables.main(["--write", str(doc)]) == 0
    text = doc.read_text()
    assert "stale" not in text and "`--stop-timeout SECONDS`" in text and text.endswith("after\n")
    assert tables.main(["--check", str(tmp_path)]) == 0


#: The tables the docs take from the schema, by file: no handwritten copy of a setting.
DOC_TABLES = {
    "docs/server.md": ["options serve"],
    "docs/background.md": ["options background"],
    "docs/deploy-toml.md": ["deploy api", "deploy background", "deploy database"],
    "docs/settings.md": [f"settings {group}" for group in schema.GROUPS],
}


def test_the_docs_tables_are_the_schemas_and_up_to_date() -> None:
    for doc, blocks in DOC_TABLES.items():
        marked = [m[2] for m in tables.BLOCK.finditer((REPO / doc).read_text())]
        assert marked == blocks, doc
    done = subprocess.run([sys.executable, "-m", "apiphant.settings.tables", "--check",
                           "README.md", "docs"], capture_output=True, text=True, cwd=REPO,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr


# The layers


def _imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
    return found


def test_settings_and_usage_import_nothing_of_apiphant_but_themselves() -> None:
    """The schema is read by the server, the commands and the deploy kit alike: it must not
    pull any of them in."""
    for path in [*sorted((PACKAGE / "settings").glob("*.py")), PACKAGE / "runtime" / "usage.py"]:
        ours = {name for name in _imports_of(path) if name.split(".")[0] == "apiphant"}
        inside = "apiphant.settings" if path.parent.name == "settings" else "apiphant.runtime.usage"
        assert all(name.startswith(inside) for name in ours), (path.name, ours)


ENV_NAME = re.compile(r"^(APIPHANT|SENTRY)_[A-Z_]+$")


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}  # fmt: skip


def test_environment_variables_are_named_by_the_schema_only() -> None:
    """An ``"APIPHANT_..."`` or ``"SENTRY_..."`` string outside settings/ is a second spelling
    of a schema entry's ``env``: code imports the name instead. Docstrings may mention them;
    the host's programs (one stdlib-only file each) spell their own."""
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(REPO))
        if relative.startswith("apiphant/settings/") or relative in HOST_PROGRAMS:
            continue
        tree = ast.parse(path.read_text())
        docstrings = _docstrings(tree)
        spelled += [f"{relative}:{node.lineno}: {node.value}" for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings and ENV_NAME.match(node.value)]  # fmt: skip
    assert spelled == []


def test_the_settings_load_no_gevent() -> None:
    code = ("import sys, apiphant.settings.options, apiphant.settings.tables; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gevent'))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
