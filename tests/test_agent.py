"""apiphant/deploy/agent.py, the deploy's host agent: the cleanup of old releases and the
rotation check, run as the deploy runs them (the builder's command, by sh, with the host's
system Python) on a folder that stands for a host's /opt."""

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from apiphant.deploy import agent
from apiphant.deploy import layout as layout_module
from apiphant.deploy.host.nginx import in_rotation
from apiphant.deploy.host.releases import cleanup
from apiphant.deploy.layout import Layout

AGENT = Path(agent.__file__)


@pytest.fixture
def shop(tmp_path: Path, monkeypatch) -> Layout:
    """A deployment in the test's folder, with the agent where an activation puts it."""
    monkeypatch.setattr(layout_module, "ROOT", str(tmp_path / "opt"))
    layout = Layout("shop")
    for folder in (layout.releases, layout.venvs, layout.shared):
        Path(folder).mkdir(parents=True)
    shutil.copy(AGENT, layout.agent)
    return layout


def sh(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)


def release(layout: Layout, release_id: str, good: bool, venv: str = "") -> None:
    paths = layout.release(release_id)
    Path(paths.config).mkdir(parents=True)
    if good:
        Path(paths.good).touch()
    if venv:
        Path(layout.venv(venv)).mkdir(exist_ok=True)
        Path(paths.venv).symlink_to(layout.venv(venv))


def test_the_agent_names_a_releases_files_as_the_layout_does() -> None:
    """It cannot import apiphant on a host: its copies of the names are held equal here."""
    assert agent.RELEASE_ID.pattern == layout_module.RELEASE_ID.pattern
    assert (agent.GOOD, agent.VENV_LINK) == (layout_module.GOOD, layout_module.VENV_LINK)
    assert os.path.join("/r", *agent.RUN_SCRIPT) == layout_module.run_script("/r")


def test_cleanup_keeps_the_newest_good_releases_the_current_one_and_their_virtualenvs(
    shop: Layout,
) -> None:
    ids = [f"2025010{n}000000" for n in range(1, 7)]
    release(shop, ids[0], good=True, venv="b")
    release(shop, ids[1], good=True, venv="a")
    release(shop, ids[2], good=False, venv="c")
    release(shop, ids[3], good=True, venv="a")
    release(shop, ids[4], good=False, venv="a")  # current, though it failed (a rollback's)
    release(shop, ids[5], good=True, venv="a")
    Path(shop.current).symlink_to(shop.release(ids[4]).dir)
    Path(shop.releases, "notes").mkdir()  # not a release: left alone
    Path(shop.venvs, "unused").mkdir()
    Path(shop.venvs, "README").write_text("not a virtualenv\n")
    done = sh(cleanup(shop, 2))
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"removing release {ids[0]}\nremoving release {ids[1]}\nremoving release {ids[2]}\n"
        f"kept: {ids[5]} {ids[3]} \n"
        "removing virtualenv b\nremoving virtualenv c\nremoving virtualenv unused\n"
    )
    assert sorted(os.listdir(shop.releases)) == [ids[3], ids[4], ids[5], "notes"]
    assert sorted(os.listdir(shop.venvs)) == ["README", "a"]
    again = sh(cleanup(shop, 2))
    assert (again.returncode, again.stdout) == (0, f"kept: {ids[5]} {ids[3]} \n")


def test_cleanup_of_a_deployment_with_nothing_yet(shop: Layout) -> None:
    done = sh(cleanup(shop, 5))
    assert (done.returncode, done.stdout, done.stderr) == (0, "kept: \n", "")


def test_cleanup_keeps_the_virtualenvs_in_use_when_opt_is_a_link(tmp_path: Path,
                                                                 monkeypatch) -> None:  # fmt: skip
    """A host whose /opt is a link (to a bigger disk): the releases' links resolve through
    it, and a virtualenv in use is still one in use."""
    real = tmp_path / "disk"
    (real / "shop" / "releases").mkdir(parents=True)
    (real / "shop" / "venvs" / "a").mkdir(parents=True)
    (tmp_path / "opt").symlink_to(real)
    monkeypatch.setattr(layout_module, "ROOT", str(tmp_path / "opt"))
    layout = Layout("shop")
    shutil.copy(AGENT, layout.agent)
    release(layout, "20250101000000", good=True, venv="a")
    Path(layout.current).symlink_to(layout.release("20250101000000").dir)
    done = sh(cleanup(layout, 5))
    assert (done.returncode, done.stdout) == (0, "kept: 20250101000000 \n"), done.stderr
    assert os.listdir(layout.venvs) == ["a"]


def test_the_rotation_check_gives_up_on_a_front_that_does_not_answer(shop: Layout) -> None:
    """Nothing listens where the rotation server should be: bounded by back_within and the
    slack, then one line on stderr, exit status 1."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    command = in_rotation(shop, f"http://127.0.0.1:{port}/main", "rotation.invalid",
                          "X-Upstream", "10.0.0.1:8001", 0.1, slack=0.4)  # fmt: skip
    assert command == (
        f"/usr/bin/python3 {shop.agent} rotation http://127.0.0.1:{port}/main "
        "--host rotation.invalid --header X-Upstream --address 10.0.0.1:8001 --back-within 0.1 "
        "--slack 0.4 --rounds 1"
    )
    done = sh(command)
    assert done.returncode == 1
    assert done.stderr == ("Nginx sends no request to 10.0.0.1:8001: not back in rotation "
                           "after 0.5s\n")  # fmt: skip


def test_bad_arguments_are_exit_status_2(shop: Layout) -> None:
    done = sh(f"/usr/bin/python3 {shop.agent} cleanup --keep many")
    assert done.returncode == 2 and re.search(r"--keep: invalid int value", done.stderr)
