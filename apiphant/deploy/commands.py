"""Shell commands run on the hosts, built as strings: pure, and every argument quoted.

Each function returns one POSIX shell command (run by the SSH user's shell,
root). Names and paths come from a checked Config, and are quoted with
shlex.quote all the same. Loops are bounded: a health check gives up.
"""

from collections.abc import Iterable
from shlex import quote as q

from apiphant.deploy.render import NGINX_PIDFILE, Paths

SUPERVISOR_CONF = "/etc/supervisor/supervisord.conf"
SUPERVISOR_INCLUDE = "/etc/supervisor/conf.d"
NGINX_SITES = "/etc/nginx/sites-enabled"
#: A system file the deploy replaces with a link is kept beside it under this suffix, and
#: put back when the link goes.
BEFORE = ".before-apiphant"
#: Debian's supervisor package runs on the system Python; its config parser is checked with it.
SUPERVISOR_PYTHON = "/usr/bin/python3"
#: Exit status of the lock command when another deploy holds the lock.
LOCKED = 75
HEALTH_TRIES = 60  # half a second apart: 30 s and more for a worker to answer


def join(*commands: str) -> str:
    """``a && b``; a command list (with ``;``) is grouped so ``&&`` applies to all of it."""
    return " && ".join(f"{{ {c}; }}" if ";" in c else c for c in commands)


def lock(paths: Paths, holder: str) -> str:
    """Take the per-host deploy lock (mkdir is atomic) or say who holds it."""
    return (
        f"mkdir -p {q(paths.root)} && "
        f"if mkdir {q(paths.lock)} 2>/dev/null; then "
        f"printf '%s\\n' {q(holder)} > {q(paths.lock + '/holder')}; "
        f'else echo "held by $(cat {q(paths.lock + "/holder")} 2>/dev/null || echo unknown)"; '
        f"exit {LOCKED}; fi"
    )


def unlock(paths: Paths) -> str:
    return f"rm -rf {q(paths.lock)}"


def apt_install(packages: Iterable[str]) -> str:
    """Install the packages not installed yet; nothing (not even apt-get update) when all are."""
    names = " ".join(q(p) for p in packages)
    return (
        f"missing=''; for p in {names}; do "
        "dpkg-query -W -f='${db:Status-Abbrev}' \"$p\" 2>/dev/null | grep -q '^ii' "
        '|| missing="$missing $p"; done; '
        "if [ -z \"$missing\" ]; then echo 'apt: all installed'; else "
        'echo "apt: installing$missing"; export DEBIAN_FRONTEND=noninteractive; '
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; fi"
    )


def system_user(user: str, home: str) -> str:
    return (
        f"id -u {q(user)} >/dev/null 2>&1 || useradd --system --user-group "
        f"--home-dir {q(home)} --no-create-home --shell /usr/sbin/nologin {q(user)}"
    )


#: Logs may hold what clients sent: readable by root and the adm group only (Debian's way).
LOGS_OWNER = ("root", "adm", 0o750)


def make_release_dirs(paths: Paths, logs: str) -> str:
    exists = q(f"release {paths.release_id} exists already")
    owner, group, mode = LOGS_OWNER
    return join(
        f"install -d -m 0755 {q(paths.root)} {q(paths.releases)} {q(paths.shared)}",
        f"install -d -m {mode:04o} -o {owner} -g {group} {q(logs)}",
        f"if [ -e {q(paths.release)} ]; then echo {exists} >&2; false; fi",
        f"install -d -m 0755 {q(paths.release)} {q(paths.release + '/config')}",
    )


def extract(paths: Paths, tarball: str) -> str:
    return join(
        f"tar -xzf {q(tarball)} -C {q(paths.release)} --no-same-owner",
        f"rm -f {q(tarball)}",
    )


def upload_prepare(temp: str, mode: int, owner: str, group: str) -> str:
    """An empty file with its final mode and owner: the content arrives already private."""
    return f"install -m {mode:04o} -o {q(owner)} -g {q(group)} /dev/null {q(temp)}"


def upload_finish(temp: str, remote: str) -> str:
    """Rename over the target: atomic, and replaces a symlink rather than writing through it."""
    return f"mv -Tf {q(temp)} {q(remote)}"


def virtualenv(paths: Paths, python: str, product: str) -> str:
    venv = paths.release + "/venv"
    return join(
        f"{q(python)} -m venv {q(venv)}",
        f"{q(venv + '/bin/pip')} install --quiet --disable-pip-version-check "
        f"-r {q(paths.release + '/config/requirements.txt')}",
        f"{q(venv + '/bin/python')} -m compileall -q {q(paths.release + '/' + product)}",
    )


def check_supervisor(paths: Paths, product: str) -> str:
    """Parse Supervisor's config as it will be (the other programs plus this release's) with
    Supervisor's own parser, before anything live is touched."""
    check = paths.release + "/config/check"
    conf = paths.release + "/config/supervisor.conf"
    ours = f"{SUPERVISOR_INCLUDE}/{product}.conf"
    parse = (
        "import sys; from supervisor.options import ServerOptions; o = ServerOptions(); "
        "o.realize(['-c', sys.argv[1]]); "
        "print('supervisor: config parses,', len(o.process_group_configs), 'programs')"
    )
    return join(
        f"mkdir -p {q(check)}",
        f"others=''; for f in {SUPERVISOR_INCLUDE}/*.conf; do "
        f'[ -e "$f" ] && [ "$f" != {q(ours)} ] && others="$others $f"; done; '
        f"printf '[supervisord]\\n[include]\\nfiles = %s%s\\n' "
        f'{q(conf)} "$others" > {q(check + "/supervisord.conf")}',
        f"{SUPERVISOR_PYTHON} -c {q(parse)} {q(check + '/supervisord.conf')}",
    )


def check_nginx(paths: Paths, product: str, unlinked: Iterable[str], open_files: int) -> str:
    """``nginx -t`` on the full config as it will be: this release's nginx.conf and site, and
    every other site but those the deploy unlinks. A lone site file cannot be tested: it
    relies on includes. Also that the host allows the open files the config asks for."""
    check = paths.release + "/config/check/nginx"
    config = paths.release + "/config"
    skip = " ".join(q(f) for f in (f"{NGINX_SITES}/{product}.conf", *unlinked))
    too_many = q(f"nginx: worker_rlimit_nofile {open_files} is above this host's fs.nr_open ")
    return join(
        f'[ "$(cat /proc/sys/fs/nr_open)" -ge {int(open_files)} ] || '
        f'{{ echo {too_many}"($(cat /proc/sys/fs/nr_open)): lower nginx.worker_connections" >&2; '
        "false; }",
        f"rm -rf {q(check)}",
        f"mkdir -p {q(check + '/sites')}",
        f'for f in {NGINX_SITES}/*; do [ -e "$f" ] || continue; '
        f'for s in {skip}; do [ "$f" = "$s" ] && continue 2; done; '
        f'ln -s "$(readlink -f "$f")" {q(check + "/sites")}/"$(basename "$f")"; done',
        f"ln -s {q(config + '/nginx.conf')} {q(check + '/sites/' + product + '.conf')}",
        f"sed {q('s#' + NGINX_SITES + '/#' + check + '/sites/#g')} "
        f"{q(config + '/nginx-main.conf')} > {q(check + '/nginx.conf')}",
        f"nginx -t -q -c {q(check + '/nginx.conf')}",
        "echo 'nginx: full config with this release is ok'",
    )


def check_logrotate(paths: Paths) -> str:
    check = paths.release + "/config/check"
    return join(
        f"mkdir -p {q(check)}",
        f"logrotate -d -s {q(check + '/logrotate.state')} {q(paths.release + '/config/logrotate')}"
        " 2>/dev/null",
        "echo 'logrotate: config parses'",
    )


def switch(paths: Paths, release: str) -> str:
    """Point ``current`` at a release: a new symlink renamed over the old one, atomic."""
    target = f"{paths.releases}/{release}"
    temp = paths.current + ".new"
    return join(
        f"test -x {q(target + '/venv/bin/apiphant')}",
        f"ln -sfn {q(target)} {q(temp)}",
        f"mv -Tf {q(temp)} {q(paths.current)}",
        f'echo "current -> $(readlink {q(paths.current)})"',
    )


def current_release(paths: Paths) -> str:
    return f'basename "$(readlink -f {q(paths.current)})" 2>/dev/null; true'


def link(targets: dict[str, str], unused: Iterable[str], current: str) -> str:
    """Link the release's configs into /etc (via ``current``); unlink those no role needs.

    A system file a link replaces (Debian's nginx.conf) is kept as ``FILE.before-apiphant``
    and put back when the link goes.
    """
    parts = []
    for name, destination in targets.items():
        directory, _, base = destination.rpartition("/")
        temp = f"{directory}/.{base}.new"
        kept = q(destination + BEFORE)
        parts.append(
            f"if [ -f {q(destination)} ] && [ ! -L {q(destination)} ] && [ ! -e {kept} ]; "
            f"then cp -p {q(destination)} {kept}; fi"
        )
        parts.append(f"ln -sfn {q(current + '/config/' + name)} {q(temp)}")
        parts.append(f"mv -Tf {q(temp)} {q(destination)}")
    for destination in unused:
        kept = q(destination + BEFORE)
        parts.append(
            f"if [ -L {q(destination)} ]; then rm -f {q(destination)}; "
            f"if [ -f {kept} ]; then mv -f {kept} {q(destination)}; fi; fi"
        )
    return join(*parts) if parts else "true"


def systemd_or(service: str, direct: str) -> str:
    """Start a service with systemd when it runs the host, else directly (containers)."""
    return f"if [ -d /run/systemd/system ]; then systemctl start {q(service)}; else {direct}; fi"


def supervisor_ready() -> str:
    """Reread the config when supervisord runs; start it when not. Programs start untouched:
    the rolling restart applies changes one program at a time."""
    start = systemd_or("supervisor", f"supervisord -c {SUPERVISOR_CONF}")
    return (
        "if supervisorctl pid >/dev/null 2>&1; then supervisorctl reread; else "
        f"{start}; ok=; for i in $(seq 1 50); do "
        "if supervisorctl pid >/dev/null 2>&1; then ok=1; break; fi; sleep 0.2; done; "
        "[ -n \"$ok\" ] || { echo 'supervisord did not start' >&2; false; }; "
        "echo 'supervisord started'; fi"
    )


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
    pid = NGINX_PIDFILE
    start = systemd_or("nginx", "nginx")
    both = " ".join(q(f) for f in files)
    keep = f"cat {both} > {q(loaded)}"
    return (
        f'if [ -s {pid} ] && kill -0 "$(cat {pid})" 2>/dev/null; then '
        f"if cat {both} | cmp -s - {q(loaded)}; then echo 'nginx: config unchanged, not reloaded'; "
        f"else {nginx_reload()} && {keep}; fi; "
        f"else {{ {start}; }} && echo 'nginx started' && {keep}; fi"
    )


def _healthy(url: str, release: str) -> str:
    needle = f'"release": "{release}"'
    return f"curl -fsS --max-time 2 {q(url)} 2>/dev/null | grep -qF {q(needle)}"


def restart_worker(program: str, address: str, release: str, log: str) -> str:
    """Apply this program's own config change, restart it unless it already runs the release,
    and wait until /health on its port answers with the release id."""
    url = f"http://{address}/health"
    already = q(f"{program} already runs {release}")
    answers = q(f"{program}: /health answers release {release}")
    silent = q(f"{program}: no /health answer with release {release} on {address}")
    return (
        f"supervisorctl update {q(program)} >/dev/null; "
        f"if {_healthy(url, release)}; then echo {already}; "
        f"else supervisorctl restart {q(program)}; fi; "
        f"ok=; for i in $(seq 1 {HEALTH_TRIES}); do "
        f"if {_healthy(url, release)}; then ok=1; break; fi; sleep 0.5; done; "
        f'if [ -n "$ok" ]; then echo {answers}; else echo {silent} >&2; '
        f"supervisorctl status {q(program)} >&2; tail -n 30 {q(log)} >&2; false; fi"
    )


def _runs_release(program: str, release: str) -> str:
    return (
        f'pid=$(supervisorctl pid {q(program)} 2>/dev/null); [ "${{pid:-0}}" -gt 0 ] 2>/dev/null '
        f"&& tr '\\0' '\\n' < /proc/$pid/environ | grep -qx {q('APIPHANT_RELEASE=' + release)}"
    )


def restart_background(program: str, release: str, log: str) -> str:
    """The runner has no port: it is checked by the release id in its environment."""
    already = q(f"{program} already runs {release}")
    runs = q(f"{program} runs release {release}")
    not_yet = q(f"{program} does not run release {release}")
    return (
        f"supervisorctl update {q(program)} >/dev/null; "
        f"if {_runs_release(program, release)}; then echo {already}; "
        f"else supervisorctl restart {q(program)}; fi; "
        f"ok=; for i in $(seq 1 20); do if {_runs_release(program, release)}; then "
        "ok=1; break; fi; sleep 0.5; done; "
        f'if [ -n "$ok" ]; then echo {runs}; else echo {not_yet} >&2; '
        f"supervisorctl status {q(program)} >&2; tail -n 30 {q(log)} >&2; false; fi"
    )


def supervisor_sync(product: str, programs: Iterable[str]) -> str:
    """Add and remove the product's programs to match the config (workers added or gone).
    Only the product's own names are given: a bare ``supervisorctl update`` would apply
    every pending change of every program on the host."""
    names = " ".join(q(p) for p in programs)
    pattern = f"^{product}-(api-[0-9]+|background)$"
    return (
        "if supervisorctl pid >/dev/null 2>&1; then "
        f"names=$(printf '%s\\n' {names} $(supervisorctl status 2>/dev/null | awk '{{print $1}}' "
        f"| grep -E {q(pattern)}) | sort -u | tr '\\n' ' '); "
        'if [ -n "${names% }" ]; then supervisorctl update $names; fi; fi; true'
    )


def smoke_test(paths: Paths, release: str, product: str, user: str, url: str) -> str:
    """The product's test.py through Nginx with the release's own test.sh and virtualenv."""
    root = f"{paths.releases}/{release}"
    return (
        f"cd {q(root)} && runuser -u {q(user)} -- env PYTHON={q(root + '/venv/bin/python')} "
        f"bash {q(root + '/test.sh')} --product {q(root + '/' + product)} {q(url)}"
    )


def mark_good(paths: Paths) -> str:
    return f"touch {q(paths.release + '/.good')}"


def cleanup(paths: Paths, keep: int) -> str:
    """Keep the newest ``keep`` good releases and current; failed ones never count, and go."""
    rel = q(paths.releases)
    return (
        f'cd {rel} && current=$(basename "$(readlink -f {q(paths.current)})") && '
        "kept=$(for r in $(ls -1 | grep -E '^[0-9]{14}$' | sort -r); do "
        f"[ -e \"$r/.good\" ] && echo \"$r\"; done | head -n {int(keep)} | tr '\\n' ' ') && "
        "for r in $(ls -1 | grep -E '^[0-9]{14}$'); do "
        'case " $kept $current " in *" $r "*) ;; '
        f'*) echo "removing release $r"; rm -rf -- {rel}/"$r" ;; esac; done; '
        'echo "kept: $kept"'
    )


def releases(paths: Paths) -> str:
    """One line per release, newest first: ``ID good|failed [current]``."""
    return (
        f'current=$(basename "$(readlink -f {q(paths.current)})" 2>/dev/null); '
        f"for r in $(ls -1 {q(paths.releases)} 2>/dev/null | grep -E '^[0-9]{{14}}$' | sort -r); "
        f'do s=failed; [ -e {q(paths.releases)}/"$r"/.good ] && s=good; '
        'c=; [ "$r" = "$current" ] && c=current; echo "$r $s $c"; done; true'
    )


def status(paths: Paths, product: str, workers: list[tuple[str, str]], logs: str) -> str:
    """Release, processes and health of one host, read-only."""
    parts = [
        f"if [ -e {q(paths.current)} ]; then "
        f'echo "release: $(basename "$(readlink -f {q(paths.current)})")"; '
        "else echo 'release: none'; fi",
        f'echo "releases:"; {{ {releases(paths)}; }} | sed "s/^/  /"',
        f'if [ -d {q(paths.lock)} ]; then echo "lock: held by $(cat {q(paths.lock + "/holder")})";'
        " else echo 'lock: free'; fi",
        "echo 'processes:'; if supervisorctl pid >/dev/null 2>&1; then "
        f"supervisorctl status | grep -E {q('^' + product + '-')} | sed 's/^/  /'; "
        "else echo '  supervisord is not running'; fi",
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
    return "; ".join(parts) + "; true"


def tail_logs(logs: str, lines: int, follow: bool) -> str:
    flag = "-F" if follow else ""
    return f"tail -n {int(lines)} {flag} {q(logs)}/*.log".replace("  ", " ")
