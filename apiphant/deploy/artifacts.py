"""What a deploy builds on the deploying machine: a wheel of apiphant, the release tarball.

The hosts run the apiphant the deployer runs (apiphant 1.x is not on the
package registry), byte for byte where it is installed: from a checkout
(editable, or on PYTHONPATH) ``pip wheel`` builds it from a copy of the
working tree, so the build never writes into the checkout; from a wheel or
an sdist, the installed files are packed back into a wheel.
"""

import base64
import csv
import fnmatch
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
from dataclasses import dataclass
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
#: File names that look like a secret (keys, certificates, dotenv and secrets files): a
#: product folder outside git that holds one is refused, as its release would carry it to
#: every host. Secrets go in deploy.toml's secrets file; in git, only tracked files ship.
SECRET_NAMES = ("*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.kdbx", ".env*",
                "*secrets*.env", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc",
                ".pgpass")  # fmt: skip
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


@dataclass(frozen=True)
class Shipped:
    """The product's files a release ships, and what they are: in a git repository, the
    files git tracks in the product folder, as they are in the working tree, so what was
    run and tested here is what ships; ``commit`` and ``dirty`` (a tracked file differs
    from it) say which code that is, in the hosts' history. Outside git: every file but
    caches, and a secret-looking one is refused."""

    folder: Path
    files: tuple[Path, ...]
    #: The repository's top folder, None outside git.
    repository: Path | None = None
    commit: str = ""
    dirty: bool = False
    #: Files git does not track (and does not ignore): not shipped, said once.
    untracked: tuple[str, ...] = ()

    @property
    def revision(self) -> str:
        """``a1b2c3d4e5f6``, ``a1b2c3d4e5f6+dirty``, or ``none`` (outside git)."""
        if self.repository is None:
            return "none"
        return f"{self.commit or 'no-commit'}{'+dirty' if self.dirty else ''}"

    def describe(self) -> str:
        where = self.folder.name
        if self.repository is None:
            return (f"all {len(self.files)} files of {where}/ but caches ({where}/ is in no "
                    "git repository)")  # fmt: skip
        return (f"the {len(self.files)} files git tracks in {where}/, as they are in the "
                f"working tree (commit {self.revision})")  # fmt: skip


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess | None:
    """git in ``folder``; None when git is not installed."""
    try:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              timeout=60)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None


def _git_lines(folder: Path, *args: str) -> list[str]:
    done = _git(folder, *args)
    if done is None or done.returncode != 0:
        return []
    return [p for p in done.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def shipped(config: Config) -> Shipped:
    """Which of the product folder's files a release ships (``Shipped``); the secrets file
    named in deploy.toml never. Raises ConfigError (one line) for a product folder outside
    git that holds a file which looks like a secret, and for a repository git cannot read
    or that tracks none of the folder's files."""
    folder = config.product_dir
    exclude = {config.secrets.resolve()} if config.secrets else set()
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0:
        inside = next((p for p in (folder, *folder.parents) if (p / ".git").exists()), None)
        if inside is not None:
            why = ("git is not installed" if top is None else
                   top.stderr.decode(errors="replace").strip().splitlines()[0])  # fmt: skip
            raise ConfigError(
                f"{folder}: in the git repository {inside}, which git cannot read ({why}): "
                "a release ships the files git tracks"
            )
        files = _files(folder, exclude)
        for path in files:
            pattern = _secret_name(path.name)
            if pattern:
                raise ConfigError(
                    f"{path}: looks like a secret ({pattern}) in a product folder outside git, "
                    "whose every file ships to the hosts: move it out; put secrets in the "
                    "secrets file (deploy.toml: secrets = ...), or keep the product in git, "
                    "which ships only the files it tracks"
                )
        return Shipped(folder, tuple(files))
    tracked = _git_lines(folder, "ls-files", "-z", "--cached", "--recurse-submodules")
    files = sorted(
        path for path in (folder / name for name in tracked)
        if path.is_file() and not _skip(path.relative_to(folder))
        and path.resolve() not in exclude
    )  # fmt: skip
    repository = Path(top.stdout.decode(errors="surrogateescape").strip())
    if not files:
        raise ConfigError(
            f"{folder}: in the git repository {repository}, but git tracks none of its files: "
            "git add them (a release ships the files git tracks)"
        )
    commit, dirty = revision(folder)
    untracked = _git_lines(folder, "ls-files", "-z", "--others", "--exclude-standard")
    return Shipped(folder, tuple(files), repository, commit, dirty, tuple(untracked))


def revision(folder: Path) -> tuple[str, bool]:
    """The commit checked out where ``folder`` is (12 hex digits; "" outside git or before
    the first commit), and whether a file git tracks in the folder differs from it: what
    a release of it ships (``Shipped``), for the hosts' history."""
    commit = _git_lines(folder, "rev-parse", "--short=12", "HEAD")
    changed = _git_lines(folder, "status", "-z", "--porcelain", "--untracked-files=no", "--", ".")
    return (commit[0].strip() if commit else ""), bool(changed)


def _secret_name(name: str) -> str:
    """The pattern of ``SECRET_NAMES`` a file name matches, or ""."""
    lower = name.lower()
    return next((p for p in SECRET_NAMES if fnmatch.fnmatchcase(lower, p)), "")


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


#: A file that is not readable by all where it comes from: on the hosts, root's and readable
#: by the deployment's group only (``host.uploads.unpack_upload``), never by all.
PRIVATE = 0o004


def release_mode(mode: int) -> int:
    """A file's mode in the release: 0755 or 0644 by its owner's execute bit; 0750 or 0640
    when it was not readable by all (a private file stays private)."""
    shipped = 0o755 if mode & 0o100 else 0o644
    return shipped if mode & PRIVATE else shipped & 0o750


def build_tarball(
    config: Config, release: str, wheels: Path | list[Path], workdir: Path, kind: str = ""
) -> Path:
    """PRODUCT/ (``shipped``: in git, the files it tracks; never caches, secrets or .git),
    wheels/: apiphant's and every package the hosts install (the wheelhouse); one for all
    hosts. ``kind`` names another archive of the same release (``code``: no wheels, for
    hosts that have the release's virtualenv)."""
    path = tarball_path(workdir, config, release, kind)
    files = shipped(config).files

    def add(archive: tarfile.TarFile, source: Path, name: str, mode: int) -> None:
        info = archive.gettarinfo(str(source), arcname=name)
        info.mode = mode
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        with source.open("rb") as stream:
            archive.addfile(info, stream)

    with tarfile.open(path, "w:gz") as archive:
        for file in files:
            relative = file.relative_to(config.product_dir)
            add(archive, file, f"{config.product}/{relative}", release_mode(file.stat().st_mode))
        for wheel in [wheels] if isinstance(wheels, Path) else wheels:
            add(archive, wheel, f"wheels/{wheel.name}", 0o644)
    print(f"local: built {path} ({path.stat().st_size // 1024} KiB)", flush=True)
    return path
