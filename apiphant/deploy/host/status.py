"""What ``fab status`` and ``fab logs`` read on a host, read-only: status is composed of
each noun's own line."""

from collections.abc import Iterable
from shlex import quote as q

from apiphant.deploy.host import lock, nginx, supervisor
from apiphant.deploy.host.certbot import certificates
from apiphant.deploy.host.releases import current_id, releases
from apiphant.deploy.layout import HEALTH_PATH, Layout


def status(
    layout: Layout, workers: list[tuple[str, str]], certs: Iterable[tuple[str, str]] = ()
) -> str:
    """Release, processes, health and maintenance of one host, read-only."""
    parts = [
        f"if [ -e {q(layout.current)} ]; then "
        f'echo "release: $({current_id(layout)})"; '
        "else echo 'release: none'; fi",
        f'echo "releases:"; {{ {releases(layout)}; }} | sed "s/^/  /"',
        lock.state(layout),
        nginx.maintenance_state(layout),
        supervisor.state(layout),
    ]
    if workers:
        parts.append("echo 'health:'")
    for program, address in workers:
        parts.append(
            f"printf '  %s %s ' {q(program)} {q(address)}; "
            f"curl -sS --max-time 2 {q('http://' + address + HEALTH_PATH)} 2>&1; echo"
        )
    parts.append(nginx.state())
    if certs:
        parts.append(certificates(certs))
    return "; ".join(parts) + "; true"


def tail_logs(layout: Layout, lines: int, follow: bool) -> str:
    flag = " -F" if follow else ""
    return f"tail -n {int(lines)}{flag} {q(layout.logs)}/*.log"
