"""What a deploy builds on the deploying machine: a wheel of apiphant, the release tarball.

The wheel is built from a copy of the checkout (the working tree, committed
or not), so the build never writes into the checkout other engineers use.
"""

import getpass
import re
import shutil
import socket
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from apiphant.deploy import CHECKOUT
from apiphant.deploy.config import Config

RELEASE = re.compile(r"[0-9]{14}")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", ".git", ".venv", "venv"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".log", ".secrets.env")
SKIP_NAMES = {".env"}


class BuildError(Exception):
    """The local build failed; one line and the tool's output tail."""


def release_id(now: datetime | None = None) -> str:
    """``20250102030405``: UTC, sortable, one for every host of a deploy."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")


def holder(release: str) -> str:
    """Who deploys what since when: written into the lock, shown to whoever finds it held."""
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    who = re.sub(r"[^A-Za-z0-9_.@-]", "?", f"{getpass.getuser()}@{socket.gethostname()}")
    return f"{who} since {since} (release {release})"


def apiphant_version(checkout: Path = CHECKOUT) -> str:
    match = re.search(r"""version\s*=\s*["']([^"']+)["']""", (checkout / "setup.py").read_text())
    if not match:
        raise BuildError(f"no version= in {checkout / 'setup.py'}")
    return match.group(1)


def wheel_name(checkout: Path = CHECKOUT) -> str:
    """The wheel's file name, known before it is built (for --dry-run and rendering)."""
    return f"apiphant-{apiphant_version(checkout)}-py3-none-any.whl"


def _skip(path: Path) -> bool:
    return (
        bool(SKIP_DIRS & set(path.parts))
        or path.name.endswith(SKIP_SUFFIXES)
        or path.name in SKIP_NAMES
    )


def _files(folder: Path, exclude: set[Path] = frozenset()) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not _skip(p.relative_to(folder)) and p.resolve() not in exclude
    )


def wheel_command(source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)]


def build_wheel(workdir: Path, checkout: Path = CHECKOUT) -> Path:
    """``pip wheel --no-deps`` of a copy of the checkout; returns the wheel's path."""
    source = workdir / "source"
    for name in ("setup.py", "README.md", "pyproject.toml", "setup.cfg", "MANIFEST.in"):
        if (checkout / name).is_file():
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkout / name, source / name)
    for folder in ("apiphant", "myproduct"):
        for path in _files(checkout / folder):
            target = source / folder / path.relative_to(checkout / folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    out = workdir / "wheels"
    command = wheel_command(source, out)
    print("local $ " + " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BuildError(f"building the apiphant wheel failed:\n{tail}")
    wheel = out / wheel_name(checkout)
    if not wheel.is_file():
        found = ", ".join(p.name for p in out.glob("*.whl")) or "nothing"
        raise BuildError(f"expected {wheel.name} from pip wheel, got {found}")
    return wheel


def tarball_path(workdir: Path, config: Config, release: str) -> Path:
    return workdir / f"{config.product}-{release}.tar.gz"


def build_tarball(
    config: Config, release: str, wheel: Path, workdir: Path, checkout: Path = CHECKOUT
) -> Path:
    """PRODUCT/ (no caches, no secrets), test.sh, wheels/apiphant-*.whl: one for all hosts."""
    path = tarball_path(workdir, config, release)
    exclude = {config.secrets.resolve()} if config.secrets else set()

    def add(archive: tarfile.TarFile, source: Path, name: str, mode: int) -> None:
        info = archive.gettarinfo(str(source), arcname=name)
        info.mode = mode
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        with source.open("rb") as stream:
            archive.addfile(info, stream)

    with tarfile.open(path, "w:gz") as archive:
        for file in _files(config.product_dir, exclude):
            relative = file.relative_to(config.product_dir)
            mode = 0o755 if file.stat().st_mode & 0o100 else 0o644
            add(archive, file, f"{config.product}/{relative}", mode)
        add(archive, checkout / "test.sh", "test.sh", 0o755)
        add(archive, wheel, f"wheels/{wheel.name}", 0o644)
    print(f"local: built {path} ({path.stat().st_size // 1024} KiB)", flush=True)
    return path
