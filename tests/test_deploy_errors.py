"""Clear errors from `fab`: one line that says what is wrong; exit status 2 for bad input,
1 for a host that fails.

(A held deploy lock is in test_deploy_e2e.py: it needs a real host.)
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import apiphant
from tests.deploy_helpers import CHECKOUT, fab, free_port

MYPRODUCT = CHECKOUT / "myproduct"


def error_line(done, status: int = 2) -> str:
    assert done.returncode == status, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]


def test_unknown_product() -> None:
    line = error_line(fab("deploy", "--product=nosuchproduct", "web1"))
    assert line.startswith("error: --product nosuchproduct: no product folder (with api/)")


def test_product_without_deploy_toml(tmp_path: Path) -> None:
    (tmp_path / "shop" / "api").mkdir(parents=True)
    line = error_line(fab("render", f"--product={tmp_path / 'shop'}"))
    assert line == (
        f"error: {tmp_path / 'shop' / 'deploy.toml'}: no such file: "
        "apiphant new writes one; or copy myproduct's"
    )


def test_bad_config_key(tmp_path: Path) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text(
        (MYPRODUCT / "deploy.toml").read_text().replace("workers = 2", "workers = 'x'")
    )
    line = error_line(fab("deploy", "--product=myproduct", "--config", str(config), "--dry-run"))
    assert line == (
        "error: deploy.toml: hosts.web1.workers: expected a positive integer up to 256, got 'x'"
    )


def test_unknown_host() -> None:
    line = error_line(fab("deploy", "--product=myproduct", "--dry-run", "web9"))
    assert line == "error: unknown host 'web9': deploy.toml has web1 (root@203.0.113.10)"


def test_unreachable_host(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = tmp_path / "deploy.toml"
    config.write_text(
        (MYPRODUCT / "deploy.toml")
        .read_text()
        .replace("root@203.0.113.10", f"root@127.0.0.1:{port}")
    )
    started = time.monotonic()
    done = fab("status", "--product=myproduct", "--config", str(config), "web1", timeout=60)
    line = error_line(done, 1)
    assert line.startswith(f"error: web1 (root@127.0.0.1:{port}): cannot connect: ")
    assert line.endswith("cannot connect: Connection refused")
    assert time.monotonic() - started < 30
    deploy = fab("deploy", "--product=myproduct", "--config", str(config), "web1", timeout=120)
    line = error_line(deploy, 1)
    assert line.endswith("cannot connect: Connection refused; nothing was changed on any host")
    assert "local $" not in deploy.stdout  # refused before building anything


def test_an_environment_that_does_not_exist() -> None:
    line = error_line(fab("render", "--product=myproduct", "-e", "staging"))
    assert line == (
        "error: --env staging: no environment 'staging': no deploy.staging.toml beside "
        "deploy.toml and no [env.staging] table in it"
    )


def test_a_release_command_that_is_not_a_string(tmp_path: Path) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text('release = ["python", "-m", "x"]\n' + (MYPRODUCT / "deploy.toml").read_text())
    line = error_line(fab("deploy", "--product=myproduct", "--config", str(config), "--dry-run"))
    assert line == (
        "error: deploy.toml: release: expected a one-line command string like "
        "'python -m shop.migrate', got ['python', '-m', 'x']"
    )


def test_a_folder_that_is_not_a_product(tmp_path: Path) -> None:
    (tmp_path / "fabfile.py").write_text("from apiphant.deploy.fabtasks import *  # noqa\n")
    done = subprocess.run([sys.executable, "-m", "fabric", "deploy", "--dry-run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    line = error_line(done)
    assert line == (
        f"error: --product is required: {tmp_path.resolve()} is not a product (no api/ folder); "
        "say which, like --product=myproduct"
    )


def test_a_product_that_pins_its_own_apiphant(tmp_path: Path) -> None:
    product = tmp_path / "myproduct"
    shutil.copytree(MYPRODUCT, product, ignore=shutil.ignore_patterns("__pycache__"))
    (product / "requirements.txt").write_text("requests\napiphant==0.2.5\n")
    line = error_line(fab("deploy", f"--product={product}", "--dry-run"))
    assert line == (
        f"error: {product / 'requirements.txt'}: line 2: 'apiphant==0.2.5': the deploy installs "
        f"the apiphant you run ({apiphant.__version__}) on the hosts; remove this line"
    )
