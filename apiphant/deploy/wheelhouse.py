"""Every package a release installs, as wheels fetched once on the deploying machine.

Hosts install with ``pip install --no-index`` from the wheels that ride in the
release: they need no route to a package registry, and every host of a deploy
gets byte-identical packages. The deployer asks each host for its Python and
platform (``facts_command``), then ``pip download``s binary wheels for each
distinct platform into one folder, which pip on every host picks from by its
own tags. A requirement with no wheel (an sdist only) is built into one here,
with ``pip wheel``: pure Python serves every host; a compiled one only hosts of
this machine's platform. Downloads are cached on the deploying machine by what
they resolve from, so a deploy that changed only code downloads nothing.

Pure parts (the facts, the tags, the pip commands, the cache key) are apart from
the functions that run pip.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from shlex import quote as q

from apiphant.deploy.layout import VENV_DONE

__all__ = [
    "Platform",
    "WheelhouseError",
    "complete_venvs",
    "facts_command",
    "parse_facts",
    "platform_tags",
]

#: The oldest glibc manylinux wheels are built for (manylinux_2_5 is manylinux1).
OLDEST_GLIBC_MINOR = 5
#: The legacy manylinux names and the glibc each stands for.
LEGACY_MANYLINUX = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
FACTS = re.compile(
    r"(?P<impl>\w+) (?P<major>\d+)\.(?P<minor>\d+) (?P<machine>[\w.-]+)"
    r"(?: (?P<libc>\w+) (?P<libc_major>\d+)\.(?P<libc_minor>\d+))?"
)
#: Printed by a host's Python: "cpython 3.11 x86_64 glibc 2.36".
FACTS_SCRIPT = (
    "import platform, sys; "
    "print(sys.implementation.name, '%d.%d' % sys.version_info[:2], platform.machine(), "
    "*platform.libc_ver())"
)


class WheelhouseError(Exception):
    """A host whose platform has no wheels, or a download that failed; one line first."""


@dataclass(frozen=True, order=True)
class Platform:
    """What decides which wheels a host's pip takes."""

    python: str  # "3.11"
    machine: str  # "x86_64"
    glibc: tuple[int, int]  # (2, 36)

    def __str__(self) -> str:
        return f"Python {self.python} on {self.machine}, glibc {self.glibc[0]}.{self.glibc[1]}"


def facts_command(python: str, venvs: str) -> str:
    """Asks a host what its virtualenvs will run (the release's venv is made by ``python``)
    and, one ``venv KEY`` line each, which complete ones it has in ``venvs``: a host that has
    the release's gets no wheels (``complete_venvs``)."""
    each = (f'for f in {q(venvs)}/*/{VENV_DONE}; do [ -e "$f" ] && '
            'echo "venv $(basename "$(dirname "$f")")"')  # fmt: skip
    return f"{q(python)} -c {q(FACTS_SCRIPT)} && {{ {each}; done; true; }}"


def complete_venvs(text: str) -> frozenset[str]:
    """The keys of the complete virtualenvs a host named in its answer to ``facts_command``."""
    return frozenset(line[5:].strip() for line in text.splitlines() if line.startswith("venv "))


def parse_facts(host: str, text: str) -> Platform:
    """The host's answer to ``facts_command``, or one line saying why no wheel fits it."""
    lines = text.strip().splitlines()
    match = FACTS.fullmatch(lines[0] if lines else "")
    if match is None:
        raise WheelhouseError(f"{host}: cannot tell its Python and platform from {text.strip()!r}")
    if match["impl"] != "cpython":
        raise WheelhouseError(f"{host}: runs {match['impl']}; the deploy installs CPython wheels")
    if match["libc"] != "glibc":
        raise WheelhouseError(
            f"{host}: its C library is {match['libc'] or 'unknown'}, not glibc: "
            "the deploy installs manylinux wheels (Debian, Ubuntu and their kin)"
        )
    python = f"{match['major']}.{match['minor']}"
    return Platform(python, match["machine"], (int(match["libc_major"]), int(match["libc_minor"])))


def platform_tags(platform: Platform) -> list[str]:
    """Every manylinux tag a host's pip accepts, newest first: pip's ``--platform`` does not
    widen one tag to the older glibc versions it includes, so all are named."""
    major, minor = platform.glibc
    tags = [
        f"manylinux_{major}_{m}_{platform.machine}"
        for m in range(minor, OLDEST_GLIBC_MINOR - 1, -1)
    ]
    tags += [f"{name}_{platform.machine}" for name, m in LEGACY_MANYLINUX.items() if m <= minor]
    return tags


def download_command(
    platform: Platform, requirements: Path, dest: Path, built: Path | None = None,
    here: bool = False,
) -> list[str]:  # fmt: skip
    """``pip download`` of binary wheels for ``platform``: runs anywhere pip runs. ``built``:
    a folder of wheels built here (``build_command``) that pip takes as well, beside the
    index and find-links it is configured with; ``here``: the hosts are of this machine's
    platform, so a wheel compiled here (``linux_MACHINE``) fits them too."""
    abi = "cp" + platform.python.replace(".", "")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "--implementation", "cp", "--python-version",
               platform.python, "--abi", abi, "--abi", "abi3", "--abi", "none"]  # fmt: skip
    for tag in platform_tags(platform) + ([f"linux_{platform.machine}"] if here else []):
        command += ["--platform", tag]
    if built is not None:
        command += ["--find-links", str(built)]
    return [*command, "--dest", str(dest), "-r", str(requirements)]


#: pip's line for a requirement it found no wheel of (a direct one or a dependency).
NO_WHEEL = re.compile(r"^ERROR: No matching distribution found for (\S+)", re.M)
#: A requirement's project name, at its start (before any version, extra or marker).
PROJECT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def build_command(requirement: str, dest: Path) -> list[str]:
    """``pip wheel`` of one requirement from its sdist, without its dependencies (the next
    download fetches them as wheels, or says which one needs building too)."""
    name = PROJECT.match(requirement)
    assert name is not None  # NO_WHEEL matched a requirement pip printed
    return [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--no-binary", name.group(0), "--wheel-dir", str(dest),
            requirement]  # fmt: skip


def is_pure(wheel: Path) -> bool:
    """A wheel any CPython on any machine installs: its tags end ``-none-any``."""
    return wheel.name.removesuffix(".whl").endswith("-none-any")


def local_platform() -> Platform | None:
    """This machine's Python and platform, asked as a host is (``FACTS_SCRIPT``); None
    where no host's could match it (not glibc)."""
    done = subprocess.run([sys.executable, "-c", FACTS_SCRIPT], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    try:
        return parse_facts("this machine", done.stdout)
    except WheelhouseError:
        return None


def runs_here_built(platform: Platform, local: Platform | None) -> bool:
    """Whether a wheel compiled here runs on ``platform``'s hosts: the same Python and
    machine, and a glibc no older than this machine's."""
    return (local is not None and local.python == platform.python
            and local.machine == platform.machine and platform.glibc >= local.glibc)  # fmt: skip


def wheel_requirements(wheel: Path, extras: Iterable[str] = ()) -> list[str]:
    """A wheel's own dependencies (Requires-Dist), read from its metadata: those of no
    extra, and those of each of ``extras`` (their ``extra == "..."`` marker dropped); the
    same for a wheel built from a checkout and one packed from an installation."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode()
    wanted = {f'extra == "{extra}"' for extra in extras}
    found = []
    for line in text.splitlines():
        if not line.strip():
            break  # the headers end; the long description follows
        if line.startswith("Requires-Dist:"):
            value = line.partition(":")[2].strip()
            requirement, _, marker = (part.strip() for part in value.partition(";"))
            if "extra" not in marker:
                found.append(value)
            elif marker in wanted:
                found.append(requirement)
    return found


def cache_key(platform: Platform, requirements: Iterable[str]) -> str:
    """What a download depends on; unpinned requirements are fetched again once a day."""
    from datetime import UTC, datetime

    text = "\n".join([str(platform), datetime.now(UTC).strftime("%Y-%m-%d"), *requirements])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def packages_key(python: str, wheels: Iterable[Path], requirements: Iterable[str]) -> str:
    """What a release's virtualenv holds, as a name: the interpreter, each wheel's files
    (names, sizes and CRCs from the zip directory, so a wheel rebuilt from the same files
    matches whatever its timestamps) and the requirement lines. Equal keys, equal venvs."""
    digest = hashlib.sha256(python.encode())
    for wheel in sorted(wheels, key=lambda path: path.name):
        digest.update(f"\n{wheel.name}".encode())
        with zipfile.ZipFile(wheel) as archive:
            members = sorted(archive.infolist(), key=lambda info: info.filename)
            for info in members:
                if not info.filename.endswith(".dist-info/RECORD"):
                    digest.update(f"\n{info.filename} {info.file_size} {info.CRC}".encode())
    for line in requirements:
        digest.update(f"\n{line}".encode())
    return digest.hexdigest()[:16]


def cache_root(part: str = "wheelhouse") -> Path:
    """Where downloaded (and built) wheels are kept between deploys, as pip keeps its own."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "apiphant" / part


def describe(requirements: Iterable[str]) -> str:
    """What ``build`` will do, for --dry-run (the hosts' platforms are asked at deploy time)."""
    shown = ", ".join(requirements) or "nothing"
    return (
        "local: would ask each host with api or background (the hosts that get a virtualenv) "
        "for its Python and platform, then pip download binary "
        f"wheels for them, building here any that has none (cached in {cache_root()}): "
        f"{shown}"
    )


def build(platforms: Iterable[Platform], requirements: list[str], dest: Path) -> list[Path]:
    """Wheels for every platform into ``dest``, from the cache or from pip; the files."""
    dest.mkdir(parents=True, exist_ok=True)
    for platform in sorted(set(platforms)):
        cached = cache_root() / cache_key(platform, requirements)
        if not (cached / ".complete").is_file():
            _download(platform, requirements, cached)
        else:
            print(f"local: wheels for {platform} from the cache ({cached})", flush=True)
        for wheel in cached.glob("*.whl"):
            shutil.copy2(wheel, dest / wheel.name)
    return sorted(dest.glob("*.whl"))


#: At most this many requirements are built from their sdists for one platform.
MAX_BUILT = 50


def _download(platform: Platform, requirements: list[str], cached: Path) -> None:
    """``pip download`` for ``platform``; each requirement it finds no wheel of is built
    here (``_build``) and the download tried again, until every one has a wheel."""
    partial = cached.with_name(cached.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    listing = partial / "requirements.txt"
    listing.write_text("".join(f"{line}\n" for line in requirements))
    built = partial / ".built"
    local: Platform | None = None
    here, tried = False, set()
    try:
        while True:
            command = download_command(platform, listing, partial,
                                       built if tried else None, here)  # fmt: skip
            print("local $ " + " ".join(command), flush=True)
            done = subprocess.run(command, capture_output=True, text=True, timeout=900)
            if done.returncode == 0:
                break
            output = done.stdout + done.stderr
            missing = NO_WHEEL.search(output)
            if missing is None or missing[1] in tried or len(tried) >= MAX_BUILT:
                lines = [x for x in output.splitlines() if x.startswith("ERROR")]
                raise WheelhouseError(
                    f"no wheels for {platform}: {(lines or ['pip download failed'])[-1]} "
                    "(the hosts install binary wheels only: pin a release that has them)"
                )
            if local is None:
                local = local_platform()
            tried.add(missing[1])
            here = _build(missing[1], platform, local, built) or here
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    listing.unlink()
    shutil.rmtree(built, ignore_errors=True)
    (partial / ".complete").write_text(str(platform) + "\n")
    shutil.rmtree(cached, ignore_errors=True)
    partial.rename(cached)


def _build(requirement: str, platform: Platform, local: Platform | None, built: Path) -> bool:
    """A wheel of ``requirement`` from its sdist, built here into ``built``; returns whether
    it is compiled (and fits ``platform``'s hosts, or this raises: one line naming it)."""
    print(f"local: {requirement}: no wheel for {platform}; building one from its sdist",
          flush=True)  # fmt: skip
    built.mkdir(exist_ok=True)
    before = set(built.glob("*.whl"))
    command = build_command(requirement, built)
    print("local $ " + " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    made = sorted(set(built.glob("*.whl")) - before)
    if done.returncode != 0 or not made:
        lines = [x.strip() for x in (done.stdout + done.stderr).splitlines() if x.strip()]
        errors = [x for x in lines if x.startswith("ERROR")]
        raise WheelhouseError(
            f"{requirement}: no wheel for {platform}, and building one from its sdist failed: "
            f"{(errors or lines or ['pip wheel failed'])[-1]}"
        )
    wheel = made[0]
    if is_pure(wheel):
        return False
    if runs_here_built(platform, local):
        return True
    raise WheelhouseError(
        f"{requirement}: no wheel for {platform}, and its sdist has compiled parts: built "
        f"here it is {wheel.name}, for {local or 'this machine'}, not the hosts' platform; "
        "build its wheel on a machine like the hosts (into pip's find-links), or pin a "
        "release that has wheels"
    )
