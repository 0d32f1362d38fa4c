"""The deploy's host agent, run on a host by its system Python: standard library only.

What the deploy does on a host that is a program rather than a one-line command: the
cleanup of old releases, and the check that Nginx sends requests to a restarted worker
again. Each activation uploads it to the deployment's folder (``Layout.agent``), beside
supervise.py (Supervisor's client), and runs it with ``/usr/bin/python3``, the Python
Debian's supervisor runs on: every host of a deployment has Supervisor. It never imports
apiphant; the deploy gives it every path. Exit status 0: done, 1: failed, 2: bad arguments.
"""

from __future__ import annotations  # the host's Python may be older than the deployer's

import argparse
import http.client
import math
import os
import re
import shutil
import sys
import time
import urllib.parse

# A release's own names, as apiphant.deploy.layout has them (a test holds them equal).
#: A release's folder: the UTC time of its deploy (``layout.RELEASE_ID``).
RELEASE_ID = re.compile(r"[0-9]{14}")
#: In a release's folder once it passed its smoke test (``layout.GOOD``).
GOOD = ".good"
#: A release's link to its virtualenv (``layout.VENV_LINK``).
VENV_LINK = "venv"
#: A release's run script, below its folder (``layout.run_script``).
RUN_SCRIPT = ("config", "run")
#: Seconds between two tries of the rotation check.
POLL = 0.02
#: Seconds a try of the rotation check may take, each request and the connection.
TRY_TIMEOUT = 5


def _entries(folder: str) -> list[str]:
    """The names in ``folder`` that a shell's ``*`` matches (none hidden), sorted."""
    try:
        return sorted(name for name in os.listdir(folder) if not name.startswith("."))
    except OSError:
        return []


def _remove(path: str) -> None:
    """``rm -rf``: a link goes, not what it points at; a failure is said and the rest goes on."""
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.remove(path)
        else:
            shutil.rmtree(path)
    except OSError as error:
        print(f"agent.py: cannot remove {path}: {error.strerror}", file=sys.stderr)


def _reads(script: str, text: str) -> bool:
    try:
        with open(script, encoding="utf-8", errors="replace") as f:
            return text in f.read()
    except OSError:
        return False


def cleanup(keep: int, releases: str, current: str, venvs: str, shared_secrets: str) -> None:
    """Keep the newest ``keep`` good releases and the current one; failed ones never count,
    and go. So do the virtualenvs no kept release links to, and the secrets an earlier kit
    shared between releases (``shared_secrets``) once no kept release's run script reads
    them: a secret lives as long as a release that was deployed with it. A removal that
    fails is said, and the cleanup goes on: it never fails a deploy that went live."""
    ids = [name for name in _entries(releases) if RELEASE_ID.fullmatch(name)]
    live = os.path.basename(os.path.realpath(current))
    kept = [r for r in reversed(ids) if os.path.exists(os.path.join(releases, r, GOOD))][:keep]
    for release in ids:
        if release not in kept and release != live:
            print(f"removing release {release}")
            _remove(os.path.join(releases, release))
    print("kept: " + "".join(f"{r} " for r in kept))
    left = [os.path.join(releases, name) for name in _entries(releases)]
    used = {os.path.realpath(os.path.join(folder, VENV_LINK)) for folder in left}
    for name in _entries(venvs):
        venv = os.path.join(venvs, name)
        if os.path.isdir(venv) and os.path.realpath(venv) not in used:
            print(f"removing virtualenv {name}")
            _remove(venv)
    scripts = [os.path.join(folder, *RUN_SCRIPT) for folder in left]
    if os.path.exists(shared_secrets) and not any(_reads(s, shared_secrets) for s in scripts):
        _remove(shared_secrets)
        if not os.path.exists(shared_secrets):
            print(f"removing {shared_secrets}: no kept release reads it")


def _try(url: str, host: str, header: str, rounds: int) -> list[tuple[int, str]]:
    """``rounds`` requests on one connection (HTTP/1.1 keep-alive): each answer's status and
    the worker that answered it, the last address of ``header`` (Nginx's
    ``$upstream_addr`` lists every worker tried, ``a, b``)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80,
                                            timeout=TRY_TIMEOUT)  # fmt: skip
    answers = []
    try:
        for _ in range(rounds):
            connection.request("GET", parts.path or "/", headers={"Host": host})
            response = connection.getresponse()
            response.read()
            by = (response.getheader(header) or "").replace(" ", "").rpartition(",")[2]
            answers.append((response.status, by))
    except (OSError, http.client.HTTPException):
        pass  # no answer (yet): the next try asks again
    finally:
        connection.close()
    return answers


def rotation(url: str, host: str, header: str, address: str, back_within: float,
             slack: float = 10, rounds: int = 1) -> bool:  # fmt: skip
    """Wait until Nginx sends requests to ``address`` again: its pool's /health through
    Nginx's rotation server (``url``, by the name ``host``) names the worker that answered
    (``header``). Nginx takes a worker that refused a connection back at most
    ``back_within`` seconds later, so the wait is bounded by that and ``slack`` seconds for
    rounds of the pool. Each try is ``rounds`` requests on one connection (the pool's size:
    one turn of its round robin), so a worker back in rotation is seen at the first try,
    not when a lone request happens to land on it between the load's. A front whose config
    has no rotation server (a release from before it: 404, no worker named) gets a fixed
    wait of ``back_within`` instead."""
    pause = math.ceil(back_within)
    limit = back_within + slack
    deadline = time.monotonic() + limit
    while True:
        answers = _try(url, host, header, rounds)
        if any(status == 404 and not by for status, by in answers):
            print(f"no rotation check in this release's Nginx config: waiting {pause}s")
            time.sleep(pause)
            return True
        if any(status == 200 and by == address for status, by in answers):
            print(f"{address} is in rotation")
            return True
        if time.monotonic() >= deadline:
            print(f"Nginx sends no request to {address}: not back in rotation after {limit:g}s",
                  file=sys.stderr)  # fmt: skip
            return False
        time.sleep(POLL)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agent.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cleaning = sub.add_parser("cleanup", help="remove old and failed releases, and what only "
                              "they used")  # fmt: skip
    cleaning.add_argument("--keep", type=int, required=True, help="good releases kept")
    cleaning.add_argument("--releases", required=True, help="the releases' folder")
    cleaning.add_argument("--current", required=True, help="the link to the current release")
    cleaning.add_argument("--venvs", required=True, help="the shared virtualenvs' folder")
    cleaning.add_argument("--shared-secrets", required=True,
                          help="the secrets file an earlier kit shared between releases")
    rotating = sub.add_parser("rotation", help="wait until Nginx sends requests to a worker")
    rotating.add_argument("url", help="the worker's pool on Nginx's rotation server")
    rotating.add_argument("--host", required=True, help="the rotation server's name")
    rotating.add_argument("--header", required=True, help="the header naming the worker")
    rotating.add_argument("--address", required=True, help="the worker, ADDRESS:PORT")
    rotating.add_argument("--back-within", type=float, required=True,
                          help="seconds until Nginx tries a worker that refused again")
    rotating.add_argument("--slack", type=float, default=10, help="seconds more, at most")
    rotating.add_argument("--rounds", type=int, default=1, help="requests a try (pool size)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # each line as it happens, through SSH too
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.command == "cleanup":
        cleanup(args.keep, args.releases, args.current, args.venvs, args.shared_secrets)
        return 0
    passed = rotation(args.url, args.host, args.header, args.address, args.back_within,
                      args.slack, args.rounds)  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
