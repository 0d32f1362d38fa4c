"""The wheelhouse's pure parts: a host's facts, the tags pip is given, the command, the cache.

The download itself runs in every e2e deploy (tests/test_deploy_e2e.py and the multi-host
tests, whose hosts have no route to a registry).
"""

import subprocess
import zipfile
from pathlib import Path

import pytest

from apiphant.deploy import wheelhouse
from apiphant.deploy.wheelhouse import Platform, WheelhouseError

BOOKWORM = Platform("3.11", "x86_64", (2, 36))


def test_facts_of_this_machine_parse(tmp_path: Path) -> None:
    for key in ("aa11", "bb22", "cc33"):
        (tmp_path / key).mkdir()
    (tmp_path / "aa11" / ".complete").touch()
    (tmp_path / "cc33" / ".complete").touch()  # bb22: a build that died
    answer = subprocess.run(
        ["sh", "-c", wheelhouse.facts_command("python3", str(tmp_path))],
        capture_output=True,
        text=True,
    ).stdout
    found = wheelhouse.parse_facts("web1", answer)
    assert found.python.startswith("3.") and found.glibc[0] == 2
    assert wheelhouse.complete_venvs(answer) == {"aa11", "cc33"}
    none = subprocess.run(
        ["sh", "-c", wheelhouse.facts_command("python3", str(tmp_path / "none"))],
        capture_output=True,
        text=True,
    )
    assert none.returncode == 0 and wheelhouse.complete_venvs(none.stdout) == set()
    wrong = subprocess.run(
        ["sh", "-c", wheelhouse.facts_command("/nonexistent/python3", str(tmp_path))],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode != 0 and wrong.stdout == ""


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("cpython 3.11 x86_64 glibc 2.36\n", Platform("3.11", "x86_64", (2, 36))),
        ("cpython 3.12 aarch64 glibc 2.39", Platform("3.12", "aarch64", (2, 39))),
    ],
)
def test_facts(answer: str, expected: Platform) -> None:
    assert wheelhouse.parse_facts("web1", answer) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("cpython 3.11 x86_64  ", "web1: its C library is unknown, not glibc"),
        ("cpython 3.11 x86_64 musl 1.2", "web1: its C library is musl, not glibc"),
        ("pypy 3.10 x86_64 glibc 2.36", "web1: runs pypy"),
        ("bash: python3: not found", "web1: cannot tell its Python and platform"),
    ],
)
def test_hosts_no_wheel_fits_are_one_line(answer: str, expected: str) -> None:
    with pytest.raises(WheelhouseError) as caught:
        wheelhouse.parse_facts("web1", answer)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)


def test_tags_name_every_older_glibc_and_the_legacy_names() -> None:
    tags = wheelhouse.platform_tags(BOOKWORM)
    assert tags[0] == "manylinux_2_36_x86_64" and tags[31] == "manylinux_2_5_x86_64"
    assert tags[32:] == ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    old = wheelhouse.platform_tags(Platform("3.11", "x86_64", (2, 12)))
    assert "manylinux2014_x86_64" not in old and "manylinux2010_x86_64" in old


def test_download_command_asks_for_binary_wheels_of_the_host(tmp_path: Path) -> None:
    command = wheelhouse.download_command(BOOKWORM, tmp_path / "r.txt", tmp_path / "out")
    assert command[1:4] == ["-m", "pip", "download"]
    assert "--only-binary=:all:" in command
    pairs = list(zip(command, command[1:], strict=False))
    assert ("--python-version", "3.11") in pairs and ("--abi", "cp311") in pairs
    assert ("--platform", "manylinux_2_17_x86_64") in pairs
    assert command[-2:] == ["-r", str(tmp_path / "r.txt")]


def test_a_wheels_requirements_leave_out_extras(tmp_path: Path) -> None:
    wheel = tmp_path / "x-1.0-py3-none-any.whl"
    metadata = (
        "Metadata-Version: 2.1\nName: x\nVersion: 1.0\n"
        "Requires-Dist: gevent<27,>=24.2\n"
        'Requires-Dist: pytest>=8; extra == "test"\n'
        "Requires-Dist: tomli; python_version < \"3.11\"\n"
        "\nRequires-Dist: not-a-header-this-is-the-description\n"
    )
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("x-1.0.dist-info/METADATA", metadata)
    assert wheelhouse.wheel_requirements(wheel) == [
        "gevent<27,>=24.2",
        'tomli; python_version < "3.11"',
    ]


def test_a_wheels_requirements_with_an_extra_the_release_installs(tmp_path: Path) -> None:
    """apiphant's postgres extra, for a deployment with a database: its packages fetched
    on the deployer like the others, their marker dropped; other extras still left out."""
    wheel = tmp_path / "x-1.0-py3-none-any.whl"
    metadata = (
        "Metadata-Version: 2.1\nName: x\nVersion: 1.0\n"
        "Requires-Dist: gevent<27,>=24.2\n"
        'Requires-Dist: psycopg[binary]<4,>=3.3; extra == "postgres"\n'
        'Requires-Dist: psycopg_pool<4,>=3.3; extra == "postgres"\n'
        'Requires-Dist: pytest>=8; extra == "test"\n'
    )
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("x-1.0.dist-info/METADATA", metadata)
    assert wheelhouse.wheel_requirements(wheel, ("postgres",)) == [
        "gevent<27,>=24.2", "psycopg[binary]<4,>=3.3", "psycopg_pool<4,>=3.3"]
    assert wheelhouse.wheel_requirements(wheel) == ["gevent<27,>=24.2"]


def test_the_cache_key_follows_platform_and_requirements() -> None:
    key = wheelhouse.cache_key(BOOKWORM, ["gevent<27"])
    assert key == wheelhouse.cache_key(BOOKWORM, ["gevent<27"])
    assert key != wheelhouse.cache_key(BOOKWORM, ["gevent<26"])
    assert key != wheelhouse.cache_key(Platform("3.12", "x86_64", (2, 36)), ["gevent<27"])


def test_a_complete_cache_entry_is_used_without_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cached = wheelhouse.cache_root() / wheelhouse.cache_key(BOOKWORM, ["x"])
    cached.mkdir(parents=True)
    (cached / "x-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (cached / ".complete").write_text("")
    monkeypatch.setattr(wheelhouse, "_download", pytest.fail)  # the cache answers
    found = wheelhouse.build([BOOKWORM, BOOKWORM], ["x"], tmp_path / "out")
    assert [p.name for p in found] == ["x-1.0-py3-none-any.whl"]


def _wheel(path: Path, files: dict[str, str], when: tuple) -> Path:
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(zipfile.ZipInfo(name, when), text)
    return path


def test_the_packages_key_follows_content_not_timestamps(tmp_path: Path) -> None:
    files = {"x/__init__.py": "A = 1\n", "x-1.0.dist-info/METADATA": "Name: x\n"}
    early = _wheel(tmp_path / "early" / "x-1.0-py3-none-any.whl", files, (1980, 1, 1, 0, 0, 0))
    late = _wheel(tmp_path / "late" / "x-1.0-py3-none-any.whl", files, (2026, 12, 1, 3, 4, 5))
    changed = _wheel(
        tmp_path / "changed" / "x-1.0-py3-none-any.whl",
        {**files, "x/__init__.py": "A = 2\n"},
        (1980, 1, 1, 0, 0, 0),
    )
    key = wheelhouse.packages_key("/usr/bin/python3", [early], ["requests"])
    assert key == wheelhouse.packages_key("/usr/bin/python3", [late], ["requests"])
    assert key != wheelhouse.packages_key("/usr/bin/python3", [changed], ["requests"])
    assert key != wheelhouse.packages_key("/usr/bin/python3", [early], ["requests<3"])
    assert key != wheelhouse.packages_key("/usr/local/bin/python3", [early], ["requests"])
    assert len(key) == 16 and int(key, 16) >= 0


def test_the_built_wheel_is_cached_by_what_its_sources_hold(tmp_path) -> None:
    from apiphant.deploy.artifacts import tree_digest

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("A = 1\n")
    (tmp_path / "setup.py").write_text("")
    first = tree_digest(tmp_path)
    assert tree_digest(tmp_path) == first
    (tmp_path / "pkg" / "a.py").write_text("A = 2\n")
    assert tree_digest(tmp_path) != first
    (tmp_path / "pkg" / "a.py").write_text("A = 1\n")
    assert tree_digest(tmp_path) == first
    (tmp_path / "pkg" / "a.py").chmod(0o755)  # a mode is part of what is installed
    assert tree_digest(tmp_path) != first


def test_only_hosts_that_get_a_virtualenv_are_asked_for_their_platform() -> None:
    """An Nginx-only front gets no virtualenv: no wheels are fetched for its platform (it is
    asked about its system user alone, as every host is). Each host's question runs here,
    on this machine, as it would on the host."""
    import tomllib

    from apiphant.deploy import tasks
    from apiphant.deploy.config import parse
    from apiphant.deploy.console import DryRun
    from tests.test_deploy_config import MYPRODUCT, THREE_HOSTS

    config = parse(tomllib.loads(THREE_HOSTS), Path("deploy.toml"), MYPRODUCT)
    asked: list[str] = []

    class Here(DryRun):
        def query(self, host: str, command: str, why: str) -> str:
            if "Python" in why:
                asked.append(host)
            return subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout

    found, venvs = tasks.host_facts(Here(config, lambda line: None), config, list(config.hosts))
    assert sorted(asked) == ["a", "b"] and set(found) == set(venvs) == {"a", "b"}
    assert found["a"] == found["b"] and found["a"].python.startswith("3.")


SETUP = '''\
from setuptools import setup
from setuptools.dist import Distribution


class Compiled(Distribution):
    """Says it has extension modules: its wheel is this platform's, as a compiled one is."""

    def has_ext_modules(self):
        return True


setup(name="{name}", version="1.0", py_modules=["{module}"],
      distclass=Compiled if {compiled} else Distribution)
'''


def _sdist(folder: Path, name: str, compiled: bool = False) -> None:
    """A tiny sdist NAME-1.0.tar.gz in ``folder``, written here (setuptools builds it): pure
    Python, or one whose wheel is this platform's, as if it had compiled parts (setuptools
    is told so; no compiler needed)."""
    import io
    import tarfile

    module = name.replace("-", "_")
    top = f"{module}-1.0"
    files = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'
                          'build-backend = "setuptools.build_meta"\n',
        "setup.py": SETUP.format(name=name, module=module, compiled=compiled),
        f"{module}.py": "VALUE = 42\n",
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / f"{top}.tar.gz", "w:gz") as archive:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_a_requirement_without_a_wheel_is_built_from_its_sdist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requirements that have an sdist only (made here, in a local find-links folder: the
    registry is asked for setuptools alone): a pure Python one is built into a wheel here
    and serves hosts of any platform, installable with --no-index as the hosts install; a
    compiled one serves hosts of this machine's platform, and for any other the deploy
    says so in one line naming it."""
    import os
    import sys

    links = tmp_path / "links"
    _sdist(links, "apiphant-test-pure")
    _sdist(links, "apiphant-test-compiled", compiled=True)
    monkeypatch.setenv("PIP_FIND_LINKS", f"{os.environ.get('PIP_FIND_LINKS', '')} {links}".strip())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    facts = subprocess.run([sys.executable, "-c", wheelhouse.FACTS_SCRIPT], capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    here = wheelhouse.parse_facts("this machine", facts.stdout)  # a deploy's own Python
    other = Platform(here.python, "aarch64" if here.machine != "aarch64" else "x86_64",
                     here.glibc)  # fmt: skip

    found = wheelhouse.build([here, other], ["apiphant-test-pure"], tmp_path / "pure")
    assert [p.name for p in found] == ["apiphant_test_pure-1.0-py3-none-any.whl"]
    target = tmp_path / "installed"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--find-links", str(tmp_path / "pure"), "--target", str(target), "apiphant-test-pure"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert (target / "apiphant_test_pure.py").read_text() == "VALUE = 42\n"

    compiled = wheelhouse.build([here], ["apiphant-test-compiled"], tmp_path / "compiled")
    assert len(compiled) == 1
    assert compiled[0].name.endswith(f"-linux_{here.machine}.whl")

    with pytest.raises(WheelhouseError) as caught:
        wheelhouse.build([other], ["apiphant-test-compiled"], tmp_path / "elsewhere")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"apiphant-test-compiled: no wheel for {other}, and its sdist "
                              "has compiled parts: built here it is ")  # fmt: skip
    assert not list((tmp_path / "cache").glob("apiphant/wheelhouse/*.partial"))
    assert wheelhouse.local_platform() == here
