"""deploy.toml: the shipped examples load, every mistake is one line naming the key."""

import tomllib
from pathlib import Path

import pytest

from apiphant.deploy.config import Batch, ConfigError, Logs, check_secrets, load, parse
from apiphant.scaffold import create
from tests.deploy_helpers import CHECKOUT

MYPRODUCT = CHECKOUT / "myproduct"

ONE_HOST = """
product = "myproduct"
server_names = ["api.example.com"]

[hosts.web1]
ssh = "root@203.0.113.10"
roles = ["nginx", "api"]
"""

THREE_HOSTS = """
product = "myproduct"
server_names = ["api.example.com"]

[hosts.front]
ssh = "root@203.0.113.10"
roles = ["nginx"]

[hosts.a]
ssh = "root@203.0.113.11"
private_address = "10.0.0.11"
roles = ["api"]

[hosts.b]
ssh = "root@203.0.113.12:2222"
private_address = "10.0.0.12"
roles = ["api"]
workers = 3
first_port = 9000

[pools.main]
hosts = ["a"]

[pools.reports]
hosts = ["b"]
targets = ["v0/reports", "v1"]
"""


def parsed(text: str, product_dir: Path = MYPRODUCT):
    return parse(tomllib.loads(text), Path("deploy.toml"), product_dir)


def error_of(text: str, product_dir: Path = MYPRODUCT) -> str:
    with pytest.raises(ConfigError) as caught:
        parsed(text, product_dir)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("deploy.toml: ")
    return message


def test_shipped_one_host_example_loads() -> None:
    config = load(MYPRODUCT / "deploy.toml")
    assert config.product == "myproduct"
    (web1,) = config.hosts
    assert web1.roles == ("nginx", "api", "background")
    assert config.background_host() == web1
    assert config.programs(web1)[-2:] == ["myproduct-background", "myproduct-logrotate"]
    assert [w.address for w in config.workers(web1)] == ["127.0.0.1:8001", "127.0.0.1:8002"]
    assert config.pools[0].is_default and config.pools[0].hosts == ("web1",)
    assert config.keep_releases == 5
    assert config.nginx.listen == "80" and config.nginx.local_url == "http://127.0.0.1:8000"


def test_shipped_multihost_example_loads() -> None:
    config = load(MYPRODUCT / "deploy.multihost.toml.example", MYPRODUCT)
    assert [h.name for h in config.hosts] == ["front", "api1", "api2"]
    assert [w.address for w in config.workers(config.host("api2"))] == [
        "10.0.0.12:8001",
        "10.0.0.12:8002",
    ]
    reports = next(p for p in config.pools if p.name == "reports")
    assert reports.targets == ("v0/reports",)


@pytest.mark.parametrize("name", ["shop", "my_api"])
def test_new_product_gets_a_working_deploy_toml(tmp_path: Path, name: str) -> None:
    folder = create(name, tmp_path, template=MYPRODUCT)
    config = load(folder / "deploy.toml")
    assert config.product == name and config.layout.user == name
    assert config.layout.root == f"/opt/{name}"
    (web1,) = config.hosts
    assert [w.program for w in config.workers(web1)] == [f"{name}-api-8001", f"{name}-api-8002"]
    example = load(folder / "deploy.multihost.toml.example", folder)
    assert example.product == name


def test_three_hosts_bind_private_addresses_and_route() -> None:
    config = parsed(THREE_HOSTS)
    assert [w.address for w in config.workers(config.host("b"))] == [
        "10.0.0.12:9000",
        "10.0.0.12:9001",
        "10.0.0.12:9002",
    ]
    assert config.workers(config.host("front")) == []
    assert config.select(["root@203.0.113.12:2222"]) == [config.host("b")]
    assert config.select([]) == list(config.hosts)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ONE_HOST + "workers = 'x'\n",
            "deploy.toml: hosts.web1.workers: expected a positive integer up to 256, got 'x'",
        ),
        (ONE_HOST + "wokers = 2\n", "deploy.toml: hosts.web1.wokers: unknown key"),
        ("colour = 1\n" + ONE_HOST, "deploy.toml: colour: unknown key"),
        (ONE_HOST.replace('"myproduct"', '"x; rm -rf /"'), "deploy.toml: product: expected"),
        (ONE_HOST.replace('"myproduct"', '"shop"'), "expected the product folder's name"),
        (ONE_HOST.replace("[hosts.web1]", '[hosts."web1;ls"]'), "hosts.web1;ls: expected"),
        (ONE_HOST.replace("root@203.0.113.10", "root@host;reboot"), "hosts.web1.ssh: expected"),
        (ONE_HOST.replace("root@203.0.113.10", "root@host:99999"), "hosts.web1.ssh: expected"),
        (ONE_HOST.replace('"api"]', '"api", "db"]'), "hosts.web1.roles: expected a list of roles"),
        (ONE_HOST.replace('"api.example.com"', '"a b"'), "server_names: expected"),
        (ONE_HOST.replace('"api.example.com"', '"a;b"'), "server_names: expected"),
        (ONE_HOST + "first_port = 80\n", "hosts.web1.first_port: expected an integer from 1024"),
        (ONE_HOST + "[nginx]\nlisten = 'eighty'\n", "nginx.listen: expected"),
        # Nginx counts fail_timeout in whole seconds: "1.5s" would fail its config test.
        (ONE_HOST + "[nginx]\nfail_timeout = 1.5\n",
         "nginx.fail_timeout: expected an integer from 0 to 86400, got 1.5"),
        (ONE_HOST + "[nginx]\nfail_timeout = -1\n", "nginx.fail_timeout: expected an integer"),
        (
            ONE_HOST + "[nginx]\nlisten = '127.0.0.1:8001'\n",
            "hosts.web1.first_port: expected worker ports apart from nginx.listen",
        ),
        (ONE_HOST + "[api]\nmax_body = '1X'\n", "api.max_body: expected a size"),
        (ONE_HOST + "[api]\nmax_json_values = 0\n", "api.max_json_values: expected a positive"),
        (ONE_HOST + "[api]\ndrain_timeout = 2\n", "api.drain_timeout: expected more than 2s"),
        (ONE_HOST + "[api]\ndrain_timeout = true\n", "api.drain_timeout: expected a positive"),
        (ONE_HOST + "[environment]\n'A-B' = 'x'\n", "environment.A-B: expected a variable name"),
        (ONE_HOST + '[environment]\nA = "x\\ny"\n', "environment.A: expected a one-line"),
        (ONE_HOST + "[environment]\nAPIPHANT_RELEASE = 'x'\n", "set by the deploy"),
        ("keep_releases = 0\n" + ONE_HOST, "keep_releases: expected a positive integer"),
        ("batch = 0\n" + ONE_HOST, "batch: expected a number of workers like 2, or a share"),
        ("batch = '0%'\n" + ONE_HOST, "batch: expected a number of workers like 2, or a share"),
        ("batch = '150%'\n" + ONE_HOST, "batch: expected a number of workers like 2, or a"),
        ("batch = 'half'\n" + ONE_HOST, "batch: expected a number of workers like 2, or a"),
        ("batch = true\n" + ONE_HOST, "batch: expected a number of workers like 2, or a share"),
        ("python = 'python3'\n" + ONE_HOST, "python: expected an absolute path"),
        ("venv = 'share'\n" + ONE_HOST, "venv: expected one of copy, build, got 'share'"),
        (ONE_HOST.replace('roles = ["nginx", "api"]', "roles = []"), "hosts.web1.roles"),
        ('product = "myproduct"\nserver_names = ["a.b"]\n', "hosts: missing"),
        (ONE_HOST.replace("server_names", "#"), "server_names: missing"),
        (
            THREE_HOSTS.replace('private_address = "10.0.0.11"\n', ""),
            "hosts.a.private_address: missing, expected the address nginx on front reaches",
        ),
        (THREE_HOSTS.replace('"v0/reports"', '"reports; ls"'), "pools.reports.targets: expected"),
        (THREE_HOSTS.replace('hosts = ["b"]', 'hosts = ["front"]'), "pools.reports.hosts"),
        (
            THREE_HOSTS.replace('targets = ["v0/reports", "v1"]', ""),
            "pools: expected exactly one pool without targets",
        ),
        (
            THREE_HOSTS.replace('hosts = ["b"]', 'hosts = ["a"]'),
            "hosts.b: has the api role but is in no pool",
        ),
        (THREE_HOSTS.replace('"root@203.0.113.11"', '"root@203.0.113.10"'), "used by two hosts"),
        (
            THREE_HOSTS.replace('"10.0.0.12"', '"10.0.0.11"'),
            "hosts.b.private_address: 10.0.0.11 is already hosts.a's",
        ),
        (
            THREE_HOSTS.replace('hosts = ["b"]', "hosts = []"),
            "pools.reports.hosts: expected at least one host with the api role",
        ),
        (ONE_HOST.replace('["nginx", "api"]', '["api"]'), "hosts: no host has the nginx role"),
        (ONE_HOST + "[logs]\nmax_size = '100X'\n",
         "deploy.toml: logs.max_size: expected a size like 1048576, '512K' or '1M', got '100X'"),
        (ONE_HOST + "[logs]\nmax_size = 0\n", "logs.max_size: expected a size like"),
        (ONE_HOST + "[logs]\ncheck_every = 0\n",
         "deploy.toml: logs.check_every: expected a positive number of seconds, got 0"),
        (ONE_HOST + "[logs]\ncheck_every = '5m'\n", "logs.check_every: expected a positive"),
        (ONE_HOST + "[logs]\nkeep = 3\n",
         "deploy.toml: logs.keep: unknown key (expected one of: max_size, check_every)"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(change: str, expected: str) -> None:
    assert expected in error_of(change)


def test_background_runs_on_one_host_only(tmp_path: Path) -> None:
    product = tmp_path / "myproduct"
    (product / "api").mkdir(parents=True)
    text = THREE_HOSTS.replace('roles = ["api"]', 'roles = ["api", "background"]')
    message = error_of(text, product)
    assert "hosts.b.roles: background runs on exactly one host, already on a" in message
    once = THREE_HOSTS.replace('roles = ["api"]\n', 'roles = ["api", "background"]\n', 1)
    assert "background needs myproduct/api/background.py" in error_of(once, product)
    (product / "api" / "background.py").write_text("")
    assert parsed(once, product).background_host().name == "a"


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "deploy.toml"
    path.write_text("product = \n")
    with pytest.raises(ConfigError, match=r"^deploy.toml: not valid TOML: "):
        load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nothing.toml")


def test_secrets_are_checked_and_never_quoted_in_errors(tmp_path: Path) -> None:
    secrets = tmp_path / "x.secrets.env"
    config = parsed(f'secrets = "{secrets}"\n' + ONE_HOST)
    with pytest.raises(ConfigError, match="secrets: expected a KEY=value file"):
        check_secrets(config)
    for content, expected in [
        ("SENTRY_DSN=https://k@o.example/1\n# comment\n\nEMPTY=\n", None),
        # Whitespace-only lines and indented comments are skipped, as the hosts never see
        # them: they get the parsed NAME=value lines alone.
        ("A=1\n   \n\t\n  # indented\nB=2", None),
        ("A=1\nB=hunter2\r\n", "line 2: B: control characters in the value"),
        ("not a pair hunter2\n", "line 1: expected NAME=value"),
        ("A=1\nBAD-KEY=hunter2\n", "line 2: expected NAME=value"),
        ('TOKEN="hunter2"\n', "line 1: TOKEN: the value is quoted"),
        ("APIPHANT_RELEASE=hunter2\n", "line 1: APIPHANT_RELEASE is set by the deploy"),
    ]:
        secrets.write_text(content)
        if expected is None:
            check_secrets(config)
            continue
        with pytest.raises(ConfigError) as caught:
            check_secrets(config)
        assert expected in str(caught.value)
        assert "hunter2" not in str(caught.value)


def test_the_hosts_get_the_parsed_secrets_alone(tmp_path: Path) -> None:
    """What the deploy writes into a release is what the checker read: one NAME=value line
    per pair, no blank line, no comment (the launcher on the host needs nothing else)."""
    secrets = tmp_path / "x.secrets.env"
    config = parsed(f'secrets = "{secrets}"\n' + ONE_HOST)
    secrets.write_text("# c\n  \nA=1\n\t\nB= x y \n  # d\nAPIPHANT_TLS_KEY=/k.pem\nC=")
    assert check_secrets(config) == b"A=1\nB= x y \nC=\n"
    secrets.write_bytes(b"A=1\nB=hunter2\xff\n")
    with pytest.raises(ConfigError, match=r"secrets file .*: line 2: not UTF-8 text$"):
        check_secrets(config)
    assert check_secrets(parsed(ONE_HOST)) is None


def test_each_environment_has_its_own_system_user(tmp_path: Path) -> None:
    """Staging's programs run as PRODUCT-staging, not as production's user, so they cannot
    read production's secrets on a shared host; production's user stays the product's
    name. The name must fit Linux's 32 characters."""
    path = tmp_path / "deploy.toml"
    path.write_text(ONE_HOST + "\n[env.staging]\n[env.qa0123456789abcd]\n")
    assert load(path, MYPRODUCT).layout.user == "myproduct"
    assert load(path, MYPRODUCT, "staging").layout.user == "myproduct-staging"
    long = tmp_path / "p" / ("a" * 20)
    (long / "api").mkdir(parents=True)
    path = long / "deploy.toml"
    path.write_text(ONE_HOST.replace('"myproduct"', f'"{long.name}"')
                    + "\n[env.qa0123456789abcd]\n[env.staging]\n")  # fmt: skip
    assert load(path, env="staging").layout.user == f"{long.name}-staging"  # 28 characters
    with pytest.raises(ConfigError) as caught:
        load(path, env="qa0123456789abcd")
    assert str(caught.value) == (
        f"deploy.toml [env.qa0123456789abcd]: product: environment qa0123456789abcd runs as "
        f"the system user '{long.name}-qa0123456789abcd', 37 characters where Linux allows "
        "32: a shorter environment name"
    )


def test_relative_secrets_path_is_next_to_the_config(tmp_path: Path) -> None:
    path = tmp_path / "deploy.toml"
    path.write_text('secrets = "../s.secrets.env"\n' + ONE_HOST)
    config = load(path, MYPRODUCT)
    assert config.secrets == tmp_path / ".." / "s.secrets.env"


def test_cors_origins_and_trusted_nginx_reach_the_workers_environment() -> None:
    config = parsed(ONE_HOST + '\n[api]\ncors_origins = ["https://app.example.com", '
                    '"http://localhost:5173"]\ncors_headers = ["Authorization"]\n')
    environment = dict(config.program_environment())
    assert environment["APIPHANT_CORS_ORIGINS"] == "https://app.example.com,http://localhost:5173"
    assert environment["APIPHANT_CORS_HEADERS"] == "Authorization"
    assert environment["APIPHANT_TRUSTED_PROXIES"] == "127.0.0.1"
    assert "APIPHANT_CORS_ORIGINS" not in dict(parsed(ONE_HOST).program_environment())


@pytest.mark.parametrize(
    ("api", "message"),
    [
        ('cors_origins = ["app.example.com"]', "deploy.toml: api.cors_origins: expected an origin "
         "like https://app.example.com (scheme, host, port; no path), or *, got 'app.example.com'"),
        ('cors_origins = "https://a.example"', "deploy.toml: api.cors_origins: expected a list of "
         "origins like 'https://a.example', got 'https://a.example'"),
        ('cors_headers = ["Bad Header"]', "deploy.toml: api.cors_headers: expected a list of "
         "header names like 'Authorization', got 'Bad Header'"),
    ],
)
def test_bad_cors_settings_are_one_line(api: str, message: str) -> None:
    assert error_of(ONE_HOST + f"\n[api]\n{api}\n") == message


def test_the_deploy_sets_the_cors_and_proxy_variables_itself() -> None:
    message = error_of(ONE_HOST + '\n[environment]\nAPIPHANT_CORS_ORIGINS = "*"\n')
    assert message == ("deploy.toml: environment.APIPHANT_CORS_ORIGINS: set by the deploy from "
                       "[api] cors_origins, leave it out")


@pytest.mark.parametrize(
    "batch, workers, size",
    [(Batch(), 2, 1), (Batch(count=3), 10, 3), (Batch(count=3), 2, 1), (Batch(percent=25), 10, 3),
     (Batch(percent=50), 1, 1), (Batch(percent=100), 4, 3), (Batch(percent=1), 200, 2)],
)  # fmt: skip
def test_batch_size_is_never_the_whole_pool(batch: Batch, workers: int, size: int) -> None:
    assert batch.size(workers) == size


def test_batch_default_and_percent() -> None:
    assert parsed(ONE_HOST).batch == Batch(count=1)
    assert parsed("batch = '25%'\n" + ONE_HOST).batch == Batch(percent=25)
    assert str(parsed("batch = 4\n" + ONE_HOST).batch) == "4"


def test_fail_timeout_is_whole_seconds_and_says_when_a_worker_is_back() -> None:
    # Nginx skips a worker that refused in second S while now - S <= fail_timeout: 0 is the
    # rest of that second (the default: a rolling restart under load waits at most 1 s a
    # batch), 3 up to four seconds.
    assert parsed(ONE_HOST).nginx.fail_timeout == 0
    assert parsed(ONE_HOST).nginx.back_within == 1
    assert parsed(ONE_HOST + "[nginx]\nfail_timeout = 3\n").nginx.back_within == 4


def test_logs_rotate_daily_or_past_100m_checked_every_5_minutes_by_default() -> None:
    """[logs]: how every host's rotation program runs logrotate."""
    assert parsed(ONE_HOST).logs == Logs(max_size=100 * 1024**2, check_every=300.0)
    logs = parsed(ONE_HOST + "[logs]\nmax_size = '64K'\ncheck_every = 1\n").logs
    assert logs == Logs(max_size=65536, check_every=1.0)
    # Every host runs the rotation program, an Nginx-only front included.
    config = parsed(THREE_HOSTS)
    assert [config.programs(h)[-1] for h in config.hosts] == ["myproduct-logrotate"] * 3
    assert config.programs(config.host("front")) == ["myproduct-logrotate"]
