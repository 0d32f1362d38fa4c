"""Shell commands run on the hosts, built as strings: pure, and every argument quoted.

Each function returns one POSIX shell command, run as root (directly, or
through sudo for a non-root SSH user: the runner wraps it). Paths come from
``layout`` alone, names from a checked Config, and all are quoted with
shlex.quote all the same. Loops are bounded: a health check gives up.
"""

import math
from collections.abc import Iterable
from shlex import quote as q

from apiphant.deploy.config import Tls
from apiphant.deploy.layout import (
    BEFORE,
    CERTBOT,
    LOGROTATE,
    NGINX_PIDFILE,
    NGINX_SITES,
    NGINX_USER,
    RELEASE_ENV,
    RELEASE_ID_SHELL,
    SUPERVISOR_CONF,
    SUPERVISOR_INCLUDE,
    VENV_DONE,
    Layout,
    Paths,
)

#: Debian's supervisor package runs on the system Python: its config parser is checked with
#: it, and the kit's Supervisor client (supervise.py, standard library only) runs on it.
SUPERVISOR_PYTHON = "/usr/bin/python3"
#: Exit status of the lock command when another deploy holds the lock.
LOCKED = 75


def join(*commands: str) -> str:
    """``a && b``; a command list (with ``;``) is grouped so ``&&`` applies to all of it."""
    return " && ".join(f"{{ {c}; }}" if ";" in c else c for c in commands)


def lock(layout: Layout, holder: str) -> str:
    """Take the per-host deploy lock (mkdir is atomic) or say who holds it."""
    return (
        f"mkdir -p {q(layout.root)} && "
        f"if mkdir {q(layout.lock)} 2>/dev/null; then "
        f"printf '%s\\n' {q(holder)} > {q(layout.holder)}; "
        f'else echo "held by $(cat {q(layout.holder)} 2>/dev/null || echo unknown)"; '
        f"exit {LOCKED}; fi"
    )


def unlock(layout: Layout) -> str:
    """Remove the lock, saying whose it was (for ``fab unlock``: who it interrupts)."""
    return (
        f"if [ -d {q(layout.lock)} ]; then echo \"removed the lock of "
        f'$(cat {q(layout.holder)} 2>/dev/null || echo unknown)"; '
        f"rm -rf {q(layout.lock)}; else echo 'no lock held'; fi"
    )


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


def account_check(layout: Layout) -> str:
    """Fails, in one line on stderr, when an account of the deployment's user name exists
    that the deploy did not make: a system account (postgres, redis...) or a person's, whose
    files and processes the product's programs would share. The deploy's own accounts carry
    its mark (``Layout.account_comment``); one with no comment and the deployment's folder
    as its home was made by an earlier version of the kit, which did not mark them.
    Read-only: asked before anything changes on any host, and again before ``useradd``."""
    user, mark, home = layout.user, layout.account_comment, layout.root
    refused = (f"user {user} exists and the deploy did not make it: its programs would run "
               "as that account; choose another product (or environment) name, or remove "
               "the account")  # fmt: skip
    return (
        f"if entry=$(getent passwd {q(user)}); then "
        "comment=$(printf '%s\\n' \"$entry\" | cut -d: -f5); "
        "home=$(printf '%s\\n' \"$entry\" | cut -d: -f6); "
        f'if [ "$comment" != {q(mark)} ] && '
        f'{{ [ -n "$comment" ] || [ "$home" != {q(home)} ]; }}; then '
        f"echo {q(refused)} >&2; false; fi; fi"
    )


def system_user(layout: Layout) -> str:
    """The deployment's user and group, marked as the deploy's (``account_check``); an
    earlier kit's unmarked one gets the mark."""
    user, mark = layout.user, layout.account_comment
    return join(
        account_check(layout),
        f"if id -u {q(user)} >/dev/null 2>&1; then "
        f'[ "$(getent passwd {q(user)} | cut -d: -f5)" = {q(mark)} ] || '
        f"usermod --comment {q(mark)} {q(user)}; "
        f"else useradd --system --user-group --comment {q(mark)} --home-dir {q(layout.root)} "
        f"--no-create-home --shell /usr/sbin/nologin {q(user)}; fi",
    )


#: Logs may hold what clients sent: readable by root and the adm group only (Debian's way).
LOGS_OWNER = ("root", "adm", 0o750)


def logs_owner(nginx: bool) -> tuple[str, str, int]:
    """The logs folder's owner, group and mode. On an Nginx host its group is Nginx's user
    instead of adm: after a rotation (USR1) each Nginx worker reopens the logs by name, and
    in a folder closed to it, it cannot; it wrote on into the rotated file, whose lines the
    next rotation's compression then lost. Other users, the product's included, read none."""
    owner, group, mode = LOGS_OWNER
    return owner, NGINX_USER if nginx else group, mode


def make_release_dirs(paths: Paths, nginx: bool = False) -> str:
    """The deployment's folders and the release's; ``nginx``: the host runs Nginx, whose
    workers write into the logs folder (``logs_owner``)."""
    layout = paths.layout
    exists = q(f"release {paths.release_id} exists already")
    owner, group, mode = logs_owner(nginx)
    return join(
        f"install -d -m 0755 {q(layout.root)} {q(layout.releases)} {q(layout.shared)}",
        f"install -d -m {mode:04o} -o {owner} -g {group} {q(layout.logs)}",
        f"if [ -e {q(paths.dir)} ]; then echo {exists} >&2; false; fi",
        f"install -d -m 0755 {q(paths.dir)} {q(paths.config)}",
    )


#: Where an upload lands first: a private file of the SSH user's, which need not be root.
STAGE = "mktemp /tmp/apiphant-upload.XXXXXXXX"


def upload_install(staged: str, remote: str, mode: int, owner: str, group: str) -> str:
    """Copy a staged upload beside its target with its final mode and owner, then rename it
    over the target: atomic, and it replaces a symlink rather than writing through it."""
    directory, _, base = remote.rpartition("/")
    temp = f"{directory}/.{base}.upload"
    return join(
        f"install -m {mode:04o} -o {q(owner)} -g {q(group)} {q(staged)} {q(temp)}",
        f"rm -f {q(staged)}",
        f"mv -Tf {q(temp)} {q(remote)}",
    )


def unpack_upload(staged: str, directory: str, group: str = "root") -> str:
    """Unpack a staged archive into a release's folder as root: files root's, each with the
    mode it has in the archive; then the staged file goes. With a ``group``, the files that
    are not readable by all (a product's private files, ``artifacts.release_mode``) become
    that group's: the deployment's programs read them, no other user does."""
    private = (
        [f"find {q(directory)} -type f ! -perm -0004 -exec chgrp {q(group)} {{}} +"]
        if group != "root" else []
    )  # fmt: skip
    return join(
        f"tar -xzf {q(staged)} -C {q(directory)} --no-same-owner --no-overwrite-dir",
        *private,
        f"rm -f {q(staged)}",
    )


def virtualenv(paths: Paths, python: str, product: str, key: str, wheels: bool = True) -> str:
    """The release's virtualenv: the one an earlier release made for the same packages
    (``key``: a digest of the wheels and requirements), or a new one installed from the
    release's wheels; the release links to it. A build that died is started again. Without
    ``wheels`` (the host said it had the virtualenv, so none were sent) it must be there."""
    shared = paths.layout.venv(key)
    done = paths.layout.venv_done(key)
    gone = q(f"virtualenv {shared} is no longer on this host (the deploy sent no wheels, as "
             "the host had it when asked): deploy again")  # fmt: skip
    # Without ensurepip, which copies pip and setuptools in from the host's own wheels (about
    # 2.5 s of CPU a build, and 10 MB more to pack for other hosts): pip runs from its wheel
    # in the release (the python role asks for it) and installs itself with the rest.
    no_pip = q(f"no pip wheel in {paths.wheels}: the deploy puts one there")
    build = (
        f"rm -rf {q(shared)} && {q(python)} -m venv --without-pip {q(shared)} && "
        f"set -- {q(paths.wheels)}/pip-*.whl && "
        f"{{ [ -e \"$1\" ] || {{ echo {no_pip} >&2; false; }}; }} && "
        f"{q(shared + '/bin/python')} \"$1/pip\" install --quiet --disable-pip-version-check "
        f"-r {q(paths.requirements)} && touch {q(done)}"
        if wheels else f"echo {gone} >&2; false"
    )  # fmt: skip
    return _venv(paths, product, key, build)


def _venv(paths: Paths, product: str, key: str, make: str) -> str:
    """The shared virtualenv ``key`` if it is complete, else ``make`` it; the release links
    to it and its product code is compiled with it."""
    shared = paths.layout.venv(key)
    return join(
        f"install -d -m 0755 {q(paths.layout.venvs)}",
        f"if [ -e {q(paths.layout.venv_done(key))} ]; then echo 'virtualenv: same packages as an "
        f"earlier release, reused {shared}'; else {make}; fi",
        f"ln -sfn {q(shared)} {q(paths.venv)}",
        f"{q(paths.venv + '/bin/python')} -m compileall -q {q(paths.product(product))}",
    )


def pack_venv(paths: Paths, key: str) -> str:
    """The virtualenv just built, as one archive for the hosts of the same platform
    (``virtualenv_from_archive``): its paths are the same there (one layout), so it runs as
    built. Without ``.complete``, which only the receiving host writes, after it unpacked
    the whole. Readable by all, so a login user that is not root can download it: a
    virtualenv holds packages only, no secret."""
    archive = q(paths.venv_archive)
    return join(
        # tar runs zstd itself: a file it cannot read fails the step (a pipe's status is
        # zstd's), and no virtualenv with a hole is sent on.
        f"tar -C {q(paths.layout.venvs)} --exclude={q(key + '/' + VENV_DONE)} "
        f"--zstd -cf {archive} {q(key)}",
        f"chmod 0644 {archive}",
        f"echo \"virtualenv packed for the hosts of this platform: $(du -k {archive} | "
        "cut -f1) KiB\"",
    )


def virtualenv_from_archive(paths: Paths, product: str, key: str) -> str:
    """The release's virtualenv unpacked from the archive of the host of this platform that
    built it (``pack_venv``), instead of built again here: the same packages, byte for byte,
    for a fraction of a build's CPU. Marked complete only once all of it is unpacked; the
    archive goes either way."""
    shared = paths.layout.venv(key)
    archive = q(paths.venv_archive)
    unpack = (
        f"rm -rf {q(shared)} && tar --zstd -xf {archive} -C {q(paths.layout.venvs)} "
        f"--no-same-owner && touch {q(paths.layout.venv_done(key))} && echo 'virtualenv: "
        f"unpacked {shared} as built on another host of this platform'"
    )
    return f"{_venv(paths, product, key, unpack)}; status=$?; rm -f {archive}; exit $status"


def unless_live(paths: Paths, name: str, what: str, check: str) -> str:
    """``check`` on the rendered file ``name``, unless it is byte for byte the live release's:
    that one was checked before it went live, and a code-only deploy changes no config (a
    Python start of Supervisor's parser per host, the check's cost, is saved). Another
    deployment's file that broke since is not ours to check: a restart says so, and runs
    our programs with the config supervisord has."""
    new, live = f"{paths.config}/{name}", f"{paths.layout.current_config}/{name}"
    same = q(f"{what}: config the same as the live release's, checked before it went live")
    return f"if cmp -s {q(new)} {q(live)}; then echo {same}; else {check}; fi"


def check_supervisor(paths: Paths) -> str:
    """Parse Supervisor's config as it will be (the other programs plus this release's) with
    Supervisor's own parser, before anything live is touched."""
    check = paths.check
    conf = paths.config + "/supervisor.conf"
    ours = paths.layout.supervisor_include
    parse = (
        "import sys; from supervisor.options import ServerOptions; o = ServerOptions(); "
        "o.realize(['-c', sys.argv[1]]); "
        "print('supervisor: config parses,', len(o.process_group_configs), 'programs')"
    )
    return unless_live(paths, "supervisor.conf", "supervisor", join(
        f"mkdir -p {q(check)}",
        f"others=''; for f in {SUPERVISOR_INCLUDE}/*.conf; do "
        f'[ -e "$f" ] && [ "$f" != {q(ours)} ] && others="$others $f"; done; '
        f"printf '[supervisord]\\n[include]\\nfiles = %s%s\\n' "
        f'{q(conf)} "$others" > {q(check + "/supervisord.conf")}',
        f"{SUPERVISOR_PYTHON} -c {q(parse)} {q(check + '/supervisord.conf')}",
    ))  # fmt: skip


def check_nginx(
    paths: Paths, unlinked: Iterable[str], open_files: int, needs_certificate: str = ""
) -> str:
    """``nginx -t`` on the full config as it will be: this release's nginx.conf and site, and
    every other site but those the deploy unlinks. A lone site file cannot be tested: it
    relies on includes. Also that the host allows the open files the config asks for.

    ``needs_certificate``: the certificate the site's 443 server reads (tls = "acme"); until
    it exists, the site Nginx will serve first (nginx-http.conf) is checked instead."""
    check = paths.check + "/nginx"
    config = paths.config
    site = paths.layout.site
    own = q(config + "/nginx.conf")
    if needs_certificate:
        own = '"$own"'
        first = q(config + "/nginx-http.conf")
    skip = " ".join(q(f) for f in (site, *unlinked))
    too_many = q(f"nginx: worker_rlimit_nofile {open_files} is above this host's fs.nr_open ")
    choose = (
        [f"own={q(config + '/nginx.conf')}; [ -s {q(needs_certificate)} ] || own={first}"]
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
        f"{q(config + '/nginx-main.conf')} > {q(check + '/nginx.conf')}",
        f"nginx -t -q -c {q(check + '/nginx.conf')}",
        "echo 'nginx: full config with this release is ok'",
    )


def check_logrotate(paths: Paths) -> str:
    check = paths.check
    return unless_live(paths, "logrotate", "logrotate", join(
        f"mkdir -p {q(check)}",
        f"logrotate -d -s {q(check + '/logrotate.state')} {q(paths.config + '/logrotate')}"
        " 2>/dev/null",
        "echo 'logrotate: config parses'",
    ))  # fmt: skip


def logrotate(layout: Layout) -> str:
    """One logrotate run over the live release's config, with the deployment's own state
    file: what the rotation program (config/rotate) runs every ``[logs] check_every``."""
    config = f"{layout.current_config}/logrotate"
    return f"{LOGROTATE} -s {q(layout.logrotate_state)} {q(config)}"


def switch(paths: Paths) -> str:
    """Point ``current`` at a release: a new symlink renamed over the old one, atomic. A
    release that installs packages (an API or background host's) has its virtualenv."""
    current = paths.layout.current
    temp = current + ".new"
    return join(
        f"[ ! -e {q(paths.requirements)} ] || test -x {q(paths.venv + '/bin/apiphant')}",
        f"ln -sfn {q(paths.dir)} {q(temp)}",
        f"mv -Tf {q(temp)} {q(current)}",
        f'echo "current -> $(readlink {q(current)})"',
    )


def current_release(layout: Layout) -> str:
    return f'basename "$(readlink -f {q(layout.current)})" 2>/dev/null; true'


def link(targets: dict[str, str], unused: Iterable[str], current_config: str) -> str:
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
        parts.append(f"ln -sfn {q(current_config + '/' + name)} {q(temp)}")
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


def supervise(layout: Layout, *args: str) -> str:
    """The kit's Supervisor client (apiphant/deploy/supervise.py, uploaded to
    ``layout.supervise``) run by the host's system Python: one Python start of 0.04 s where
    each ``supervisorctl`` is 0.2 s of CPU."""
    script = [SUPERVISOR_PYTHON, layout.supervise, "-c", SUPERVISOR_CONF]
    return " ".join(q(a) for a in [*script, *args])


def supervisor_ready(layout: Layout) -> str:
    """Start supervisord when it is not running (the client's ping says 1); one that
    answers with an error (2: its config, its credentials) stops the step, said as it is.
    Programs are left untouched, and the config is not reread here: each program's restart
    applies its own change as it comes to it."""
    start = systemd_or("supervisor", f"supervisord -c {SUPERVISOR_CONF}")
    ping = supervise(layout, "ping")
    return (
        f"if {ping}; then echo 'supervisord runs'; elif [ $? = 1 ]; then "
        f"{start}; ok=; for i in $(seq 1 50); do {ping}; r=$?; "
        'if [ $r = 0 ]; then ok=1; break; elif [ $r = 2 ]; then break; fi; sleep 0.2; done; '
        "[ -n \"$ok\" ] || { echo 'supervisord did not start' >&2; false; }; "
        "echo 'supervisord started'; else false; fi"
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


def restart_worker(layout: Layout, program: str, address: str, release: str, log: str) -> str:
    """Apply this program's own config change; unless it runs (or is starting on) the
    release already, stop it (its drain waited for) and start it without waiting out
    ``startsecs`` (``supervisorctl start`` blocks for them, a second per batch); then poll
    /health on its port until it answers with the release id. A failure shows the
    program's status and log."""
    health = f"http://{address}/health"
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


def side_by_side(each: list[str]) -> str:
    """Commands at once, each in its own subshell; fails if any one fails."""
    if len(each) == 1:
        return each[0]
    started = "".join(f'( {command} ) & pids="$pids $!"; ' for command in each)
    return f"pids=; {started}rc=0; for p in $pids; do wait $p || rc=1; done; [ $rc = 0 ]"


def in_rotation(
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
    release from before it) gets a fixed wait of ``back_within`` instead."""
    pause = math.ceil(back_within)
    limit = back_within + slack
    # One record per request, "CODE@ADDRESSES;" without spaces: $upstream_addr lists every
    # worker tried ("a, b"), and the last one answered.
    probe = (
        f"curl -s --max-time 5 -H {q('Host: ' + host)} "
        f"-w '%{{http_code}}@%header{{{header.lower()}}};'" + f" -o /dev/null {q(url)}" * rounds
    )
    old = q(f"no rotation check in this release's Nginx config: waiting {pause}s")
    back = q(f"{address} is in rotation")
    lost = q(f"Nginx sends no request to {address}: not back in rotation after {limit:g}s")
    return (
        f"( set -f; ok=; end=$(($(date +%s) + {int(limit) + 1})); "
        f"for i in $(seq 1 {int(limit / 0.02)}); do "
        f"got=$({probe} | tr -d ' ' | tr ';' ' '); old=; hit=; "
        'for r in $got; do code=${r%%@*}; by=${r#*@}; by=${by##*,}; '
        'if [ "$code" = 404 ] && [ -z "$by" ]; then old=1; '
        f'elif [ "$code" = 200 ] && [ "$by" = {q(address)} ]; then hit=1; fi; done; '
        f'if [ -n "$old" ]; then echo {old}; sleep {pause}; ok=1; break; '
        'elif [ -n "$hit" ]; then ok=1; break; '
        'elif [ "$(date +%s)" -ge "$end" ]; then break; fi; sleep 0.02; done; '
        f'if [ -n "$ok" ]; then echo {back}; else echo {lost} >&2; false; fi )'
    )


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
    return f"if [ -x {SUPERVISOR_PYTHON} ]; then {sync}; fi; true"


def in_release(release_dir: str, user: str, command: str, env: dict[str, str] | None = None) -> str:
    """``command`` (a shell line) as the product user, in a release's virtualenv with the
    product's environment and secrets: the release phase, ``fab run``, the smoke test."""
    extra = "".join(f"{k}={q(v)} " for k, v in (env or {}).items())
    return (
        f"cd {q(release_dir)} && runuser -u {q(user)} -- {'env ' + extra if extra else ''}"
        f"{q(release_dir + '/config/run')} sh -c {q(command)}"
    )


def smoke_test(paths: Paths, product: str, url: str) -> str:
    """The product's test.py against ``url`` (through Nginx), in the release's virtualenv."""
    return in_release(
        paths.dir, paths.layout.user, f"python {q(product + '/test.py')}", {"APIPHANT_URL": url}
    )


def mark_good(paths: Paths) -> str:
    return f"touch {q(paths.good)}"


def _release_ids(layout: Layout, newest_first: bool = True) -> str:
    order = " | sort -r" if newest_first else ""
    return f"ls -1 {q(layout.releases)} 2>/dev/null | grep -E {q(RELEASE_ID_SHELL)}{order}"


def cleanup(layout: Layout, keep: int) -> str:
    """Keep the newest ``keep`` good releases and current; failed ones never count, and go.
    So do the virtualenvs no kept release links to, and the secrets an earlier kit shared
    between releases (``Layout.shared_secrets``) once no kept release's run script reads
    them: a secret lives as long as a release that was deployed with it."""
    rel = q(layout.releases)
    shared = q(layout.shared_secrets)
    gone = q(f"removing {layout.shared_secrets}: no kept release reads it")
    return (
        f'current=$(basename "$(readlink -f {q(layout.current)})") && '
        f"kept=$(for r in $({_release_ids(layout)}); do "
        f"[ -e {rel}/\"$r\"/.good ] && echo \"$r\"; done | head -n {int(keep)} | tr '\\n' ' ') && "
        f"for r in $({_release_ids(layout, newest_first=False)}); do "
        'case " $kept $current " in *" $r "*) ;; '
        f'*) echo "removing release $r"; rm -rf -- {rel}/"$r" ;; esac; done; '
        'echo "kept: $kept"; '
        # Then the virtualenvs no kept release links to.
        f"used=$(for r in {rel}/*/venv; do readlink -f \"$r\"; done); "
        f"for v in {q(layout.venvs)}/*; do [ -d \"$v\" ] || continue; "
        'case " $(echo $used) " in *" $v "*) ;; '
        '*) echo "removing virtualenv $(basename "$v")"; rm -rf -- "$v" ;; esac; done; '
        f"if [ -e {shared} ] && ! grep -qsF {shared} {rel}/*/config/run; then "
        f"rm -f {shared} && echo {gone}; fi; true"
    )


def releases(layout: Layout) -> str:
    """One line per release, newest first: ``ID good|failed [current]``."""
    return (
        f'current=$(basename "$(readlink -f {q(layout.current)})" 2>/dev/null); '
        f"for r in $({_release_ids(layout)}); "
        f'do s=failed; [ -e {q(layout.releases)}/"$r"/.good ] && s=good; '
        'c=; [ "$r" = "$current" ] && c=current; echo "$r $s $c"; done; true'
    )


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


def maintenance(layout: Layout, on: bool) -> str:
    """Turn maintenance on (Nginx answers a JSON 503 to the public) or off; no reload: Nginx
    checks the file on each request. It lives in shared/, so it outlasts deploys."""
    if on:
        return (
            f"install -m 0644 /dev/null {q(layout.maintenance)} && "
            "echo 'maintenance: on (every public request gets 503)'"
        )
    return f"rm -f {q(layout.maintenance)} && echo 'maintenance: off'"


def record(layout: Layout, line: str) -> str:
    """Append one line to the host's audit log (the deploy's history); never rewritten.

    Root's and the deployment's group's only (0640, made so before its first line, and set
    again on every record, which mends a file an older kit made world-readable): the
    history says who did what when, not for every account on the host. Until the
    deployment's user exists (a first deploy that failed early), the file stays root's."""
    history, group = q(layout.history), q(layout.user)
    return (
        f"install -d -m 0755 {q(layout.root)} && "
        f"{{ [ -e {history} ] || install -m 0640 /dev/null {history}; }} && "
        f"chmod 0640 {history} && "
        f"{{ ! getent group {group} >/dev/null || chgrp {group} {history}; }} && "
        f"printf '%s\\n' {q(line)} >> {history}"
    )


def history(layout: Layout, lines: int) -> str:
    return (
        f"if [ -f {q(layout.history)} ]; then tail -n {int(lines)} {q(layout.history)}; "
        "else echo 'no history yet'; fi"
    )


# HTTPS (tls = "acme" | "files")

#: Seconds between two ``certbot renew`` runs of the renewal program: twice a day, as
#: certbot's own timer; a certificate is renewed once it has less than 30 days left.
RENEW_EVERY = 12 * 3600


def private_dir(path: str) -> str:
    return f"install -d -m 0700 {q(path)}"


def tls_dirs(layout: Layout) -> str:
    """certbot's folders, root's only; the challenge webroot, readable by Nginx's workers."""
    owner, group, mode = LOGS_OWNER
    return join(
        f"install -d -m 0700 {q(layout.tls)} {q(layout.letsencrypt)} {q(layout.certbot_work)}",
        f"install -d -m {mode:04o} -o {owner} -g {group} {q(layout.certbot_logs)}",
        f"install -d -m 0755 {q(layout.acme_webroot)}",
    )


def _certbot(layout: Layout, tls: Tls) -> str:
    """certbot with the deployment's own folders (and a private ACME CA's bundle)."""
    env = f"REQUESTS_CA_BUNDLE={q(tls.acme_ca_bundle)} " if tls.acme_ca_bundle else ""
    return (
        f"{env}{CERTBOT} --non-interactive --config-dir {q(layout.letsencrypt)} "
        f"--work-dir {q(layout.certbot_work)} --logs-dir {q(layout.certbot_logs)}"
    )


def certbot_certonly(layout: Layout, tls: Tls) -> str:
    """Obtain (or keep, when it covers the domains and is not due) the certificate, by HTTP-01
    from the webroot Nginx serves on port 80."""
    domains = " ".join(f"-d {q(d)}" for d in tls.domains)
    return (
        f"{_certbot(layout, tls)} certonly --agree-tos --email {q(tls.acme_email)} "
        f"--no-eff-email --server {q(tls.acme_server)} --cert-name {q(layout.cert_name)} "
        f"--webroot -w {q(layout.acme_webroot)} {domains} --keep-until-expiring"
    )


def nginx_test_reload() -> str:
    """A new certificate goes live only through a config Nginx accepts."""
    return f"nginx -t -q && {nginx_reload()}"


def certbot_renew(layout: Layout, tls: Tls) -> str:
    """Renew what is due (or more, with arguments such as --force-renewal appended); Nginx
    reloads once a certificate changed. No random sleep: the program's schedule is its own."""
    return (
        f"{_certbot(layout, tls)} renew --cert-name {q(layout.cert_name)} "
        f"--no-random-sleep-on-renew --deploy-hook {q(nginx_test_reload())}"
    )


def _reason(output: str, log: str) -> str:
    """certbot's reason for a failure in one line (its Detail:, else its last word), and its
    log."""
    return (
        f'reason=$(printf "%s\\n" "${output}" | sed -n "s/^ *Detail: *//p" | head -n 1); '
        f'[ -n "$reason" ] || reason=$(printf "%s\\n" "${output}" | grep -v -e "^Ask for help" '
        '-e "^Saving debug log" -e "^ *$" | tail -n 1); '
        f'echo "certbot: $reason (log: {log})" >&2'
    )


def obtain_certificate(
    layout: Layout, tls: Tls, http_links: dict[str, str], unused: Iterable[str],
    nginx_files: Iterable[str],
) -> str:  # fmt: skip
    """The first deploy's chicken and egg: with no certificate yet, Nginx first serves port 80
    alone (the API over HTTP, as before, and the challenge), then certbot gets one. Later
    deploys only make certbot add new domains; renewal is the renewal program's."""
    first = join(
        "echo 'no certificate yet: Nginx serves the ACME challenge on port 80 first'",
        link(http_links, unused, layout.current_config),
        "nginx -t -q",
        nginx_ready(nginx_files, layout.nginx_loaded),
    )
    return join(
        tls_dirs(layout),
        f"if [ ! -s {q(layout.acme_fullchain)} ]; then {first}; fi",
        f"out=$({certbot_certonly(layout, tls)} 2>&1); rc=$?; "
        'printf "%s\\n" "$out" | grep -v "^ *$" | tail -n 3; '
        f'if [ "$rc" -ne 0 ]; then {_reason("out", layout.certbot_log)}; false; fi',
    )


def nginx_check_live() -> str:
    """``nginx -t`` on the live config: the 443 server and its certificate, before a reload."""
    return "nginx -t -q && echo 'nginx: config with its certificate is ok'"


def https_check(tls: Tls, domain: str, cafile: str, release: str) -> str:
    """/health over HTTPS from the host itself, by the certificate's name: the chain must
    verify against the CA that issued it (``cafile``; the system's CAs when it is empty),
    and the release must answer. Workers name their release to the deployment alone: a
    front they do not trust as a proxy (a front without ``private_address``) gets
    ``{"status": "ok"}`` from them, which passes too; another release never does."""
    url = f"https://{domain}{tls.port_suffix}/health"
    resolve = f"{domain}:{tls.listen_port}:{tls.local_address}"
    needle = f'"release": "{release}"'
    # From loopback, even to a listener on a public address: the workers name their release
    # to the deployment alone, and Nginx tells them who asks (X-Forwarded-For).
    source = "::1" if ":" in tls.local_address else "127.0.0.1"
    curl = f"curl -fsS --max-time 5 --interface {source} --resolve {q(resolve)}"
    fetch = f"answer=$({curl} {q(url)})"
    if cafile:
        fetch = (f"if [ -s {q(cafile)} ]; then answer=$({curl} --cacert {q(cafile)} {q(url)}); "
                 f"else {fetch}; fi")  # fmt: skip
    ok = '"status": "ok"'
    return (
        f'{fetch} && case "$answer" in '
        f"*{q(needle)}*) echo {q(f'https: {url} verified, answers release {release}')};; "
        f"*'\"release\"'*) echo {q(f'https: {url} answers another release than {release}')}"
        " >&2; false;; "
        f"*{q(ok)}*) echo {q(f'https: {url} verified, answers ok')};; "
        f"*) echo {q(f'https: {url} answers no status')} >&2; false;; esac"
    )


def certificates(paths: Iterable[tuple[str, str]]) -> str:
    """One line per certificate: its name and when it expires (``fab status``)."""
    parts = []
    for name, cert in paths:
        parts.append(
            f"if [ -s {q(cert)} ]; then printf '  %s: expires %s\\n' {q(name)} "
            f"\"$(openssl x509 -noout -enddate -in {q(cert)} | sed 's/^notAfter=//')\"; "
            f"else printf '  %s: none yet\\n' {q(name)}; fi"
        )
    return "echo 'certificates:'; " + "; ".join(parts) if parts else "true"
