"""Clear errors from `fab`: one line that says what is wrong, and exit status 1.

(A held deploy lock is in test_deploy_e2e.py: it needs a real host.)
"""

import time
from pathlib import Path

from tests.deploy_helpers import CHECKOUT, fab, free_port

MYPRODUCT = CHECKOUT / "myproduct"


def error_line(done) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
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
    line = error_line(done)
    assert line.startswith(f"error: web1 (root@127.0.0.1:{port}): cannot connect: ")
    assert line.endswith("cannot connect: Connection refused")
    assert time.monotonic() - started < 30
    deploy = fab("deploy", "--product=myproduct", "--config", str(config), "web1", timeout=120)
    assert deploy.returncode == 1
    assert "cannot connect" in deploy.stdout and "nothing live was touched" in deploy.stdout
