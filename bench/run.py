"""The benchmark: apiphant against the bare server it runs on and against its peers.

    python -m bench                       # everything, 5 rounds x 5 s (about 10 minutes)
    python -m bench --quick               # 1 round x 1 s, 200 concurrent connections
    python -m bench --write bench/RESULTS.md

Systems take turns (A, B, C, D, then the next round in a rotated order), so a
slow minute of the machine hits every system alike; the table shows medians
and ratios to the bare gevent.pywsgi server, the limit of this stack.
"""

import argparse
import json
import re
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import machine  # noqa: E402
from bench.concurrency import ProbeResult, probe  # noqa: E402
from bench.database import (  # noqa: E402
    DB_BODY,
    DB_PATH,
    QUERIES,
    QUERIES_BODY,
    QUERIES_PATH,
    available,
    check_answer,
    database,
)
from bench.load import LoadResult, require_wrk, wrk  # noqa: E402
from bench.servers import (  # noqa: E402
    BASELINE,
    CLIENT_CPU,
    DB_POOL,
    DB_SYSTEMS,
    ECHO_PATH,
    HOST,
    IO_WAIT,
    SERVER_CPU,
    SYSTEMS,
    BenchError,
    Process,
    can_pin,
    check_echo,
    export_ref,
    free_port,
    serving,
    settle,
)

HERE = Path(__file__).resolve().parent
NGINX_TEMPLATE = HERE / "nginx.conf.template"


def markers(kind: str, label: str = "") -> tuple[str, str]:
    """The comments around a generated section of RESULTS.md: ``bench:KIND`` or, with a
    label, ``bench:KIND-LABEL``, so that a labelled run gets a section of its own."""
    key = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    name = f"bench:{kind}{'-' + key if key else ''}"
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


BEGIN, END = markers("results")


@dataclass(frozen=True)
class Scenario:
    """One load shape: wrk with ``connections`` against one worker, or through nginx."""

    key: str
    title: str
    connections: int
    io: bool = False  # each request waits IO_WAIT in its handler
    db: bool = False  # a database scenario: PostgreSQL's world table, DB_SYSTEMS only
    path: str = ECHO_PATH
    body: bytes | None = None  # None: the echo's request


SCENARIOS = {
    "throughput": Scenario("throughput", "50 connections", 50),
    "latency": Scenario("latency", "1 connection", 1),
    "c1000": Scenario("c1000", "1,000 connections", 1000),
    "nginx": Scenario("nginx", "nginx + 2 workers, 100 connections", 100),
    "io500": Scenario("io500", "I/O-bound, 500 connections", 500, io=True),
    "io2000": Scenario("io2000", "I/O-bound, 2,000 connections", 2000, io=True),
    "db50": Scenario("db50", "single query, 50 connections", 50, db=True, path=DB_PATH,
                     body=DB_BODY),  # fmt: skip
    "db512": Scenario("db512", "single query, 512 connections", 512, db=True, path=DB_PATH,
                      body=DB_BODY),  # fmt: skip
    "queries50": Scenario("queries50", f"{QUERIES} queries, 50 connections", 50, db=True,
                          path=QUERIES_PATH, body=QUERIES_BODY),  # fmt: skip
    "queries512": Scenario("queries512", f"{QUERIES} queries, 512 connections", 512, db=True,
                           path=QUERIES_PATH, body=QUERIES_BODY),  # fmt: skip
}
#: What ``--scenarios db,queries`` stands for: each at 50 and 512 connections.
GROUPS = {"db": ("db50", "db512"), "queries": ("queries50", "queries512")}
#: How the database scenarios' table names each system: with its driver.
DB_LABELS = {
    "apiphant": "apiphant + apiphant.db (psycopg pool)",
    "fastapi": "FastAPI + asyncpg on uvicorn (uvloop, httptools)",
    "flask": "Flask + psycopg_pool on gunicorn -k gevent -w 1",
}
#: Only apiphant and its baseline sit behind nginx: the deploy runs apiphant, not the peers.
NGINX_SYSTEMS = ("apiphant", "bare")
PROBE_SYSTEMS = ("apiphant", "bare")
#: The I/O-bound scenario: apiphant, the gevent baseline, and the async peers.
IO_SYSTEMS = ("apiphant", "bare", "starlette", "fastapi", "granian")
ALL_SCENARIOS = (*SCENARIOS, "concurrency")

Results = dict[str, dict[str, list[LoadResult]]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rotate(items: list[str], by: int) -> list[str]:
    by %= len(items) or 1
    return items[by:] + items[:by]


def take_turns(
    scenario: Scenario,
    ports: dict[str, int],
    args: argparse.Namespace,
    cpu: str | None,
    results: Results,
    pids: list[int],
) -> None:
    """Every round, each system gets the same wrk run, in a rotated order; each run
    starts once every server is idle again (``settle``), so that no system is
    measured while another still works off the last run's clients on its core."""
    keys = list(ports)
    if args.warmup > 0:
        for key in keys:
            settle(pids)
            wrk(ports[key], scenario.connections, args.warmup, cpu, path=scenario.path,
                body=scenario.body)  # fmt: skip
    for round_index in range(args.rounds):
        for key in rotate(keys, round_index):
            settle(pids)
            result = wrk(ports[key], scenario.connections, args.seconds, cpu,
                         path=scenario.path, body=scenario.body)  # fmt: skip
            results.setdefault(scenario.key, {}).setdefault(key, []).append(result)
            errors = f", {result.error_count} errors" if result.error_count else ""
            log(
                f"  {scenario.key} round {round_index + 1}/{args.rounds}: "
                f"{key} {result.rps:,.0f} req/s{errors}"
            )


def run_direct(
    scenarios: list[Scenario],
    systems: list[str],
    args: argparse.Namespace,
    logs: Path,
    io: bool = False,
) -> Results:
    """All systems up at once, each pinned to the server core; wrk on the other core."""
    results: Results = {}
    server_cpu = SERVER_CPU if args.pin else None
    client_cpu = CLIENT_CPU if args.pin else None
    with ExitStack() as stack:
        ports, pids = {}, []
        for key in systems:
            suffix = "-io" if io else ""
            proc, ports[key] = stack.enter_context(
                serving(SYSTEMS[key], logs, server_cpu, suffix=suffix, io=io)
            )
            pids.append(proc.pid)
        for scenario in scenarios:
            log(f"{scenario.title}:")
            take_turns(scenario, ports, args, client_cpu, results, pids)
    return results


def run_db(
    scenarios: list[Scenario], systems: list[str], args: argparse.Namespace, logs: Path
) -> Results:
    """The database scenarios: one PostgreSQL for all (on the load generator's core), each
    system pinned to the server core with its pool of DB_POOL connections to it."""
    results: Results = {}
    server_cpu = SERVER_CPU if args.pin else None
    client_cpu = CLIENT_CPU if args.pin else None
    with ExitStack() as stack:
        found = stack.enter_context(database(client_cpu))
        log(f"PostgreSQL: the world table in {found.url}")

        def check(port: int, name: str) -> None:
            for path, body in ((DB_PATH, DB_BODY), (QUERIES_PATH, QUERIES_BODY)):
                check_answer(port, path, body, found.world, name)

        ports, pids = {}, [found.pid]
        for key in systems:
            proc, ports[key] = stack.enter_context(
                serving(SYSTEMS[key], logs, server_cpu, "-db", db_url=found.url, check=check)
            )
            pids.append(proc.pid)
        for scenario in scenarios:
            log(f"{scenario.title}:")
            take_turns(scenario, ports, args, client_cpu, results, pids)
    return results


def run_nginx(systems: list[str], args: argparse.Namespace, logs: Path) -> Results:
    """Two workers of each system behind one private nginx; nothing pinned, as deployed."""
    if shutil.which("nginx") is None:
        raise BenchError("nginx is not installed: apt-get install nginx")
    scenario = SCENARIOS["nginx"]
    results: Results = {}
    with ExitStack() as stack:
        prefix = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-nginx-")))
        fill: dict[str, int | str] = {"prefix": str(prefix)}
        ports: dict[str, int] = {}
        workers: list[int] = []
        for key in NGINX_SYSTEMS:
            for worker in (1, 2):
                proc, fill[f"{key}_{worker}"] = stack.enter_context(
                    serving(SYSTEMS[key], logs, None, suffix=f"-nginx{worker}")
                )
                workers.append(proc.pid)
            ports[key] = fill[f"{key}_port"] = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(string.Template(NGINX_TEMPLATE.read_text()).substitute(fill))
        command = ["nginx", "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"]
        if "-e filename" in subprocess.run(["nginx", "-h"], capture_output=True, text=True).stderr:
            command[1:1] = ["-e", str(prefix / "error.log")]  # else the system's log, at start
        nginx = stack.enter_context(Process("nginx", command, logs))
        pids = [nginx.pid, *workers]
        for key in NGINX_SYSTEMS:
            nginx.wait_listening(ports[key])
            check_echo(ports[key], SYSTEMS[key].exact_body, f"nginx in front of {key}")
        log(f"{scenario.title}:")
        take_turns(
            scenario, {k: ports[k] for k in systems if k in ports}, args, None, results, pids
        )
    return results


def run_probe(systems: list[str], args: argparse.Namespace, logs: Path) -> dict[str, ProbeResult]:
    """One fresh server per system: idle RSS after a warm-up, then N connections held."""
    probes = {}
    server_cpu = SERVER_CPU if args.pin else None
    client_cpu = CLIENT_CPU if args.pin else None
    for key in systems:
        with serving(SYSTEMS[key], logs, server_cpu, suffix="-probe") as (proc, port):
            if args.warmup > 0:
                wrk(port, 50, args.warmup, client_cpu)
            time.sleep(0.5)  # let the warm-up's connections close
            log(f"concurrency: {key} with {args.concurrency:,} connections")
            probes[key] = result = probe(port, proc.pid, args.concurrency, client_cpu)
            log(
                f"  answered {result.answered} of {result.connections:,}, "
                f"{result.errors} errors, {result.kib_per_connection:.1f} KiB per connection"
            )
    return probes


# --- the report -----------------------------------------------------------------------------


def median_rps(results: Results, scenario: str, system: str) -> float | None:
    runs = results.get(scenario, {}).get(system)
    return statistics.median(r.rps for r in runs) if runs else None


def ratio(results: Results, scenario: str, system: str, to: str = BASELINE) -> float | None:
    """The median of per-round ratios: each run against the other system's run of its round,
    so that a slow minute of the machine, which both runs share, cancels out."""
    mine, base = results.get(scenario, {}).get(system), results.get(scenario, {}).get(to)
    if not mine or not base:
        return None
    ratios = [m.rps / b.rps for m, b in zip(mine, base, strict=True) if b.rps]
    return statistics.median(ratios) if ratios else None


def _errors(runs: list[LoadResult]) -> str:
    totals = {kind: sum(r.errors[kind] for r in runs) for kind in runs[0].errors}
    wrong = [f"{kind} {count}" for kind, count in totals.items() if count]
    return ", ".join(wrong) if wrong else "0"


def _ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.2f}"


def _by_system_header(scenarios: list) -> list[str]:
    """The head of a table with a row a system and a column a scenario."""
    return [
        "| system | " + " | ".join(s.title for s in scenarios) + " |",
        "|---" * (len(scenarios) + 1) + "|",
    ]


def summary_table(results: Results, systems: list[str]) -> list[str]:
    scenarios = [s for s in SCENARIOS.values() if s.key in results and not s.io and not s.db]
    lines = _by_system_header(scenarios)
    for key in systems:
        cells = []
        for s in scenarios:
            rps, r = median_rps(results, s.key, key), ratio(results, s.key, key)
            cells.append(f"{rps:,.0f} req/s, **{r:.2f}×**" if rps is not None and r else "—")
        lines.append(f"| {SYSTEMS[key].label} | " + " | ".join(cells) + " |")
    return lines


def details_table(results: Results) -> list[str]:
    lines = [
        "| scenario | system | req/s (median) | × bare | p50 ms | p99 ms | errors "
        "| req/s by round |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in SCENARIOS.values():
        for key, runs in results.get(s.key, {}).items():
            r = ratio(results, s.key, key)
            rounds = " ".join(f"{run.rps:,.0f}" for run in runs)
            lines.append(
                f"| {s.title} | {key} | {median_rps(results, s.key, key):,.0f} | "
                f"{f'{r:.2f}' if r else '—'} | {_ms(statistics.median(x.p50_us for x in runs))} | "
                f"{_ms(statistics.median(x.p99_us for x in runs))} | {_errors(runs)} | {rounds} |"
            )
    return lines


def io_table(results: Results, systems: list[str]) -> list[str]:
    """The I/O-bound scenario: what counts is that nobody waits too long, so timeouts and
    the spread of latencies come first."""
    scenarios = [s for s in SCENARIOS.values() if s.io and s.key in results]
    lines = _by_system_header(scenarios)
    for key in systems:
        cells = []
        for s in scenarios:
            runs = results[s.key].get(key)
            if not runs:
                cells.append("—")
                continue
            p50 = statistics.median(r.p50_us for r in runs)
            p99 = statistics.median(r.p99_us for r in runs)
            timeouts = sum(r.errors["timeout"] for r in runs)
            cells.append(
                f"{median_rps(results, s.key, key):,.0f} req/s, p50 {_ms(p50)} ms, "
                f"p99 {_ms(p99)} ms ({p99 / p50 if p50 else 0:.1f} × p50), "
                f"{timeouts} timeouts, errors {_errors(runs)}"
            )
        lines.append(f"| {SYSTEMS[key].label} | " + " | ".join(cells) + " |")
    return lines


def db_table(results: Results, systems: list[str]) -> list[str]:
    """The database scenarios: req/s, p99 and errors of each system; apiphant's ratios to
    each peer (the median of per-round ratios)."""
    scenarios = [s for s in SCENARIOS.values() if s.db and s.key in results]
    lines = _by_system_header(scenarios)
    for key in systems:
        cells = []
        for s in scenarios:
            runs = results[s.key].get(key)
            if not runs:
                cells.append("—")
                continue
            p99 = statistics.median(r.p99_us for r in runs)
            cell = f"{median_rps(results, s.key, key):,.0f} req/s"
            if SYSTEMS[key].kind == "apiphant":
                ratios = [
                    f"{r:.2f}× {peer}"
                    for peer in ("fastapi", "flask")
                    if (r := ratio(results, s.key, key, peer)) is not None
                ]
                cell += f" (**{', '.join(ratios)}**)" if ratios else ""
            cells.append(f"{cell}, p99 {_ms(p99)} ms, errors {_errors(runs)}")
        label = DB_LABELS.get(key, SYSTEMS[key].label)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def probe_table(probes: dict[str, ProbeResult]) -> list[str]:
    lines = [
        "| system | connections | answered (round 1, round 2) | errors | idle RSS | "
        "peak RSS | per connection |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, p in probes.items():
        answered = ", ".join(f"{n:,}" for n in p.answered)
        seconds = ", ".join(f"{r['seconds']:.1f} s" for r in p.rounds)
        lines.append(
            f"| {key} | {p.connections:,} | {answered} (in {seconds}) | {p.errors} | "
            f"{p.idle_kib / 1024:.1f} MiB | {p.peak_kib / 1024:.1f} MiB | "
            f"{p.kib_per_connection:.1f} KiB |"
        )
    return lines


def targets(results: Results, probes: dict[str, ProbeResult]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of issue 5 that this run measured."""
    rows: list[tuple[str, str, bool | None]] = []

    def against(label: str, scenario: str, other: str, check: Callable[[float], bool]) -> None:
        r = ratio(results, scenario, "apiphant", other)
        if r is not None:
            rows.append((label, f"{r:.2f}×", check(r)))

    against("apiphant ≥ 1.3 × Starlette on uvicorn, 50 connections", "throughput", "starlette",
            lambda r: r >= 1.3)  # fmt: skip
    against("apiphant ≥ 3 × FastAPI on uvicorn, 50 connections", "throughput", "fastapi",
            lambda r: r >= 3.0)  # fmt: skip
    against("apiphant ≥ 2 × bare pywsgi, 50 connections", "throughput", BASELINE,
            lambda r: r >= 2.0)  # fmt: skip
    against("apiphant ≥ 0.6 × granian running the same App, 50 connections", "throughput",
            "granian", lambda r: r >= 0.6)  # fmt: skip
    against("apiphant ≥ 1.2 × Starlette on uvicorn, 1 connection", "latency", "starlette",
            lambda r: r >= 1.2)  # fmt: skip
    against("apiphant ≥ 2 × Flask on gunicorn gevent, 50 connections", "throughput", "flask",
            lambda r: r >= 2.0)  # fmt: skip
    against("apiphant ahead of Falcon on pywsgi, 50 connections", "throughput", "falcon",
            lambda r: r > 1.0)  # fmt: skip
    io = results.get("io2000", {})
    if io.get("apiphant"):
        runs = io["apiphant"]
        timeouts = sum(r.errors["timeout"] for r in runs)
        p50 = statistics.median(r.p50_us for r in runs)
        p99 = statistics.median(r.p99_us for r in runs)
        rows.append(("I/O-bound, 2,000 connections: 0 timeouts, p99 ≤ 3 × p50",
                     f"{timeouts} timeouts, p99 {_ms(p99)} ms = {p99 / p50:.1f} × p50",
                     timeouts == 0 and p99 <= 3 * p50))  # fmt: skip
        against("I/O-bound, 2,000 connections: req/s ≥ FastAPI's", "io2000", "fastapi",
                lambda r: r >= 1.0)  # fmt: skip
    against("behind nginx, 2 workers: ≥ 1.5 × 2 bare pywsgi workers", "nginx", BASELINE,
            lambda r: r >= 1.5)  # fmt: skip
    for key in ("db50", "db512"):
        title = SCENARIOS[key].title
        against(f"{title}: apiphant ≥ 1.0 × FastAPI + asyncpg", key, "fastapi",
                lambda r: r >= 1.0)  # fmt: skip
        against(f"{title}: apiphant ≥ 1.5 × Flask + gevent (psycopg)", key, "flask",
                lambda r: r >= 1.5)  # fmt: skip
    for key in ("db512", "queries512"):
        runs = results.get(key, {}).get("apiphant")
        if runs:
            rows.append((f"{SCENARIOS[key].title}, pool of {DB_POOL}: no error, no 503",
                         _errors(runs), all(r.error_count == 0 for r in runs)))  # fmt: skip
    runs = results.get("c1000", {}).get("apiphant")
    if runs:
        rows.append(("apiphant, 1,000 connections: no error, no timeout", _errors(runs),
                     all(r.error_count == 0 for r in runs)))  # fmt: skip
    p = probes.get("apiphant")
    if p is not None:
        measured = (
            f"{p.connections:,} held; answered {', '.join(f'{n:,}' for n in p.answered)}; "
            f"{p.errors} errors; {p.kib_per_connection:.1f} KiB per connection"
        )
        met = p.complete and p.kib_per_connection <= 10
        full = p.connections >= 15000
        rows.append(("15,000 keep-alive connections, all answered, ≤ 10 KiB each",
                     measured if full else measured + " (fewer than 15,000: not the target)",
                     met if full else None))  # fmt: skip
    return rows


def report(
    results: Results, probes: dict[str, ProbeResult], systems: list[str], args: argparse.Namespace
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    pin = (
        f"server processes on core {SERVER_CPU}, wrk and probe clients on core {CLIENT_CPU} "
        "(`taskset`); the nginx scenario is not pinned"
        if args.pin
        else "nothing pinned"
    )
    out = [
        f"## Run of {when}",
        "",
        f"`{' '.join(['python -m bench', *args.argv])}`",
        f"— {args.rounds} round(s) × {args.seconds:g} s per system per scenario, "
        f"systems taking turns; {pin}.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {what} | {value} |" for what, value in machine.describe()),
        "",
    ]
    if results:
        if any(not s.io and not s.db for s in SCENARIOS.values() if s.key in results):
            out += [
                "### Requests per second: median, and ratio to the bare gevent.pywsgi server",
                "",
                *summary_table(results, systems),
                "",
            ]
        if any(s.io for s in SCENARIOS.values() if s.key in results):
            out += [
                f"### I/O-bound: each request waits {IO_WAIT * 1000:g} ms in its handler",
                "",
                *io_table(results, [k for k in systems if k in IO_SYSTEMS]),
                "",
            ]
        if any(s.db for s in SCENARIOS.values() if s.key in results):
            out += [
                f"### Database: TechEmpower's single query and {QUERIES} queries a request, "
                f"one PostgreSQL, a pool of {DB_POOL} connections a worker",
                "",
                *db_table(results, [k for k in systems if k in results_systems(results)]),
                "",
            ]
        out += [*details_table(results), ""]
    if probes:
        out += [
            "### Concurrency: keep-alive connections held open on one worker",
            "",
            *probe_table(probes),
            "",
        ]
    rows = targets(results, probes)
    if rows:
        out += ["### Targets", "", "| target | measured | met |", "|---|---|---|"]
        marks = {True: "yes", False: "**NO**", None: "—"}
        out += [f"| {label} | {measured} | {marks[met]} |" for label, measured, met in rows]
        out.append("")
    return "\n".join(out)


def results_systems(results: Results) -> set[str]:
    return {key for by in results.values() for key in by}


def write_results(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the generated part of RESULTS.md (between ``begin`` and ``end``), keeping
    what people wrote around it."""
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if path.exists():
        current = path.read_text()
        if begin in current and end in current:
            head, rest = current.split(begin, 1)
            tail = rest.split(end, 1)[1]
            path.write_text(head + block + tail)
            return
        path.write_text(current.rstrip() + "\n\n" + block + "\n")
        return
    path.write_text(f"# Benchmark results\n\n{block}\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark apiphant against bare gevent.pywsgi and its peers with wrk.",
    )
    p.add_argument("--rounds", type=int, default=5, help="turns per system (default 5)")
    p.add_argument("--seconds", type=float, default=5, help="wrk seconds per turn (default 5)")
    p.add_argument("--warmup", type=float, default=1, help="unrecorded seconds first (default 1)")
    p.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help=f"comma-separated, of {', '.join(ALL_SCENARIOS)}; db and queries stand for "
        "both of theirs (default: all; the database ones when PostgreSQL is installed)",
    )
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated, of {', '.join(SYSTEMS)} (default: all; bare is always run)",
    )
    p.add_argument(
        "--concurrency", type=int, default=15000, help="connections of the probe (default 15000)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 round of 1 s, no warm-up, 200 probe connections",
    )
    p.add_argument(
        "--against",
        metavar="REF",
        help="also run apiphant as it was at this git ref (before and after a change)",
    )
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not use taskset")
    p.add_argument("--write", type=Path, metavar="MD", help="update the results in this file")
    p.add_argument(
        "--label", default="", help="--write updates the section of this label, not the main one"
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also save raw results as JSON")
    args = p.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 1, 0
        if "--concurrency" not in " ".join(argv):
            args.concurrency = 200
    named = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.scenario_list = [k for name in named for k in GROUPS.get(name, (name,))]
    args.all_scenarios = "--scenarios" not in argv
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.scenario_list) - set(ALL_SCENARIOS) | set(args.system_list) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown: {', '.join(sorted(unknown))}")
    if args.rounds < 1 or args.seconds < 1 or args.concurrency < 1:
        p.error("--rounds, --seconds and --concurrency should be at least 1")
    if args.pin and not can_pin():
        log("fewer than 2 cores or no taskset: running unpinned")
        args.pin = False
    return args


def choose(args: argparse.Namespace, older: str | None) -> list[str]:
    """The systems to run, in table order; the baseline always, an older apiphant after it."""
    keys = [k for k in SYSTEMS if k in args.system_list or k == BASELINE]
    if older is not None:
        keys.insert(keys.index("apiphant") + 1 if "apiphant" in keys else 0, older)
    return keys


def measure(args: argparse.Namespace, logs: Path) -> tuple[list[str], Results, dict]:
    older = None
    if args.against:
        system = export_ref(args.against, logs / "against")
        SYSTEMS[system.key] = system
        older = system.key
    systems = choose(args, older)
    results: Results = {}
    chosen = [SCENARIOS[k] for k in SCENARIOS if k in args.scenario_list and k != "nginx"]
    direct = [s for s in chosen if not s.io and not s.db]
    if direct:
        results.update(run_direct(direct, systems, args, logs))
    io = [s for s in chosen if s.io]
    if io:
        io_systems = [k for k in systems if k in IO_SYSTEMS or k == older]
        results.update(run_direct(io, io_systems, args, logs, io=True))
    db = [s for s in chosen if s.db]
    missing = available() if db else None
    if missing and args.all_scenarios:
        log(f"the database scenarios are left out: {missing}")
    elif missing:
        raise BenchError(missing)
    elif db:
        db_systems = [k for k in systems if k in DB_SYSTEMS or k == older]
        results.update(run_db(db, db_systems, args, logs))
    if "nginx" in args.scenario_list:
        results.update(run_nginx([k for k in systems if k in NGINX_SYSTEMS], args, logs))
    probes = {}
    if "concurrency" in args.scenario_list:
        probe_systems = [k for k in systems if k in PROBE_SYSTEMS or k == older]
        probes = run_probe(probe_systems, args, logs)
    return systems, results, probes


def raw_results(argv: list[str], results: Results, probes: dict[str, ProbeResult]) -> dict:
    return {
        "machine": dict(machine.describe()),
        "argv": argv,
        "host": HOST,
        "results": {
            s: {k: [asdict(r) | {"rps": r.rps} for r in runs] for k, runs in by.items()}
            for s, by in results.items()
        },
        "probes": {
            k: asdict(p) | {"kib_per_connection": p.kib_per_connection} for k, p in probes.items()
        },
        "targets": [
            {"target": t, "measured": m, "met": ok} for t, m, ok in targets(results, probes)
        ],
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        require_wrk()
        with tempfile.TemporaryDirectory(prefix="bench-logs-") as logs:
            systems, results, probes = measure(args, Path(logs))
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    text = report(results, probes, systems, args)
    print(text)
    if args.write:
        write_results(args.write, text, *markers("results", args.label))
        log(f"wrote {args.write}")
    if args.json:
        args.json.write_text(json.dumps(raw_results(argv, results, probes), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
