"""Supervisor on a host, through the kit's client (supervise.py): started, its programs
restarted and matched to the config, its config checked."""

from collections.abc import Iterable
from shlex import quote as q

from apiphant.deploy.host import agents
from apiphant.deploy.host.agents import supervise
from apiphant.deploy.host.configs import unless_live
from apiphant.deploy.host.shell import join, side_by_side
from apiphant.deploy.layout import (
    HEALTH_PATH,
    RELEASE_ENV,
    SUPERVISOR_CONF_FILE,
    SUPERVISOR_INCLUDE,
    Layout,
    Paths,
)

#: Debian's supervisor unit, which systemd starts where it runs the host.
SERVICE = "supervisor"


def supervisor_ready(layout: Layout) -> str:
    """Start supervisord when it is not running, and wait (bounded) until it answers; one
    that answers with an error (its config, its credentials) stops the step, said as it is.
    Programs are left untouched, and the config is not reread here: each program's restart
    applies its own change as it comes to it."""
    return supervise(layout, "ready", "--service", SERVICE)


def restart_worker(layout: Layout, program: str, address: str, release: str, log: str) -> str:
    """Apply this program's own config change; unless it runs (or is starting on) the
    release already, stop it (its drain waited for) and start it without waiting out
    ``startsecs`` (``supervisorctl start`` blocks for them, a second per batch); then poll
    /health on its port until it answers with the release id. A failure shows the
    program's status and log."""
    health = f"http://{address}{HEALTH_PATH}"
    return supervise(layout, "restart", program, "--log", log, "--release", release,
                     "--env", RELEASE_ENV, "--health", health)  # fmt: skip


def restart_workers(
    layout: Layout,
    workers: Iterable[tuple[str, str, str]],
    release: str,
    also: Iterable[str] = (),
) -> str:
    """A batch: each (program, address, log) restarted and checked as ``restart_worker``
    does, and the commands ``also`` (the background runner's restart), side by side on the
    host; fails if any one does."""
    each = [restart_worker(layout, p, address, release, log) for p, address, log in workers]
    return side_by_side([*each, *also])


def restart_background(
    layout: Layout, program: str, release: str, log: str, wait: bool = True
) -> str:
    """The runner has no port: it is checked by the release id in its environment, once
    Supervisor has it RUNNING (past its ``startsecs``). Without ``wait`` it is only started
    on the release: the same command with ``wait`` checks it later (one STARTING on the
    release is waited for, one running it passes)."""
    return supervise(layout, "restart", program, "--log", log, "--release", release,
                     "--env", RELEASE_ENV, *([] if wait else ["--no-wait"]))  # fmt: skip


def supervisor_sync(layout: Layout, programs: Iterable[str]) -> str:
    """Add and remove the deployment's programs to match the config (workers added or gone,
    a host that lost its roles' programs): only its own names and those the deployment's
    pattern matches, never a bare ``update`` of every program on the host. Where there is
    no system Python there is no Supervisor; a failure is shown, and the deploy goes on."""
    sync = supervise(layout, "sync", layout.programs_pattern, *programs)
    return f"if [ -x {agents.SUPERVISOR_PYTHON} ]; then {sync}; fi; true"


def check_supervisor(paths: Paths) -> str:
    """Parse Supervisor's config as it will be (the other programs plus this release's) with
    Supervisor's own parser, before anything live is touched."""
    check = paths.check
    conf = paths.file(SUPERVISOR_CONF_FILE)
    ours = paths.layout.supervisor_include
    parse = (
        "import sys; from supervisor.options import ServerOptions; o = ServerOptions(); "
        "o.realize(['-c', sys.argv[1]]); "
        "print('supervisor: config parses,', len(o.process_group_configs), 'programs')"
    )
    return unless_live(paths, SUPERVISOR_CONF_FILE, "supervisor", join(
        f"mkdir -p {q(check)}",
        f"others=''; for f in {SUPERVISOR_INCLUDE}/*.conf; do "
        f'[ -e "$f" ] && [ "$f" != {q(ours)} ] && others="$others $f"; done; '
        f"printf '[supervisord]\\n[include]\\nfiles = %s%s\\n' "
        f'{q(conf)} "$others" > {q(check + "/supervisord.conf")}',
        f"{agents.SUPERVISOR_PYTHON} -c {q(parse)} {q(check + '/supervisord.conf')}",
    ))  # fmt: skip


def state(layout: Layout) -> str:
    """The deployment's programs, as supervisorctl shows them, for ``fab status``."""
    return (
        "echo 'processes:'; if supervisorctl pid >/dev/null 2>&1; then "
        f"supervisorctl status | awk -v p={q(layout.programs_pattern)} '$1 ~ p' "
        "| sed 's/^/  /'; else echo '  supervisord is not running'; fi"
    )
