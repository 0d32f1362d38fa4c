"""What a deploy builds on the deploying machine: a wheel of apiphant, the release tarball.

The hosts run the apiphant the deployer runs (apiphant 1.x is not on the
package registry), byte for byte where it is installed: from a checkout
(editable, or on PYTHONPATH) ``pip wheel`` builds it from a copy of the
working tree, so the build never writes into the checkout; from a wheel or
an sdist, the installed files are packed back into a wheel.
"""

import base64
import csv
import getpass
import gzip
import hashlib
import io
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import zipfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import apiphant
from apiphant.deploy.config import Config, ConfigError
from apiphant.deploy.layout import RELEASE_ID
from apiphant.deploy.wheelhouse import cache_root

SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", ".git", ".venv", "venv"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".log", ".secrets.env")
SKIP_NAMES = {".env"}
#: Files of an installed distribution that describe the installation, not the package.
INSTALL_ONLY = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
#: A requirement line that names apiphant itself.
APIPHANT_REQUIREMENT = re.compile(r"\s*apiphant(?![A-Za-z0-9_.-])", re.IGNORECASE)

__all__ = ["RELEASE_ID"]


class BuildError(Exception):
    """The local build failed; one line and the tool's output tail."""


def release_id(now: datetime | None = None) -> str:
    """``20250102030405``: UTC, sortable, one for every host of a deploy."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")


def deployer() -> str:
    """user@machine of whoever deploys, safe to print and to write into a host's files."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "?", f"{getpass.getuser()}@{socket.gethostname()}")


def holder(release: str) -> str:
    """Who deploys what since when: written into the lock, shown to whoever finds it held."""
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{deployer()} since {since} (release {release})"


def checkout() -> Path | None:
    """The source tree the running apiphant comes from, or None when it is installed."""
    top = Path(apiphant.__file__).resolve().parent.parent
    return top if (top / "setup.py").is_file() and (top / "apiphant").is_dir() else None


def wheel_name() -> str:
    """The wheel's file name, known before it is built (for --dry-run and rendering)."""
    return f"apiphant-{apiphant.__version__}-py3-none-any.whl"


def check_requirements(config: Config) -> None:
    """A product that pins its own apiphant would mix two: refuse it, naming the line."""
    path = config.product_dir / "requirements.txt"
    if not path.is_file():
        return
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if APIPHANT_REQUIREMENT.match(line):
            raise ConfigError(
                f"{path}: line {number}: {line.strip()!r}: the deploy installs the apiphant "
                f"you run ({apiphant.__version__}) on the hosts; remove this line"
            )


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


def describe_build(workdir: Path) -> str:
    """What ``build_wheel`` will do, for --dry-run."""
    source = checkout()
    if source is None:
        return f"local: would pack the installed apiphant {apiphant.__version__} into a wheel"
    return "local $ " + " ".join(wheel_command(workdir / "source", workdir / "wheels"))


def build_wheel(workdir: Path) -> Path:
    """The wheel of the apiphant that runs this deploy: built from its checkout, or packed
    from its installed files."""
    source = checkout()
    if source is None:
        return pack_installed(workdir / "wheels")
    return build_from_checkout(workdir, source)


def build_from_checkout(workdir: Path, checkout: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the checkout; returns the wheel's path."""
    source = workdir / "source"
    for name in ("setup.py", "README.md", "pyproject.toml", "setup.cfg", "MANIFEST.in"):
        if (checkout / name).is_file():
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkout / name, source / name)
    for folder in ("apiphant", "myproduct", "deploy"):
        for path in _files(checkout / folder):
            target = source / folder / path.relative_to(checkout / folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    out = workdir / "wheels"
    # The same sources build the same wheel: a deploy of unchanged apiphant does not wait
    # for pip (seconds) but takes the one built last time.
    cached = cache_root("built") / f"{tree_digest(source)}-{wheel_name()}"
    if cached.is_file():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cached, out / cached.name.split("-", 1)[1])
        print(f"local: the apiphant wheel of these sources from the cache ({cached})", flush=True)
        return out / wheel_name()
    command = wheel_command(source, out)
    print("local $ " + " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BuildError(f"building the apiphant wheel failed:\n{tail}")
    wheel = out / wheel_name()
    if not wheel.is_file():
        found = ", ".join(p.name for p in out.glob("*.whl")) or "nothing"
        raise BuildError(f"expected {wheel.name} from pip wheel, got {found}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(cached.name + ".partial")
    shutil.copy2(wheel, partial)
    partial.replace(cached)
    return wheel


def tree_digest(folder: Path) -> str:
    """Every file's path, mode and bytes under ``folder``: what a wheel built from it holds."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder)}\0{path.stat().st_mode & 0o777}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def pack_installed(out: Path) -> Path:
    """The installed apiphant's files back into a wheel, with a fresh RECORD."""
    try:
        dist = metadata.distribution("apiphant")
    except metadata.PackageNotFoundError:
        raise BuildError("apiphant is neither installed nor run from a checkout") from None
    if dist.version != apiphant.__version__:
        raise BuildError(
            f"the installed apiphant is {dist.version}, the running one {apiphant.__version__}"
        )
    info = f"apiphant-{dist.version}.dist-info"
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / wheel_name()
    rows = []
    print(f"local: packing the installed apiphant {dist.version} into {wheel.name}", flush=True)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(dist.files or [], key=str):
            parts = file.parts
            if ".." in parts or "__pycache__" in parts or file.suffix == ".pyc":
                continue  # scripts outside site-packages are made again by pip on the host
            if parts[0] == info and parts[-1] in INSTALL_ONLY:
                continue
            data = Path(str(file.locate())).read_bytes()
            archive.writestr(str(file), data)
            rows.append((str(file), _record_hash(data), str(len(data))))
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows([*rows, (f"{info}/RECORD", "", "")])
        archive.writestr(f"{info}/RECORD", record.getvalue())
    return wheel


def files_archive(files: dict[str, tuple[bytes, int]], release: str) -> bytes:
    """A host's own files (name -> content, mode) as one gzipped tar: uploaded once and
    unpacked, instead of one upload per file. Root's, dated by the release id; the same
    files give the same bytes."""
    try:
        when = int(datetime.strptime(release, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp())
    except ValueError:
        when = 0
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            content, mode = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, when
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            archive.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def tarball_path(workdir: Path, config: Config, release: str, kind: str = "") -> Path:
    return workdir / f"{config.product}-{release}{'-' + kind if kind else ''}.tar.gz"


def build_tarball(
    config: Config, release: str, wheels: Path | list[Path], workdir: Path, kind: str = ""
) -> Path:
    """PRODUCT/ (no caches, no secrets, no .git), wheels/: apiphant's and every package the
    hosts install (the wheelhouse); one for all hosts. ``kind`` names another archive of the
    same release (``code``: no wheels, for hosts that have the release's virtualenv)."""
    path = tarball_path(workdir, config, release, kind)
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
        for wheel in [wheels] if isinstance(wheels, Path) else wheels:
            add(archive, wheel, f"wheels/{wheel.name}", 0o644)
    print(f"local: built {path} ({path.stat().st_size // 1024} KiB)", flush=True)
    return path
