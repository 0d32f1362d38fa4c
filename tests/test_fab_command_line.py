"""``fab``'s command line as the kit rewrites it (``argv.rewrite_fabric_command_line``, the
one place that touches Fabric's own): hosts as bare words, ``-e`` for ``--env``, and
``fab run``'s command after ``--`` kept whole. Through the real ``fab`` and the
repository's fabfile, with --dry-run: nothing is connected to."""

import os
import subprocess
import sys
from pathlib import Path

from tests.deploy_helpers import CHECKOUT

MULTIHOST = "--config=myproduct/deploy.multihost.toml.example"


def fab(home: Path, *args: str) -> subprocess.CompletedProcess:
    # The multihost example names ~/.config/apiphant/myproduct.secrets.env.
    secrets = home / ".config" / "apiphant" / "myproduct.secrets.env"
    secrets.parent.mkdir(parents=True, exist_ok=True)
    secrets.touch(mode=0o600)
    env = dict(os.environ, HOME=str(home), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "fabric", *args], cwd=CHECKOUT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_bare_words_after_a_task_are_its_hosts_and_a_flags_value_is_not(tmp_path: Path) -> None:
    done = fab(tmp_path, "history", "--product=myproduct", MULTIHOST, "--dry-run", "api1",
               "front", "--lines", "3")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    asked = [line for line in done.stdout.splitlines() if line.endswith("] history")]
    assert asked == ["[front] history", "[api1] history"]  # deploy.toml's order; not api2
    assert "tail -n 3 " in done.stdout


def test_the_command_after_dashes_is_fab_runs_each_word_kept_whole(tmp_path: Path) -> None:
    done = fab(tmp_path, "run", "--product=myproduct", "--dry-run", "web1", "--", "python",
               "-c", "print('a b')")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[web1] run in the current release as myproduct: python -c 'print('\"'\"'a b" \
        "'\"'\"')'" in done.stdout


def test_dash_e_is_env(tmp_path: Path) -> None:
    done = fab(tmp_path, "status", "--product=myproduct", "--dry-run", "-e", "nosuch", "web1")
    assert done.returncode == 2
    assert done.stdout.startswith("error: --env nosuch: no environment 'nosuch'")
