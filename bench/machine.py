"""What the results ran on: a number means little without the machine and versions."""

import os
import platform
import resource
import shutil
import subprocess
from importlib import metadata

from bench.servers import REPO

PACKAGES = (
    "gevent", "greenlet", "httptools", "flask", "werkzeug", "gunicorn", "falcon",
    "starlette", "fastapi", "uvicorn", "uvloop", "granian", "psycopg", "psycopg-pool",
    "asyncpg",
)  # fmt: skip


def _first_line(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not installed"
    done = subprocess.run(command, capture_output=True, text=True)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0] if lines else "?"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory() -> str:
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
        return f"{kib / 1024**2:.1f} GiB"
    except (OSError, ValueError, IndexError):
        return "?"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "apiphant", "bench", ":!bench/RESULTS.md")
    return commit + (" (with uncommitted changes)" if dirty else "")


def _postgres() -> str:
    """The PostgreSQL the database scenarios start: the one apiphant.db.cluster finds."""
    from apiphant.db.cluster import ClusterError, find_bindir

    try:
        return _first_line([str(find_bindir() / "postgres"), "--version"])
    except ClusterError:
        return "not installed"


def describe() -> list[tuple[str, str]]:
    """(what, value) pairs for the results header."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    libs = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    return [
        ("CPU", f"{os.cpu_count()} cores, {_cpu_model()}"),
        ("Memory", _memory()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Libraries", libs),
        ("Load and proxy", f"{_first_line(['wrk', '-v'])}; {_first_line(['nginx', '-v'])}"),
        ("Database", _postgres()),
        ("Open files", f"soft {soft}, hard {hard}"),
        ("apiphant", f"commit {_commit()}"),
    ]
