"""wrk as the load generator: keep-alive POSTs of the echo request, one summary per run."""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.servers import ECHO_PATH, HOST, BenchError, pinned

SCRIPT = Path(__file__).resolve().parent / "echo.lua"
MARK = "BENCH_JSON "
ERROR_KINDS = ("connect", "read", "write", "status", "timeout")


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: answered requests, errors by kind, latency percentiles in microseconds."""

    requests: int
    duration_us: int
    errors: dict[str, int]
    p50_us: int
    p99_us: int

    @property
    def rps(self) -> float:
        return self.requests * 1e6 / self.duration_us if self.duration_us else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk is not installed: apt-get install wrk (Debian/Ubuntu)")
    return found


def wrk(
    port: int,
    connections: int,
    seconds: float,
    cpu: str | None,
    timeout: float = 2.0,
    path: str = ECHO_PATH,
    body: bytes | None = None,
) -> LoadResult:
    """Run wrk with one thread (it has one core) against the echo on ``port``, or POST
    ``body`` to ``path``; p50 and p99 come from wrk's latency distribution (``--latency``)."""
    command = [
        require_wrk(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout:g}s", "--latency", "-s", str(SCRIPT), f"http://{HOST}:{port}{path}",
    ]  # fmt: skip
    env = None if body is None else {**os.environ, "BENCH_BODY": body.decode()}
    done = subprocess.run(
        pinned(command, cpu), capture_output=True, text=True, timeout=seconds + 60, env=env
    )
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            data = json.loads(line[len(MARK) :])
            return LoadResult(
                requests=data["requests"],
                duration_us=data["duration_us"],
                errors={kind: data[kind] for kind in ERROR_KINDS},
                p50_us=data["p50_us"],
                p99_us=data["p99_us"],
            )
    raise BenchError(f"wrk gave no summary (exit {done.returncode}):\n{done.stdout}{done.stderr}")
