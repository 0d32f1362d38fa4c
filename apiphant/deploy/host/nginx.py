"""Nginx on a host: its config checked, started or reloaded, maintenance, and whether it
sends requests to a restarted worker again."""

from collections.abc import Iterable
from shlex import quote as q

from apiphant.deploy.host.agents import agent
from apiphant.deploy.host.shell import join, systemd_or
from apiphant.deploy.layout import (
    NGINX_HTTP_FILE,
    NGINX_MAIN_FILE,
    NGINX_PIDFILE,
    NGINX_SITE_FILE,
    NGINX_SITES,
    Layout,
    Paths,
)


def check_nginx(
    paths: Paths, unlinked: Iterable[str], open_files: int, needs_certificate: str = ""
) -> str:
    """``nginx -t`` on the full config as it will be: this release's nginx.conf and site, and
    every other site but those the deploy unlinks. A lone site file cannot be tested: it
    relies on includes. Also that the host allows the open files the config asks for.

    ``needs_certificate``: the certificate the site's 443 server reads (tls = "acme"); until
    it exists, the site Nginx will serve first (nginx-http.conf) is checked instead."""
    check = paths.check + "/nginx"
    site = paths.layout.site
    own = q(paths.file(NGINX_SITE_FILE))
    if needs_certificate:
        own = '"$own"'
        first = q(paths.file(NGINX_HTTP_FILE))
    skip = " ".join(q(f) for f in (site, *unlinked))
    too_many = q(f"nginx: worker_rlimit_nofile {open_files} is above this host's fs.nr_open ")
    choose = (
        [f"own={q(paths.file(NGINX_SITE_FILE))}; [ -s {q(needs_certificate)} ] || own={first}"]
        if needs_certificate else []
    )  # fmt: skip
    return join(
        *choose,
        f'[ "$(cat /proc/sys/fs/nr_open)" -ge {int(open_files)} ] || '
        f'{{ echo {too_many}"($(cat /proc/sys/fs/nr_open)): lower nginx.worker_connections" >&2; '
        "false; }",
        f"rm -rf {q(check)}",
        f"mkdir -p {q(check + '/sites')}",
        f'for f in {NGINX_SITES}/*; do [ -e "$f" ] || continue; '
        f'for s in {skip}; do [ "$f" = "$s" ] && continue 2; done; '
        f'ln -s "$(readlink -f "$f")" {q(check + "/sites")}/"$(basename "$f")"; done',
        f"ln -s {own} {q(check + '/sites/' + site.rpartition('/')[2])}",
        f"sed {q('s#' + NGINX_SITES + '/#' + check + '/sites/#g')} "
        f"{q(paths.file(NGINX_MAIN_FILE))} > {q(check + '/nginx.conf')}",
        f"nginx -t -q -c {q(check + '/nginx.conf')}",
        "echo 'nginx: full config with this release is ok'",
    )


def running() -> str:
    """A shell test: Nginx's master process runs."""
    pid = NGINX_PIDFILE
    return f'[ -s {pid} ] && kill -0 "$(cat {pid})" 2>/dev/null'


def state() -> str:
    """Nginx's line of ``fab status``."""
    return f'if {running()}; then echo "nginx: running"; else echo \'nginx: not running\'; fi'


def nginx_reload() -> str:
    """Reload Nginx and wait (bounded) for its old workers to finish their requests, so
    no request goes on with the previous upstreams once this returns."""
    pid = NGINX_PIDFILE
    return (
        f"{{ master=$(cat {pid}); old=$(pgrep -P \"$master\" | tr '\\n' ' '); "
        "nginx -s reload && { alive=; for i in $(seq 1 100); do alive=; "
        'for p in $old; do kill -0 "$p" 2>/dev/null && alive=1; done; '
        '[ -z "$alive" ] && break; sleep 0.1; done; '
        "if [ -n \"$alive\" ]; then echo 'nginx reloaded; old workers still finishing requests';"
        " else echo 'nginx reloaded'; fi; }; }"
    )


def nginx_ready(files: Iterable[str], loaded: str) -> str:
    """Start Nginx when it is not running; reload it only when its config ``files`` changed
    since the last load (``loaded`` keeps a copy): a reload makes the old Nginx workers
    close their busy client connections, which clients reusing them see as errors."""
    start = systemd_or("nginx", "nginx")
    both = " ".join(q(f) for f in files)
    keep = f"cat {both} > {q(loaded)}"
    return (
        f"if {running()}; then "
        f"if cat {both} | cmp -s - {q(loaded)}; then echo 'nginx: config unchanged, not reloaded'; "
        f"else {nginx_reload()} && {keep}; fi; "
        f"else {{ {start}; }} && echo 'nginx started' && {keep}; fi"
    )


def nginx_check_live() -> str:
    """``nginx -t`` on the live config: the 443 server and its certificate, before a reload."""
    return "nginx -t -q && echo 'nginx: config with its certificate is ok'"


def nginx_test_reload() -> str:
    """A new certificate goes live only through a config Nginx accepts."""
    return f"nginx -t -q && {nginx_reload()}"


def in_rotation(
    layout: Layout,
    url: str,
    host: str,
    header: str,
    address: str,
    back_within: float,
    slack: float = 10,
    rounds: int = 1,
) -> str:
    """Wait until Nginx sends requests to ``address`` again: its pool's /health through
    the rotation server (``url``) names the worker that answered. Nginx takes a worker that
    refused a connection back at most ``back_within`` seconds later (``Nginx.back_within``),
    so the wait is bounded by that and ``slack`` seconds for rounds of the pool. Each try is
    ``rounds`` requests on one connection (the pool's size: one turn of its round robin),
    so a worker back in rotation is seen at the first try, not when a lone request happens
    to land on it between the load's. A front whose config has no rotation server (a
    release from before it) gets a fixed wait of ``back_within`` instead. The host agent
    does it (agent.py rotation)."""
    return agent(layout, "rotation", url, "--host", host, "--header", header,
                 "--address", address, "--back-within", f"{back_within:g}",
                 "--slack", f"{slack:g}", "--rounds", str(int(rounds)))  # fmt: skip


def maintenance(layout: Layout, on: bool) -> str:
    """Turn maintenance on (Nginx answers a JSON 503 to the public) or off; no reload: Nginx
    checks the file on each request. It lives in shared/, so it outlasts deploys."""
    if on:
        return (
            f"install -m 0644 /dev/null {q(layout.maintenance)} && "
            "echo 'maintenance: on (every public request gets 503)'"
        )
    return f"rm -f {q(layout.maintenance)} && echo 'maintenance: off'"


def maintenance_state(layout: Layout) -> str:
    """Maintenance's line of ``fab status``."""
    return (
        f"if [ -e {q(layout.maintenance)} ]; then echo 'maintenance: on'; "
        "else echo 'maintenance: off'; fi"
    )
