"""What a release ships of the product folder: in git, the files git tracks; outside git, no
file that looks like a secret. Real git, real tarballs, in temporary folders."""

import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from apiphant.deploy import artifacts, tasks
from apiphant.deploy.config import ConfigError, load
from tests.deploy_helpers import CHECKOUT, fab

MYPRODUCT = CHECKOUT / "myproduct"
RELEASE = "20260102030405"
GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c",
       "init.defaultBranch=main"]  # fmt: skip
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run([*GIT, "-C", str(repo), *args], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def copy_product(folder: Path) -> Path:
    product = folder / "myproduct"
    shutil.copytree(MYPRODUCT, product, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return product


def members(tarball: Path) -> dict[str, int]:
    """The product's files in a release tarball, by name, with their modes."""
    with tarfile.open(tarball) as archive:
        return {m.name.removeprefix("myproduct/"): stat.S_IMODE(m.mode)
                for m in archive.getmembers() if m.name.startswith("myproduct/")}  # fmt: skip


def tarball(config, tmp_path: Path) -> Path:
    wheel = tmp_path / "apiphant-1.0.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return artifacts.build_tarball(config, RELEASE, wheel, work)


def test_a_release_ships_the_files_git_tracks_and_nothing_else(tmp_path: Path) -> None:
    """The user's own repository, the product a folder inside it. What a developer's folder
    holds beside the code (a key, env and secrets files, notes, the rendered configs the
    generated README suggests) is untracked or ignored: none of it ships. Tracked files
    ship as they are in the working tree (a modified one modified, which the history marks
    +dirty); a private one stays private."""
    repo = tmp_path / "repo"
    repo.mkdir()
    product = copy_product(repo)
    (repo / ".gitignore").write_text("rendered/\n*.secrets.env\n")
    (product / "private_data.json").write_text('{"internal": true}\n')
    (product / "private_data.json").chmod(0o600)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "shop")
    tracked = set(git(product, "ls-files").split())
    # What the deploying machine has beside the commit, none of it tracked:
    (product / "tls").mkdir()
    (product / "tls" / "privkey.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (product / "secrets.staging.env").write_text("TOKEN=staging\n")
    (product / ".env.production").write_text("TOKEN=production\n")
    (product / "notes-local.txt").write_text("the admin password is ...\n")
    (product / "rendered" / "web1").mkdir(parents=True)
    (product / "rendered" / "web1" / "run").write_text("#!/bin/sh\n")
    (product / "prod.secrets.env").write_text("TOKEN=prod\n")  # ignored by *.secrets.env
    # A tracked file changed, another deleted, both not committed.
    echo = product / "api" / "v0" / "echo.py"
    echo.write_text(echo.read_text() + "\n# changed\n")
    (product / "tests" / "test_api.py").unlink()
    config = load(product / "deploy.toml")

    shipped = artifacts.shipped(config)
    assert shipped.repository == repo and shipped.dirty
    assert shipped.revision == git(repo, "rev-parse", "--short=12", "HEAD").strip() + "+dirty"
    # The key and .env.production are ignored (the product's .gitignore, as `apiphant new`
    # writes it), the others untracked: the deploy names these, not the ignored ones.
    assert sorted(shipped.untracked) == ["notes-local.txt", "secrets.staging.env"]
    files = members(tarball(config, tmp_path))
    assert set(files) == tracked - {"tests/test_api.py"}
    with tarfile.open(tmp_path / "work" / f"myproduct-{RELEASE}.tar.gz") as archive:
        assert archive.extractfile("myproduct/api/v0/echo.py").read().endswith(b"# changed\n")
    assert files["private_data.json"] == 0o640  # root's, the deployment's group's only
    assert files["test.sh"] == 0o755 and files["api/v0/echo.py"] == 0o644
    line = tasks.audit_line(config, "deploy", "ok", RELEASE, shipped)
    commit = shipped.commit
    assert f" commit={commit} dirty=yes " in line and " files=tracked " in line

    git(repo, "add", "-A", "myproduct/api", "myproduct/tests")
    git(repo, "commit", "-q", "-m", "changed")
    again = artifacts.shipped(config)
    assert not again.dirty and again.revision == git(repo, "rev-parse", "--short=12",
                                                      "HEAD").strip()  # fmt: skip


def test_a_folder_in_git_with_nothing_tracked_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    product = copy_product(repo)
    with pytest.raises(ConfigError) as caught:
        artifacts.shipped(load(product / "deploy.toml"))
    assert str(caught.value) == (
        f"{product}: in the git repository {repo}, but git tracks none of its files: git add "
        "them (a release ships the files git tracks)"
    )


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("tls/privkey.pem", "*.pem"),
        ("server.key", "*.key"),
        (".env.production", ".env*"),
        ("secrets.staging.env", "*secrets*.env"),
        ("deploy/id_rsa", "id_rsa*"),
    ],
)
def test_outside_git_a_file_that_looks_like_a_secret_is_refused(
    tmp_path: Path, name: str, pattern: str
) -> None:
    """A product folder outside git ships all its files: one that looks like a secret stops
    the deploy before anything happens, in one line naming it and where secrets go."""
    product = copy_product(tmp_path)
    (product / name).parent.mkdir(parents=True, exist_ok=True)
    (product / name).write_text("KEY MATERIAL\n")
    config = load(product / "deploy.toml")
    with pytest.raises(ConfigError) as caught:
        artifacts.shipped(config)
    message = str(caught.value)
    assert message.startswith(f"{product / name}: looks like a secret ({pattern}) ")
    assert "secrets file (deploy.toml: secrets = ...)" in message and "\n" not in message
    done = fab("deploy", f"--product={product}", "--dry-run", timeout=60)
    errors = [line for line in done.stdout.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and errors == [f"error: {message}"], done.stdout


def test_outside_git_every_other_file_ships_and_private_ones_stay_private(
    tmp_path: Path,
) -> None:
    """Tests that build a product in a temporary folder keep working: outside git every file
    but caches ships (the kit's own secrets-file names stay out, as before), each file's
    privacy kept."""
    product = copy_product(tmp_path)
    (product / "notes.txt").write_text("notes\n")
    (product / "internal.json").write_text("{}\n")
    (product / "internal.json").chmod(0o600)
    (product / "tool.sh").write_text("#!/bin/sh\n")
    (product / "tool.sh").chmod(0o700)
    (product / "local.secrets.env").write_text("X=1\n")
    (product / ".env").write_text("X=1\n")
    (product / "__pycache__").mkdir()
    (product / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    config = load(product / "deploy.toml")
    shipped = artifacts.shipped(config)
    assert shipped.repository is None and shipped.revision == "none"
    files = members(tarball(config, tmp_path))
    expected = {str(p.relative_to(MYPRODUCT)) for p in MYPRODUCT.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}  # fmt: skip
    assert set(files) == expected | {"notes.txt", "internal.json", "tool.sh"}
    assert (files["notes.txt"], files["internal.json"], files["tool.sh"]) == (0o644, 0o640, 0o750)
    assert " files=folder " in tasks.audit_line(config, "deploy", "ok", RELEASE, shipped)
