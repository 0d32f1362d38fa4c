"""A login whose sudo asks for a password ($APIPHANT_SUDO_PASSWORD): only sudo ever reads it.

A real sshd on 127.0.0.1 and a real user whose sudoers line asks for a password (as
Debian's ``%sudo ALL=(ALL:ALL) ALL`` does). The password goes to the kit's own sudo on
stdin, once per command; a command whose output shows a ``[sudo] password:`` prompt (a
log line, ``fab run``: output an attacker may control) must never receive it, and it is
never in the output, the history or a dry run.
"""

import os
import pwd
import secrets
import shutil
import time
import tomllib
from pathlib import Path

import pytest
from fabric import Config as FabricConfig

from apiphant.deploy import ssh, tasks
from apiphant.deploy.config import SUDO_PASSWORD_ENV, parse
from apiphant.deploy.errors import DeployError
from apiphant.deploy.plan import Step
from apiphant.deploy.ssh import Remote
from tests.deploy_helpers import Sshd, run

LOGIN = "apiphantsudopw"
SUDOERS = Path(f"/etc/sudoers.d/{LOGIN}")
#: A product made for the test (its deployment's root is /opt/PRODUCT, removed after).
PRODUCT = "sudoprobe"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="makes a user and a sudoers file: needs root"),
    pytest.mark.skipif(not (Path("/usr/sbin/sshd").exists() and shutil.which("sudo")),
                       reason="needs sshd and sudo"),  # fmt: skip
]

#: Output an attacker controls, as a log line or a `fab run` command's would be: sudo's
#: prompt, then a read of whatever comes in on stdin.
HOSTILE = "printf '[sudo] password: \\n'; IFS= read -r got; echo \"read=[$got]\""


def sudoers(line: str) -> None:
    SUDOERS.write_text(f"{LOGIN} {line}\n")
    SUDOERS.chmod(0o440)


class Login:
    """The user, its password, the sshd it logs in through, and a product that deploys to it."""

    def __init__(self, folder: Path, sshd: Sshd, password: str) -> None:
        self.password = password
        self.key = sshd.key
        self.product = folder / PRODUCT
        (self.product / "api").mkdir(parents=True)
        (self.product / "deploy.toml").write_text(
            f'product = "{PRODUCT}"\nserver_names = ["api.example.com"]\n'
            f'[hosts.web1]\nssh = "{LOGIN}@127.0.0.1:{sshd.port}"\nroles = ["nginx", "api"]\n'
        )
        text = (self.product / "deploy.toml").read_text()
        self.config = parse(tomllib.loads(text), self.product / "deploy.toml", self.product)
        self.fabric = FabricConfig(overrides={"connect_kwargs": {"key_filename": [str(self.key)]}})

    def remote(self, lines: list[str]) -> Remote:
        return Remote(self.config, self.fabric, lines.append)


@pytest.fixture(scope="module")
def login(tmp_path_factory: pytest.TempPathFactory):
    if run(f"id -u {LOGIN}").returncode == 0:
        pytest.skip(f"user {LOGIN} exists, not touched")
    if Path(f"/opt/{PRODUCT}").exists():
        pytest.skip(f"/opt/{PRODUCT} exists, not touched")
    folder = tmp_path_factory.mktemp("sudo")
    password = "pw-" + secrets.token_hex(12)
    made = False
    try:
        assert run(f"useradd --create-home --shell /bin/bash {LOGIN}").returncode == 0
        made = True
        chpasswd = run(f"echo '{LOGIN}:{password}' | chpasswd")
        assert chpasswd.returncode == 0, chpasswd.stderr
        sudoers("ALL=(ALL:ALL) ALL")
        with Sshd(folder / "ssh") as sshd:
            home = Path(pwd.getpwnam(LOGIN).pw_dir)
            (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
            key = (sshd.folder / "client_key.pub").read_text()
            (home / ".ssh" / "authorized_keys").write_text(key)
            shutil.chown(home / ".ssh", LOGIN, LOGIN)
            shutil.chown(home / ".ssh" / "authorized_keys", LOGIN, LOGIN)
            yield Login(folder, sshd, password)
    finally:
        SUDOERS.unlink(missing_ok=True)
        shutil.rmtree(f"/opt/{PRODUCT}", ignore_errors=True)
        if made:
            remove_user()


def remove_user() -> None:
    """userdel refuses while a process of the user runs: an SSH session's ends a moment
    after its connection closed."""
    for _ in range(100):
        gone = run(f"userdel --remove {LOGIN}")
        if run(f"id -u {LOGIN}").returncode != 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"user {LOGIN} not removed: {gone.stderr.strip()}")


def test_a_prompt_in_a_commands_output_never_gets_the_password(
    login: Login, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, Fabric's sudo watched the output and typed the password after every
    ``[sudo] password:`` it saw there: the command read it from its stdin and printed it.
    Then ``fab unlock`` through the same sudo, and its dry run: the history line written on
    the host, and everything printed, hold no password either."""
    monkeypatch.setenv(SUDO_PASSWORD_ENV, login.password)
    lines: list[str] = []
    remote = login.remote(lines)
    try:
        assert remote.run(Step("web1", "who", "id -un")).strip() == "root"
        said = remote.run(Step("web1", "hostile output", HOSTILE, timeout=30))
        assert "read=[]" in said  # its stdin was empty
        # each command asks sudo anew, so each reads the password once: a second one works
        assert remote.run(Step("web1", "again", "id -un")).strip() == "root"
    finally:
        remote.close()
    assert not [line for line in lines if login.password in line]

    target = tasks.Target(str(login.product))
    assert tasks.unlock(target, fabric_config=login.fabric) == 0
    assert tasks.unlock(target, dry_run=True) == 0
    printed = capsys.readouterr().out
    assert "dry run: nothing was run" in printed
    history = Path(f"/opt/{PRODUCT}/history.log").read_text()
    assert " unlock outcome=ok " in history
    assert login.password not in printed and login.password not in history


def test_a_password_sudo_does_not_ask_for_is_read_by_no_one(
    login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same login with passwordless sudo and the password still set: sudo reads
    nothing, and the command's stdin is not where the password waits."""
    monkeypatch.setenv(SUDO_PASSWORD_ENV, login.password)
    sudoers("ALL=(ALL:ALL) NOPASSWD: ALL")
    lines: list[str] = []
    remote = login.remote(lines)
    try:
        said = remote.run(Step("web1", "hostile output", HOSTILE, timeout=30))
        assert "read=[]" in said
        assert remote.run(Step("web1", "who", "id -un")).strip() == "root"
    finally:
        remote.close()
        sudoers("ALL=(ALL:ALL) ALL")
    assert not [line for line in lines if login.password in line]


def test_a_password_written_after_a_passwordless_command_ended_is_no_error(
    login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invoke writes stdin from a thread of its own. Before, the remote command did not wait
    for the password, so with passwordless sudo a quick one could end before that thread
    wrote, and the write to the closed channel failed the step ("Socket is closed"). The
    first read of the password is held back here until after such a command ends; now the
    remote shell reads the line before sudo starts, so the command waits for it."""
    monkeypatch.setenv(SUDO_PASSWORD_ENV, login.password)
    sudoers("ALL=(ALL:ALL) NOPASSWD: ALL")
    plain_read = ssh._Line.read
    held: list[bool] = []

    def late_read(self: ssh._Line, size: int | None = -1) -> str:
        if not held:
            held.append(True)
            time.sleep(1)  # orders the write after `true` ended (it takes milliseconds)
        return plain_read(self, size)

    monkeypatch.setattr(ssh._Line, "read", late_read)
    lines: list[str] = []
    remote = login.remote(lines)
    try:
        assert remote.run(Step("web1", "who", "id -un", timeout=30)).strip() == "root"
    finally:
        remote.close()
        sudoers("ALL=(ALL:ALL) ALL")
    assert held


def test_a_wrong_password_is_one_line_naming_the_login(
    login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SUDO_PASSWORD_ENV, "not-" + login.password)
    lines: list[str] = []
    remote = login.remote(lines)
    try:
        with pytest.raises(DeployError) as refused:
            remote.run(Step("web1", "who", "id -un", timeout=30))
    finally:
        remote.close()
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"web1: user {LOGIN} may not run this as root with sudo")
    assert SUDO_PASSWORD_ENV in message and login.password not in message
