"""What ``fab status`` and ``fab logs`` read on a host: read-only."""

from collections.abc import Iterable
from shlex import quote as q

from apiphant.deploy.host.certbot import certificates
from apiphant.deploy.host.releases import releases
from apiphant.deploy.layout import NGINX_PIDFILE, Layout


def status(
    layout: Layout, workers: list[tuple[str, str]], certs: Iterable[tuple[str, str]] = ()
) -> str:
    """Release, processes, health and maintenance of one host, read-only."""
    parts = [
        f"if [ -e {q(layout.current)} ]; then "
        f'echo "release: $(basename "$(readlink -f {q(layout.current)})")"; '
        "else echo 'release: none'; fi",
        f'echo "releases:"; {{ {releases(layout)}; }} | sed "s/^/  /"',
        f'if [ -d {q(layout.lock)} ]; then echo "lock: held by $(cat {q(layout.holder)})";'
        " else echo 'lock: free'; fi",
        f"if [ -e {q(layout.maintenance)} ]; then echo 'maintenance: on'; "
        "else echo 'maintenance: off'; fi",
        "echo 'processes:'; if supervisorctl pid >/dev/null 2>&1; then "
        f"supervisorctl status | awk -v p={q(layout.programs_pattern)} '$1 ~ p' "
        "| sed 's/^/  /'; else echo '  supervisord is not running'; fi",
    ]
    if workers:
        parts.append("echo 'health:'")
    for program, address in workers:
        parts.append(
            f"printf '  %s %s ' {q(program)} {q(address)}; "
            f"curl -sS --max-time 2 {q('http://' + address + '/health')} 2>&1; echo"
        )
    pid = NGINX_PIDFILE
    parts.append(
        f'if [ -s {pid} ] && kill -0 "$(cat {pid})" 2>/dev/null; then echo "nginx: running"; '
        "else echo 'nginx: not running'; fi"
    )
    if certs:
        parts.append(certificates(certs))
    return "; ".join(parts) + "; true"


def tail_logs(layout: Layout, lines: int, follow: bool) -> str:
    flag = " -F" if follow else ""
    return f"tail -n {int(lines)}{flag} {q(layout.logs)}/*.log"
