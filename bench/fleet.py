"""Deploy time against fleet size, on real separate test hosts.

    python -m bench.fleet                          # 1, 3 and 10 hosts (root; about 10-15 min)
    python -m bench.fleet --fleets 1,10 --load     # and a third deploy, under load
    python -m bench.fleet --json out.json --write bench/RESULTS.md --label after

For each fleet shape the harness starts fresh test hosts (tests/testhosts.py:
network namespaces, each its own Debian root and sshd), writes a deploy.toml
naming them by private address, and times two `fab deploy` runs: a first one
to the fresh hosts, and a second one where only product code changed. It reads
fab's output as it streams, to split each deploy into phases (the kit's
``==>`` lines), and reads every host's virtualenv folder before and after the
second deploy, to say whether it installed anything. With ``--load``, a third
deploy (code only again) runs while client threads post through the front's
Nginx, and every failed request is counted: the second deploy's time is taken
without load, the third's with it. Every host, namespace, link and process it starts is
removed at the end, on error or Ctrl-C too.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/fleet.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import machine  # noqa: E402
from bench.run import markers as section_markers  # noqa: E402
from bench.run import write_results  # noqa: E402
from bench.servers import REPO  # noqa: E402
from tests import testhosts  # noqa: E402
from tests.support import load as support  # noqa: E402
from tests.support import processes  # noqa: E402

PRODUCT = "myproduct"
SERVER_NAME = "api.example.com"  # myproduct's server_names[0]: the Host the front serves
WORKERS = 2
#: The kit's line when a release reuses an earlier release's virtualenv.
REUSED = "virtualenv: same packages as an earlier release, reused"
#: A target only the bench adds: its text changes between the two deploys (the code change),
#: and the front answers with it, which shows the second release is live.
STAMP = '''\
"""Bench target: which deploy of the bench this code came from."""

STAMP = "{stamp}"


def read(request):
    return {{"stamp": STAMP}}
'''
#: The second pool's target (10 hosts): says which host answered.
WHERE = '''\
"""Bench target of the reports pool: which host answered."""

import socket


def read(request):
    return {"host": socket.gethostname()}
'''
FAB_TIMEOUT = 900  # seconds a deploy may take before it is killed
CORES = os.cpu_count() or 1  # the deployer and every test host share them
NEEDS = ("mmdebstrap", "unshare", "nsenter", "ip", "ssh-keygen")


class FleetError(RuntimeError):
    """The bench could not run (a deploy failed, a host did not answer)."""


# Fleet shapes and their deploy.toml (pure)


@dataclass(frozen=True)
class Shape:
    """A fleet: its hosts in order, each host's roles, and the pools (name, hosts, targets)."""

    size: int
    label: str
    roles: dict[str, tuple[str, ...]]
    pools: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]

    @property
    def names(self) -> list[str]:
        return list(self.roles)

    @property
    def front(self) -> str:
        return next(n for n, r in self.roles.items() if "nginx" in r)


def shape(size: int) -> Shape:
    """1: one host with every role; 3: a front and two API hosts in one pool; 10: a front
    and nine API hosts in two pools (5 + 4, the second owning v0/reports). Two workers
    on each API host; the background runner on the first."""
    if size == 1:
        return Shape(1, "1 (all roles)", {"web1": ("nginx", "api", "background")}, ())
    if size == 3:
        apis = ["api1", "api2"]
        pools: tuple = (("main", tuple(apis), ()),)
        label = "3 (one Nginx front, two API hosts)"
    elif size == 10:
        apis = [f"api{n}" for n in range(1, 10)]
        pools = (("main", tuple(apis[:5]), ()), ("reports", tuple(apis[5:]), ("v0/reports",)))
        label = "10 (one front, nine API hosts in two pools)"
    else:
        raise ValueError(f"no shape of {size} hosts (1, 3 or 10)")
    roles = {"front": ("nginx",)}
    for n, name in enumerate(apis):
        roles[name] = ("api", "background") if n == 0 else ("api",)
    return Shape(size, label, roles, pools)


def toml_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def deploy_toml(fleet: Shape, addresses: dict[str, str], batch: str = "") -> str:
    """The fleet's deploy.toml: the kit's defaults except the hosts, their roles and pools
    (and ``batch``, the rolling restart's, when given)."""
    lines = [
        f'product = "{PRODUCT}"',
        f'server_names = ["{SERVER_NAME}"]',
        "keep_releases = 5",
        *([f"batch = {batch if batch.isdigit() else repr(batch)}"] if batch else []),
        "",
        "[api]",
        "drain_timeout = 10",
        "",
        "[nginx]",
        'listen = "80"',
    ]
    for name, roles in fleet.roles.items():
        lines += ["", f"[hosts.{name}]", f'ssh = "root@{addresses[name]}"']
        if fleet.size > 1 and "api" in roles:
            lines.append(f'private_address = "{addresses[name]}"')
        lines.append(f"roles = {toml_list(roles)}")
        if "api" in roles:
            lines += [f"workers = {WORKERS}", "first_port = 8001"]
    for pool, hosts, targets in fleet.pools:
        lines += ["", f"[pools.{pool}]", f"hosts = {toml_list(hosts)}"]
        if targets:
            lines.append(f"targets = {toml_list(targets)}")
    return "\n".join(lines) + "\n"


# Reading fab's output (pure)


def phase_name(line: str) -> str | None:
    """The phase a kit's ``==> ...`` line starts ('prepare', 'activate', ...), else None."""
    if not line.startswith("==> "):
        return None
    text = line[4:].strip()
    text = re.split(r"[:(]| \d{14}| release\b", text, maxsplit=1)[0].strip()
    return text or None


def phases(lines: list[tuple[float, str]], end: float) -> list[tuple[str, float]]:
    """(phase, seconds) from (seconds since start, line) pairs: each phase lasts from its
    ``==>`` line to the next one; what came before the first is 'build' (the deployer's
    own work: wheel, wheelhouse, archive, connecting). A phase seen twice adds up."""
    marks = [(0.0, "build")]
    marks += [(t, name) for t, line in lines if (name := phase_name(line)) is not None]
    totals: dict[str, float] = {}
    for (start, name), (stop, _) in zip(marks, [*marks[1:], (end, "")], strict=True):
        totals[name] = totals.get(name, 0.0) + (stop - start)
    return [(name, round(seconds, 1)) for name, seconds in totals.items()]


def reused_on(output: str) -> list[str]:
    """The hosts whose output says their virtualenv was reused. Anywhere in a line: hosts
    preparing side by side may print into one another's line."""
    return sorted(set(re.findall(rf"\[([\w.-]+)\]\s+{re.escape(REUSED)}", output)))


# Running fab


def fab_help() -> str:
    """`fab --help deploy` of the kit that runs: which flags it has, asked, not assumed."""
    done = subprocess.run(
        [sys.executable, "-m", "fabric", "--help", "deploy"], cwd=REPO, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    return done.stdout + done.stderr


def busy_seconds(stat: str) -> float:
    """CPU seconds of every core, from /proc/stat's text, that were not idle or iowait
    (user, nice, system, irq, softirq, steal; the kernel counts USER_HZ ticks)."""
    fields = [int(v) for v in stat.splitlines()[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float:
    with open("/proc/stat") as f:
        return busy_seconds(f.read())


def timed_fab(args: list[str], log: Path, echo: bool) -> dict:
    """Run `fab ARGS` from the checkout, read its output line by line as it streams;
    wall time, exit status, phases, the CPU seconds the whole machine spent meanwhile
    (the deployer and every test host share its cores: when that over the core count is
    near the wall time, the deploy waited for CPU, not for itself), and the output (also
    written to ``log``, each line after the seconds since the start)."""
    command = [sys.executable, "-m", "fabric", *args]
    busy_before = machine_cpu()
    started = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
    )  # fmt: skip
    lines: list[tuple[float, str]] = []
    timer = threading.Timer(FAB_TIMEOUT, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        assert proc.stdout is not None
        with log.open("w") as out:
            for line in proc.stdout:
                at = time.monotonic() - started
                lines.append((at, line.rstrip("\n")))
                out.write(f"{at:7.2f} {line}")
                if echo:
                    print(f"    | {line}", end="", flush=True)
        proc.wait(60)
    finally:
        timer.cancel()
        processes.stop(proc, signal.SIGKILL, timeout=10, group=True)
    seconds = time.monotonic() - started
    busy = machine_cpu() - busy_before
    output = "\n".join(line for _, line in lines)
    return {
        "seconds": round(seconds, 1),
        "cpu": round(busy, 1),
        "exit": proc.returncode,
        "ok": proc.returncode == 0 and "is live" in output,
        "phases": phases(lines, seconds),
        "output": output,
    }


# The load: client threads through the front


class Load(support.Load):
    """``threads`` keep-alive clients posting through the front's Nginx, round the kinds,
    each at most ``rate`` requests a second (0: as fast as answers come), so the load
    does not take the deploy's CPU on a small machine; every answer but the expected 200
    is a failure, counted with its cause. Bounded: it stops when told, after ``limit``
    seconds, or after ``max_requests`` per thread."""

    def __init__(
        self, host: str, kinds: list[str], threads: int, rate: float = 10, port: int = 80,
        limit: float = 900, max_requests: int = 100_000,
    ) -> None:  # fmt: skip
        self.kinds = kinds
        super().__init__(
            lambda: http.client.HTTPConnection(host, port, timeout=10), self.request,
            threads=threads, headers={"Content-Type": "application/json", "Host": SERVER_NAME},
            rate=rate, limit=limit, max_requests=max_requests,
        )  # fmt: skip

    def request(self, number: int, n: int) -> support.Request:
        """Thread ``number``'s request ``n``: its kind, path, body and check of the answer."""
        kind = self.kinds[(n + number) % len(self.kinds)]
        if kind == "echo":
            return kind, "/api/v0/echo/read", {"n": n}, lambda a: a == {"n": n, "server": PRODUCT}
        if kind == "update":  # not idempotent: Nginx never sends it to a second worker
            expected = {"user_id": n, "settings": {"theme": "dark", "language": "en"}}
            body = {"user_id": n, "settings": {"theme": "dark"}}
            return kind, "/api/v0/users/settings/update", body, lambda a: a == expected
        if kind == "where":
            return kind, "/api/v0/reports/where/read", {}, lambda a: str(a.get("host", "")) != ""
        raise ValueError(kind)

    def wait_sent(self, count: int, timeout: float = 60) -> None:
        try:
            super().wait_sent(count, timeout)
        except TimeoutError as error:
            raise FleetError(str(error)) from None

    def figures(self) -> dict:
        causes = Counter(f"{kind} {why}" for _, kind, why in self.failures)
        return {"clients": len(self.threads), "rate per client": self.rate,
                "requests": self.total,
                "failed": sum(self.failed.values()), "causes": dict(causes)}  # fmt: skip


def post(host: str, path: str, body: dict, timeout: float = 5) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, 80, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json", "Host": SERVER_NAME}
        conn.request("POST", path, json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def wait_stamp(host: str, stamp: str, timeout: float = 30) -> None:
    """Wait (bounded) until the front answers with ``stamp``: that code is live."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = post(host, "/api/v0/stamp/read", {})
            if last == (200, {"stamp": stamp}):
                return
        except (OSError, http.client.HTTPException, ValueError) as error:
            last = error
        time.sleep(0.1)
    raise FleetError(f"the front at {host} does not answer stamp {stamp!r}: {last!r}")


# One fleet


def venvs(host, folder: str) -> set[str]:
    """The virtualenvs on a test host (read from the root namespace)."""
    path = host.path(folder)
    return {p.name for p in path.iterdir()} if path.is_dir() else set()


def warm_wheelhouse(host: "testhosts.Host", config_path: Path, work: Path) -> None:
    """The apiphant wheel of these sources built, and the wheels of the test hosts'
    platform fetched, before any deploy is timed: the kit caches both (the wheel by its
    sources, the wheels by platform and requirements), and a fresh deployer's first deploy
    builds and fetches them (two seconds or more here). Else whichever fleet deploys first
    carries that one-off work, and a ratio between fleets counts it on one side only."""
    from apiphant.deploy import artifacts, roles, tasks, wheelhouse
    from apiphant.deploy.config import load as load_config

    config = load_config(config_path)
    answer = host.exec(wheelhouse.facts_command(config.python, config.layout.venvs))
    platform = wheelhouse.parse_facts(host.name, answer.stdout)
    folder = work / f"wheelhouse-{host.name}"
    folder.mkdir()
    pip = tasks.pip_requirements(config, list(config.hosts), roles.load_roles())
    requirements = wheelhouse.wheel_requirements(artifacts.build_wheel(folder)) + pip
    wheelhouse.build([platform], requirements, folder / "wheels")


def run_fleet(
    size: int, args: argparse.Namespace, work: Path, extra: list[str], result: dict
) -> None:
    """Fresh hosts, two deploys (and a third under load if asked), every host removed; the
    figures go into ``result`` as they come, so a fleet that fails keeps what it measured."""
    from apiphant.deploy.config import load as load_config

    fleet = shape(size)
    folder = work / f"fleet{size}"
    folder.mkdir()
    key = folder / "deployer_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    product = folder / PRODUCT
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(REPO / PRODUCT, product, ignore=skip)
    api = product / "api" / "v0"
    if any(targets for _, _, targets in fleet.pools):
        (api / "reports").mkdir()
        (api / "reports" / "__init__.py").write_text("")
        (api / "reports" / "where.py").write_text(WHERE)
    result["names"] = fleet.names
    started = time.monotonic()
    print(f"\n== {fleet.label}: starting {size} test host(s)", flush=True)
    with testhosts.Hosts(fleet.names, (folder / "deployer_key.pub").read_text()) as hosts:
        result["hosts up (s)"] = round(time.monotonic() - started, 1)
        addresses = {h.name: h.address for h in hosts.all}
        config_path = product / "deploy.toml"
        config_path.write_text(deploy_toml(fleet, addresses, args.batch or ""))
        layout = load_config(config_path).layout
        warm_wheelhouse(hosts[fleet.names[-1]], config_path, folder)
        front = addresses[fleet.front]
        fab_args = ["-i", str(key), "deploy", f"--product={product}", "--config",
                    str(config_path), *extra]  # fmt: skip
        print(f"   hosts up in {result['hosts up (s)']} s", flush=True)

        def deploy(which: str, about: str, load: "Load | None" = None) -> dict:
            """One timed `fab deploy` of the product stamped ``which``, checked live."""
            (api / "stamp.py").write_text(STAMP.format(stamp=which))
            print(f"   {which} deploy{about}", flush=True)
            done = timed_fab(fab_args, folder / f"{which}.log", args.verbose)
            if load is not None:
                time.sleep(1)  # and a second after: the last restarted worker serves too
            result[which] = summary(done)
            report_deploy(which, done)
            if not done["ok"]:
                raise FleetError(f"{size} hosts: {which} deploy failed:\n"
                                 f"{done['output'][-3000:]}")  # fmt: skip
            wait_stamp(front, which)
            return done

        deploy("first", "")
        before = {h.name: venvs(h, layout.venvs) for h in hosts.all}
        second = deploy("second", " (only product code changed)")
        after = {h.name: venvs(h, layout.venvs) for h in hosts.all}
        result["installed on second"] = sorted(n for n in after if after[n] - before[n])
        result["reused on second"] = reused_on(second["output"])
        print(f"   second deploy installed on: {result['installed on second'] or 'no host'}; "
              f"reused on: {result['reused on second'] or 'no host'}", flush=True)  # fmt: skip
        if args.load:
            kinds = ["echo", "update"] + (["where"] if len(fleet.pools) > 1 else [])
            with Load(front, kinds, args.clients, args.rate) as load:
                load.wait_sent(100)
                try:
                    deploy("third", " (only product code changed), under load", load)
                finally:
                    result["load"] = load.figures()
            print(f"   load: {result['load']}", flush=True)
    result["seconds"] = round(time.monotonic() - started, 1)


def summary(deploy: dict) -> dict:
    return {k: deploy[k] for k in ("seconds", "cpu", "exit", "ok", "phases")}


def report_deploy(which: str, deploy: dict) -> None:
    parts = ", ".join(f"{name} {seconds:g} s" for name, seconds in deploy["phases"])
    state = "ok" if deploy["ok"] else f"FAILED (exit {deploy['exit']})"
    print(f"   {which} deploy: {deploy['seconds']:g} s, {state}, {deploy['cpu']:g} CPU s on "
          f"{CORES} cores; {parts}", flush=True)  # fmt: skip


# The report (pure)


def installs(result: dict) -> str:
    if "second" not in result:
        return "—"
    installed = result.get("installed on second", [])
    if not installed:
        return "none"
    return f"{len(installed)} of {result['hosts']} hosts"


def failed_cell(result: dict) -> str:
    load = result.get("load")
    if not load:
        return "—"
    rate = load.get("rate per client")
    pace = f" × {rate:g}/s" if rate else ""
    return f"{load['failed']} of {load['requests']:,} ({load['clients']} clients{pace})"


def seconds_cell(result: dict, which: str) -> str:
    deploy = result.get(which)
    if not deploy:
        return "—"
    return f"{deploy['seconds']:.1f} s" + ("" if deploy["ok"] else " (failed)")


def table(results: list[dict]) -> list[str]:
    rows = [
        "| hosts | first deploy | second deploy (only code changed) | installs on second "
        "| third deploy (code), under load | failed requests under load |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [r["label"], seconds_cell(r, "first"), seconds_cell(r, "second"), installs(r),
                 seconds_cell(r, "third"), failed_cell(r)]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def phase_table(results: list[dict]) -> list[str]:
    """Seconds per phase of every deploy: where the time goes."""
    names: list[str] = []
    for r in results:
        for which in ("first", "second", "third"):
            for name, _ in r.get(which, {}).get("phases", []):
                if name not in names:
                    names.append(name)
    rows = ["| deploy | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in results:
        for which in ("first", "second", "third"):
            if which in r:
                got = dict(r[which]["phases"])
                cells = [f"{got[n]:.1f}" if n in got else "—" for n in names]
                rows.append(f"| {r['hosts']} hosts, {which} | " + " | ".join(cells) + " |")
    return rows


def cpu_table(results: list[dict], cores: int) -> list[str]:
    """Each deploy's wall time beside the CPU seconds the machine spent meanwhile: over the
    core count, the least wall time that work could take here, however parallel."""
    rows = [f"| deploy | wall | CPU seconds, all processes | CPU ÷ {cores} cores |",
            "|---|---|---|---|"]  # fmt: skip
    for r in results:
        for which in ("first", "second", "third"):
            deploy = r.get(which)
            if deploy and "cpu" in deploy:
                rows.append(f"| {r['hosts']} hosts, {which} | {deploy['seconds']:.1f} s "
                            f"| {deploy['cpu']:.1f} | {deploy['cpu'] / cores:.1f} s |")  # fmt: skip
    return rows if len(rows) > 2 else []


def targets(results: list[dict]) -> list[str]:
    """The deploy-time targets (a second deploy to 10 hosts within 1.5 times one host's, no
    failed request under load...), where this run measured them."""
    by = {r["hosts"]: r for r in results if r.get("second", {}).get("ok")}
    rows = []
    marks = {True: "yes", False: "**NO**"}
    if 1 in by and 10 in by:
        ratio = by[10]["second"]["seconds"] / by[1]["second"]["seconds"]
        rows.append(f"| second deploy, 10 hosts ÷ 1 host ≤ 1.5 × | {ratio:.2f} × "
                    f"| {marks[ratio <= 1.5]} |")  # fmt: skip
        ratio = by[10]["first"]["seconds"] / by[1]["first"]["seconds"]
        rows.append(f"| first deploy, 10 hosts ÷ 1 host ≤ 2 × | {ratio:.2f} × "
                    f"| {marks[ratio <= 2]} |")  # fmt: skip
    if 1 in by:
        s = by[1]["second"]["seconds"]
        rows.append(f"| second deploy to 1 host ≤ 10 s | {s:.1f} s | {marks[s <= 10]} |")
        none = not by[1].get("installed on second")
        rows.append(f"| second deploy to 1 host installs no package | {installs(by[1])} "
                    f"| {marks[none]} |")  # fmt: skip
    if 10 in by and "load" in by[10]:
        failed = by[10]["load"]["failed"]
        rows.append(f"| 0 failed requests under load, 10 hosts | {failed_cell(by[10])} "
                    f"| {marks[failed == 0]} |")  # fmt: skip
    if not rows:
        return []
    return ["| target | measured | met |", "|---|---|---|", *rows]


def report(results: list[dict], command: str, label: str, when: str, cores: int) -> str:
    out = [
        f"## Fleet deploys{f' ({label})' if label else ''}: run of {when}",
        "",
        f"`{command}`",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {what} | {value} |" for what, value in machine.describe()),
        "",
        *table(results),
        "",
        *(f"- {r['hosts']} hosts did not complete: {r['error'].strip().splitlines()[0]}"
          for r in results if r.get("error")),  # fmt: skip
        "",
        "Seconds per phase (from the kit's `==>` lines as fab printed them; build: the "
        "deployer's own work before the first of them):",
        "",
        *phase_table(results),
        "",
    ]
    cpu = cpu_table(results, cores)
    if cpu:
        out += ["CPU: the deployer and every test host share this machine's cores:", "", *cpu, ""]
    goals = targets(results)
    if goals:
        out += ["### Deploy-time targets against fleet size", "", *goals, ""]
    return "\n".join(out)


def markers(label: str) -> tuple[str, str]:
    return section_markers("fleet", label)


# The command


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n")[0])
    p.add_argument("--fleets", default="1,3,10", help="fleet sizes, of 1,3,10 (default all)")
    p.add_argument("--load", action="store_true",
                   help="clients post through the front during every second deploy")  # fmt: skip
    p.add_argument("--clients", type=int, default=20, help="client threads of --load (20)")
    p.add_argument("--rate", type=float, default=10,
                   help="requests a second per client of --load (10; 0: no pacing)")  # fmt: skip
    p.add_argument("--logs", type=Path, metavar="DIR", help="keep fab's output of each deploy")
    p.add_argument("--parallel", type=int, help="passed to fab deploy, if the kit has it")
    p.add_argument("--batch", help="deploy.toml's batch (the rolling restart's), e.g. 2 or 25%%")
    p.add_argument("--json", type=Path, metavar="FILE", help="save every figure as JSON")
    p.add_argument("--write", type=Path, metavar="MD", help="write or update the table in MD")
    p.add_argument("--label", default="", help="names the section --write updates (before...)")
    p.add_argument("--from-json", type=Path, metavar="FILE",
                   help="deploy nothing: report what an earlier --json saved")  # fmt: skip
    p.add_argument("--verbose", action="store_true", help="echo fab's output")
    args = p.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.fleets.split(",") if s.strip()]
        for size in args.sizes:
            shape(size)
    except ValueError as error:
        p.error(f"--fleets {args.fleets}: {error}")
    if args.parallel is not None and args.parallel < 1:
        p.error(f"--parallel {args.parallel}: a positive integer")
    if args.rate < 0:
        p.error(f"--rate {args.rate}: 0 or more")
    if args.clients < 1:
        p.error(f"--clients {args.clients}: a positive integer")
    return args


def passthrough(args: argparse.Namespace) -> list[str]:
    """fab deploy's flags from ours, each only if the kit that runs has it."""
    if args.parallel is None:
        return []
    helptext = fab_help()
    extra = []
    for flag, value in (("--parallel", args.parallel),):
        if value is None:
            continue
        if flag in helptext:
            extra.append(f"{flag}={value}")
        else:
            print(f"fab deploy has no {flag} here: not passed", flush=True)
    return extra


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = " ".join(["python -m bench.fleet", *argv])
    left: list[str] = []
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        results, command, when = saved["results"], saved["command"], saved["when"]
        cores = saved.get("cores", CORES)
    else:
        if os.geteuid() != 0:
            print("python -m bench.fleet: builds network namespaces: run it as root",
                  file=sys.stderr)  # fmt: skip
            return 2
        missing = [n for n in NEEDS if shutil.which(n) is None]
        if missing:
            print(f"python -m bench.fleet: needs {', '.join(missing)}", file=sys.stderr)
            return 2
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        cores = CORES
        signal.signal(signal.SIGTERM, interrupted)  # a kill cleans up as Ctrl-C does
        extra = passthrough(args)
        results = []
        work = Path(tempfile.mkdtemp(prefix="apiphant-fleet-"))
        failed = False
        try:
            for size in args.sizes:
                result = {"hosts": size, "label": shape(size).label}
                results.append(result)
                try:
                    run_fleet(size, args, work, extra, result)
                except (FleetError, testhosts.HostError) as error:
                    print(f"\n{error}", file=sys.stderr, flush=True)
                    result["error"] = str(error)[:4000]
                    failed = True
        finally:
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in work.glob("fleet*/*.log"):
                    shutil.copy(log, args.logs / f"{log.parent.name}-{log.name}")
            shutil.rmtree(work, ignore_errors=True)
        left = testhosts.leftovers(f"{testhosts.PREFIX}{os.getpid()}")
        if args.json:
            args.json.write_text(json.dumps(
                {"command": command, "when": when, "machine": machine.describe(), "cores": cores,
                 "results": results}, indent=1) + "\n")  # fmt: skip
        if failed:
            print("\nsome fleet did not complete: its row shows what was measured",
                  file=sys.stderr)  # fmt: skip
    text = report(results, command, args.label, when, cores)
    print("\n" + text)
    if args.write:
        write_results(args.write, text, *markers(args.label))
        print(f"wrote {args.write}")
    if left:
        print(f"left behind: {left}", file=sys.stderr)
        return 1
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
