"""apiphant/deploy/host/: each noun's commands as plain strings (as Kamal tests its builders),
run by sh on a folder that stands for a host's /opt, and read back by the noun's parser."""

import ast
import subprocess
from pathlib import Path

import pytest

from apiphant.deploy import layout as layout_module
from apiphant.deploy import plan, ssh
from apiphant.deploy.host import lock, nginx, releases, supervisor, uploads
from apiphant.deploy.layout import Layout


@pytest.fixture
def opt(tmp_path: Path, monkeypatch) -> Path:
    """The hosts' /opt, moved into the test's folder."""
    monkeypatch.setattr(layout_module, "ROOT", str(tmp_path))
    return tmp_path


def sh(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)


# The lock


def test_the_lock_commands() -> None:
    layout = Layout("shop", "staging")
    holder = "/opt/shop-staging/deploy.lock/holder"
    assert lock.lock(layout, "me since now") == (
        f"mkdir -p /opt/shop-staging && if mkdir /opt/shop-staging/deploy.lock 2>/dev/null; "
        f"then printf '%s\\n' 'me since now' > {holder}; "
        f'else echo "held by $(cat {holder} 2>/dev/null || echo unknown)"; exit 75; fi'
    )
    assert lock.unlock(layout) == (
        'if [ -d /opt/shop-staging/deploy.lock ]; then echo "removed the lock of '
        f'$(cat {holder} 2>/dev/null || echo unknown)"; rm -rf /opt/shop-staging/deploy.lock; '
        "else echo 'no lock held'; fi"
    )
    assert lock.state(layout) == (
        f'if [ -d /opt/shop-staging/deploy.lock ]; then echo "lock: held by $(cat {holder})"; '
        "else echo 'lock: free'; fi"
    )


def test_a_held_lock_names_its_holder_and_how_to_free_it(opt: Path) -> None:
    layout = Layout("shop")
    assert sh(lock.lock(layout, "ann since 2026-01-02T03:04:05Z")).returncode == 0
    assert sh(lock.state(layout)).stdout == "lock: held by ann since 2026-01-02T03:04:05Z\n"
    held = sh(lock.lock(layout, "bob since 2026-01-02T03:05:00Z"))
    assert held.returncode == lock.LOCKED
    holder = lock.parse_held(held.stdout)
    assert holder == "ann since 2026-01-02T03:04:05Z"
    said = lock.held_message("web1", holder, "shop")
    assert said == ("web1: the deploy lock is held by ann since 2026-01-02T03:04:05Z; wait for "
                    "that deploy, or if it died: fab unlock --product=shop web1")  # fmt: skip
    # What a deploy says when its lock step finds the lock held: the lock's own words.
    from types import SimpleNamespace

    config = SimpleNamespace(product="shop")
    step = plan.Step("web1", "take the deploy lock", "", kind="lock")
    result = SimpleNamespace(exited=lock.LOCKED, stdout=held.stdout, stderr="")
    assert ssh.Remote._failure(SimpleNamespace(config=config), step, result) == said
    assert sh(lock.unlock(layout)).stdout == (
        "removed the lock of ann since 2026-01-02T03:04:05Z\n")
    assert sh(lock.state(layout)).stdout == "lock: free\n"
    assert sh(lock.unlock(layout)).stdout == "no lock held\n"


# Releases


def test_the_release_listing_and_its_parser(opt: Path) -> None:
    layout = Layout("shop")
    assert releases.current_release(layout) == (
        f'basename "$(readlink -f {opt}/shop/current)" 2>/dev/null; true')
    assert releases.parse_current(sh(releases.current_release(layout)).stdout) == ""
    assert releases.parse_releases(sh(releases.releases(layout)).stdout) == []
    for release, good in (("20250101000000", True), ("20250102000000", False),
                          ("20250103000000", True)):  # fmt: skip
        Path(layout.release(release).dir).mkdir(parents=True)
        if good:
            Path(layout.release(release).good).touch()
    Path(layout.releases, "not-a-release").mkdir()
    Path(layout.current).symlink_to(layout.release("20250101000000").dir)
    assert releases.parse_current(sh(releases.current_release(layout)).stdout) == (
        "20250101000000")
    listed = sh(releases.releases(layout)).stdout
    assert listed == ("20250103000000 good \n20250102000000 failed \n"
                      "20250101000000 good current\n")  # fmt: skip
    rows = [("20250103000000", True, False), ("20250102000000", False, False),
            ("20250101000000", True, True)]  # fmt: skip
    assert releases.parse_releases(listed) == rows


# Uploads


@pytest.mark.parametrize("upload", [
    plan.Upload("/opt/shop/supervise.py", 0o644, "supervise.py", content=b"x"),
    plan.Upload("/opt/shop/releases/R/config/secrets.env", 0o640, "s", group="shop",
                content=b"T=1\n", secret=True),
    plan.Upload("/opt/shop/releases/R", 0o644, "code", group="shop", unpack=True),
])  # fmt: skip
def test_an_upload_is_staged_then_installed_as_root(upload: plan.Upload) -> None:
    stage, install = uploads.upload_commands(upload, "/tmp/apiphant-upload.x")
    assert stage == "mktemp /tmp/apiphant-upload.XXXXXXXX"
    if upload.unpack:
        assert install.startswith("tar -xzf /tmp/apiphant-upload.x -C /opt/shop/releases/R ")
    else:
        directory, _, name = upload.remote.rpartition("/")
        assert install == (
            f"install -m {upload.mode:04o} -o root -g {upload.group} /tmp/apiphant-upload.x "
            f"{directory}/.{name}.upload && rm -f /tmp/apiphant-upload.x && "
            f"mv -Tf {directory}/.{name}.upload {upload.remote}"
        )


# Paths: layout's alone


def _strings(tree: ast.AST) -> list[str]:
    """The string constants of a module's code: not its docstrings."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}  # fmt: skip
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings]  # fmt: skip


def test_no_builder_spells_a_file_of_the_layout() -> None:
    """The rendered files, the marks and the health path are named by layout alone: a
    builder that spells one would miss it the day it moves."""
    from apiphant.deploy import host

    spelled = ("/health", "supervisor.conf", "nginx-main.conf", "nginx-http.conf", "/config",
               ".good", "/venv")  # fmt: skip
    folder = Path(host.__file__).parent
    found = [(path.name, text) for path in sorted(folder.glob("*.py"))
             for text in _strings(ast.parse(path.read_text()))
             if any(name in text for name in spelled)]  # fmt: skip
    assert not found


def test_a_releases_files_by_name() -> None:
    paths = Layout("shop").release("20250102030405")
    assert paths.file(layout_module.SUPERVISOR_CONF_FILE) == (
        "/opt/shop/releases/20250102030405/config/supervisor.conf")
    assert Layout("shop").current_file(layout_module.NGINX_SITE_FILE) == (
        "/opt/shop/current/config/nginx.conf")
    assert layout_module.run_script(paths.dir) == "/opt/shop/releases/20250102030405/config/run"
    assert (paths.good, paths.venv, paths.secrets) == (
        "/opt/shop/releases/20250102030405/.good", "/opt/shop/releases/20250102030405/venv",
        "/opt/shop/releases/20250102030405/config/secrets.env")
    assert layout_module.HEALTH_PATH == "/health"


# The kit's programs on a host


def test_the_kits_programs_do_what_runs_on_a_host_as_a_program() -> None:
    """Supervisor's start, the cleanup and the rotation check are Python (tested as such in
    test_supervise and test_agent), run by the host's system Python from the deployment's
    folder, where each activation uploads them."""
    layout = Layout("shop")
    assert supervisor.supervisor_ready(layout) == (
        "/usr/bin/python3 /opt/shop/supervise.py -c /etc/supervisor/supervisord.conf ready "
        "--service supervisor")  # fmt: skip
    assert releases.cleanup(layout, 5) == (
        "/usr/bin/python3 /opt/shop/agent.py cleanup --keep 5 --releases /opt/shop/releases "
        "--current /opt/shop/current --venvs /opt/shop/venvs "
        "--shared-secrets /opt/shop/shared/secrets.env")  # fmt: skip
    assert nginx.in_rotation(layout, "http://127.0.0.1:8000/main", "rotation.apiphant.invalid",
                             "X-Apiphant-Upstream", "[fd00::1]:8001", 1, rounds=3) == (
        "/usr/bin/python3 /opt/shop/agent.py rotation http://127.0.0.1:8000/main "
        "--host rotation.apiphant.invalid --header X-Apiphant-Upstream "
        "--address '[fd00::1]:8001' --back-within 1 --slack 10 --rounds 3")  # fmt: skip
