"""The benchmark harness keeps working: a seconds-long run of each of its parts.

Nothing here asserts a speed: a loaded CI machine would make that flaky. It
asserts that every system answered every request, that the probe held its
connections, and that the table is whole. Plus one memory property of the
server that the 15,000-connection target depends on.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from apiphant.app import create_app
from apiphant.http.parser import Request
from bench.run import BEGIN, END, markers, write_results
from tests.servers import MYPRODUCT, REPO, server_in_thread

SYSTEMS = {"apiphant", "bare", "flask", "falcon", "starlette", "fastapi", "granian"}
IO_SYSTEMS = {"apiphant", "bare", "starlette", "fastapi", "granian"}
PROBE_CONNECTIONS = 120


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run: all systems at 50 connections, the I/O-bound scenario at 500, nginx,
    and the probe, 1 s each."""
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (apt-get install wrk nginx; .ci/run does)")
    out = tmp_path_factory.mktemp("bench")
    raw, results = out / "raw.json", out / "RESULTS.md"
    results.write_text(f"# Results\n\nWritten by hand.\n\n{BEGIN}\nold\n{END}\n\nAfter.\n")
    command = [sys.executable, "-m", "bench", "--quick", "--scenarios",
               "throughput,nginx,concurrency,io500", "--concurrency", str(PROBE_CONNECTIONS),
               "--json", str(raw), "--write", str(results)]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout, json.loads(raw.read_text()), results.read_text()


def test_every_system_answers_every_request_under_wrk(quick_run):
    _, raw, _ = quick_run
    throughput = raw["results"]["throughput"]
    assert set(throughput) == SYSTEMS
    for system, runs in throughput.items():
        assert len(runs) == 1, system
        assert runs[0]["requests"] > 0, system
        assert runs[0]["errors"] == dict.fromkeys(runs[0]["errors"], 0), system


def test_io_bound_scenario_answers_every_request_of_every_system(quick_run):
    _, raw, _ = quick_run
    io = raw["results"]["io500"]
    assert set(io) == IO_SYSTEMS
    for system, runs in io.items():
        assert runs[0]["requests"] > 0, system
        assert runs[0]["errors"] == dict.fromkeys(runs[0]["errors"], 0), system


def test_nginx_in_front_of_two_workers_of_each(quick_run):
    _, raw, _ = quick_run
    nginx = raw["results"]["nginx"]
    assert set(nginx) == {"apiphant", "bare"}
    for system, runs in nginx.items():
        assert runs[0]["requests"] > 0, system
        assert sum(runs[0]["errors"].values()) == 0, system


def test_probe_holds_every_connection_and_measures_memory(quick_run):
    _, raw, _ = quick_run
    for system in ("apiphant", "bare"):
        probe = raw["probes"][system]
        assert probe["connected"] == PROBE_CONNECTIONS, system
        assert probe["connect_errors"] == 0, system
        assert [r["ok"] for r in probe["rounds"]] == [PROBE_CONNECTIONS] * 2, probe["rounds"]
        assert 0 < probe["idle_kib"] < probe["peak_kib"], system


def test_table_shows_every_system_with_its_ratio_and_the_machine(quick_run):
    stdout, _, _ = quick_run
    for label in ("apiphant (`apiphant` command)", "bare gevent.pywsgi", "Flask 3 on gunicorn",
                  "Falcon 4 on gevent.pywsgi", "Starlette on uvicorn", "FastAPI on uvicorn",
                  "granian (WSGI) running apiphant's App"):  # fmt: skip
        row = next(line for line in stdout.splitlines() if line.startswith(f"| {label}"))
        assert "req/s" in row and "×" in row, row
    assert "| CPU | " in stdout and "| Python | CPython 3." in stdout
    assert "### Targets" in stdout and "apiphant ≥ 2 × Flask" in stdout
    assert "### I/O-bound" in stdout and "apiphant ≥ 1.3 × Starlette" in stdout


def test_write_replaces_only_the_generated_part(quick_run):
    stdout, _, written = quick_run
    assert written.startswith("# Results\n\nWritten by hand.\n\n" + BEGIN)
    assert written.endswith(END + "\n\nAfter.\n")
    assert "\nold\n" not in written
    assert stdout.strip().splitlines()[0] in written


def test_write_creates_a_missing_results_file(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_results(path, "## Run\n\n| a | b |\n")
    assert path.read_text() == f"# Benchmark results\n\n{BEGIN}\n## Run\n\n| a | b |\n{END}\n"


def test_idle_connections_have_slots_and_no_instance_dict():
    """An idle keep-alive connection must cost its slots only: an instance dict would be
    1.5 KiB more each, 20 MiB at 15,000 connections (bench/RESULTS.md), and whether
    CPython shares dict keys among instances is luck. ``__slots__`` on every class of the
    per-connection objects makes the instance dict impossible, which is what is asserted."""
    request = (
        b"POST /api/v0/echo/read HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\n"
        b'{"hello": "world"}'
    )
    with server_in_thread(create_app(MYPRODUCT)) as server:
        address = ("127.0.0.1", server.server_port)
        clients = [socket.create_connection(address, timeout=5) for _ in range(3)]
        try:
            for client in clients:
                for _ in range(2):
                    client.sendall(request)
                    assert client.recv(4096).endswith(b'"server": "myproduct"}')
            connections = list(server.connections)
            assert len(connections) == 3
            for connection in connections:
                for obj in (connection, connection.parser):
                    assert not hasattr(obj, "__dict__"), type(obj)
                    for cls in type(obj).__mro__[:-1]:
                        assert "__slots__" in cls.__dict__, cls
        finally:
            for client in clients:
                client.close()
    assert not hasattr(Request(), "__dict__")


# --- the database scenarios ----------------------------------------------------------------

DB_SYSTEMS = {"apiphant", "fastapi", "flask"}
DB_SCENARIOS = ("db50", "db512", "queries50", "queries512")


def _needs_postgres():
    from bench.database import available

    missing = available() or (None if shutil.which("wrk") else "wrk is not installed")
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="module")
def db_run(tmp_path_factory):
    """One quick run of the database scenarios: 1 s per system, each at 50 and 512
    connections, against one PostgreSQL the bench starts and removes."""
    _needs_postgres()
    out = tmp_path_factory.mktemp("bench-db")
    raw, results = out / "raw.json", out / "RESULTS.md"
    results.write_text(f"# Results\n\n{BEGIN}\nthe echo's run\n{END}\n")
    command = [sys.executable, "-m", "bench", "--quick", "--scenarios", "db,queries",
               "--json", str(raw), "--write", str(results), "--label", "Database"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout, done.stderr, json.loads(raw.read_text()), results.read_text()


def test_database_scenarios_every_system_answers_every_request(db_run):
    """Each system's answers were checked against the table's rows before its load (a wrong
    row or shape stops the run, exit 1); under wrk every answer must then be a 2xx: no
    error, no 503 from a pool of the default size at 512 connections."""
    _, _, raw, _ = db_run
    for scenario in DB_SCENARIOS:
        runs = raw["results"][scenario]
        assert set(runs) == DB_SYSTEMS, scenario
        for system, (run,) in runs.items():
            assert run["requests"] > 0, (scenario, system)
            assert run["errors"] == dict.fromkeys(run["errors"], 0), (scenario, system)
            assert run["p99_us"] > 0, (scenario, system)


def test_database_scenarios_report_ratios_and_targets(db_run):
    stdout, _, raw, _ = db_run
    assert "### Database: TechEmpower's single query and 20 queries" in stdout
    row = next(line for line in stdout.splitlines() if line.startswith("| apiphant + apiphant.db"))
    assert "× fastapi" in row and "× flask" in row and "p99" in row, row
    for label in ("FastAPI + asyncpg on uvicorn", "Flask + psycopg_pool on gunicorn"):
        assert any(line.startswith(f"| {label}") for line in stdout.splitlines()), label
    targets = {t["target"] for t in raw["targets"]}
    assert "single query, 512 connections: apiphant ≥ 1.0 × FastAPI + asyncpg" in targets
    assert "single query, 512 connections, pool of 10: no error, no 503" in targets
    assert "bare gevent.pywsgi" not in stdout  # the echo's systems do not run


def test_database_scenarios_remove_their_cluster(db_run):
    _, stderr, _, _ = db_run
    line = next(line for line in stderr.splitlines() if line.startswith("PostgreSQL: "))
    folder = line.rsplit("host=", 1)[1]
    assert folder.startswith(tempfile.gettempdir()) and "bench-pg-" in folder, line
    assert not os.path.exists(folder)


def test_a_labelled_run_is_written_beside_the_main_one(db_run):
    stdout, _, _, written = db_run
    begin, end = markers("results", "Database")
    assert begin == "<!-- bench:results-database:begin -->"
    assert written.startswith(f"# Results\n\n{BEGIN}\nthe echo's run\n{END}\n\n{begin}\n")
    assert written.endswith(f"{end}\n")
    assert stdout.strip().splitlines()[0] in written


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_database_is_stopped_and_removed_on_error():
    """The harness's cluster goes however the run ends: here a failure inside it."""
    _needs_postgres()
    from bench.database import ROWS, database, valid

    with pytest.raises(RuntimeError, match="a system failed"):
        with database() as found:
            folder, pid = found.folder, found.pid
            assert len(found.world) == ROWS and _alive(pid)
            assert valid("/api/v0/db/read", {"id": 1, "randomNumber": found.world[1]},
                         found.world)  # fmt: skip
            raise RuntimeError("a system failed")
    assert not folder.exists()
    assert not _alive(pid)


def test_an_answer_is_held_to_the_tables_rows():
    from bench.database import DB_PATH, QUERIES, QUERIES_PATH, valid

    world = {1: 10, 2: 20}
    assert valid(DB_PATH, {"id": 2, "randomNumber": 20}, world)
    assert not valid(DB_PATH, {"id": 2, "randomNumber": 10}, world)  # another row's number
    assert not valid(DB_PATH, {"id": 3, "randomNumber": 20}, world)  # no such row
    assert not valid(DB_PATH, {"id": "2", "randomNumber": 20}, world)
    assert not valid(DB_PATH, {"id": 2, "randomnumber": 20}, world)  # the column's name
    assert not valid(DB_PATH, {"id": 2, "randomNumber": 20, "x": 1}, world)
    assert not valid(DB_PATH, [{"id": 2, "randomNumber": 20}], world)
    rows = [{"id": 1, "randomNumber": 10}] * QUERIES
    assert valid(QUERIES_PATH, {"worlds": rows}, world)
    assert not valid(QUERIES_PATH, {"worlds": rows[1:]}, world)  # one short
    assert not valid(QUERIES_PATH, rows, world)
    assert not valid(QUERIES_PATH, {"worlds": [*rows[1:], {"id": 1, "randomNumber": 11}]}, world)
