"""The deployment's PostgreSQL on its host (the postgres role): its password made once, the
cluster made once and kept up to date, its state for ``fab status``.

No command here holds the password: it is made on the host under the deploy lock
(``make_password``), read by the deploy into memory (``password``) and written only into
releases' secrets files (secret uploads); on the host the shell reads it from its file into
a variable that only ``printf`` (a shell builtin, so no process's arguments) passes to
psql's standard input.
"""

from shlex import quote as q

from apiphant.deploy.host import backups
from apiphant.deploy.host.agents import supervise
from apiphant.deploy.host.shell import join
from apiphant.deploy.layout import POSTGRES_BIN, POSTGRES_USER, Layout, Paths

#: The password's bytes of randomness (written as hex: 48 characters, nothing to quote in
#: a URL or in SQL).
PASSWORD_BYTES = 24
#: The rendered files of the postgres role, and where each is copied (``Layout``'s).
FILES = ("postgresql.conf", "pg_hba.conf", "postgres-program.conf")
#: How long the database may take to answer after a start (tries of half a second).
READY_TRIES = 120


def password(layout: Layout) -> str:
    """Print the product role's password if the database host has it, nothing if not: a
    question, asked before the deploy lock, that changes nothing (``make_password`` makes
    it, under the lock). The deploy reads the answer into memory and never shows it."""
    pw = q(layout.db_password)
    return f"if [ -s {pw} ]; then cat {pw}; fi"


def make_password(layout: Layout) -> str:
    """Make the product role's password on the database host unless it is there (root's,
    0600), printing nothing: a step of the locked prepare phase. Should two deploys ever
    race past the lock, the one that came first is kept (``mv -n``)."""
    pw, new = q(layout.db_password), q(layout.db_password + ".new")
    return join(
        f"install -d -m 0755 {q(layout.db_root)}",
        f"{{ [ -s {pw} ] || {{ umask 077 && head -c {PASSWORD_BYTES} /dev/urandom | od -An -tx1 "
        f"| tr -d ' \\n' > {new} && mv -n {new} {pw}; rm -f {new}; }}; }}",
        f"chmod 0600 {pw}",
    )


def parse_password(answer: str) -> str:
    """``password``'s answer: the password alone (hex), or "" for anything else."""
    found = answer.strip()
    return found if found and all(c in "0123456789abcdef" for c in found) else ""


def _bin(layout: Layout) -> str:
    """The binaries of the version that made the cluster, in shell."""
    return f'{POSTGRES_BIN}/"$(cat {q(layout.db_data + "/PG_VERSION")})"/bin'


def _psql(layout: Layout, port: int | None, *args: str) -> str:
    """psql as the superuser, through the socket, on ``port`` (None: the running server's,
    in the shell variable ``$port``)."""
    shown = '"$port"' if port is None else str(int(port))
    return (f"runuser -u {POSTGRES_USER} -- {_bin(layout)}/psql -h {q(layout.db_socket)} "
            f"-p {shown} -d postgres -X -v ON_ERROR_STOP=1 -v VERBOSITY=terse -qAt "
            + " ".join(q(a) for a in args)).rstrip()  # fmt: skip


def _ident(name: str) -> str:
    """An SQL identifier in double quotes (the deployment's name may hold a hyphen)."""
    return '"' + name.replace('"', '""') + '"'


def _literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def make_cluster(layout: Layout) -> str:
    """The cluster's folders, and the cluster itself by initdb when its folder is empty,
    never otherwise: a folder that holds anything but a cluster is refused, untouched."""
    data, marker = q(layout.db_data), q(layout.db_data + "/PG_VERSION")
    refused = q(f"{layout.db_data} is not empty and holds no cluster: left as it is")
    initdb = (
        f"bin=$(ls -d {POSTGRES_BIN}/*/bin | sort -V | tail -n 1) && "
        f'runuser -u {POSTGRES_USER} -- "$bin/initdb" -D {data} --auth-local=peer '
        "--auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 "
        f"--username={POSTGRES_USER} >/dev/null && "
        f'echo "postgres: cluster made in {layout.db_data} by $bin/initdb"'
    )
    return join(
        f"cd {q(layout.db_root)}",
        f"install -d -m 0700 -o {POSTGRES_USER} -g {POSTGRES_USER} {data}",
        f"install -d -m 0755 -o {POSTGRES_USER} -g {POSTGRES_USER} {q(layout.db_socket)}",
        f"if [ -s {marker} ]; then echo \"postgres: cluster in {layout.db_data} "
        f'(PostgreSQL $(cat {marker}))"; '
        f'elif [ -z "$(ls -A {data})" ]; then {initdb}; '
        f"else echo {refused} >&2; false; fi",
    )


def install_configs(layout: Layout, paths: Paths) -> str:
    """The release's rendered configs and Supervisor program copied to the database's own
    folder (root's, 0644: no secret in them), the program linked into Supervisor's."""
    targets = (layout.db_conf, layout.db_hba, layout.db_program_conf)
    return join(
        *(f"install -m 0644 {q(paths.file(name))} {q(target)}"
          for name, target in zip(FILES, targets, strict=True)),
        backups.install_script(layout, paths),
        f"ln -sfn {q(layout.db_program_conf)} {q(layout.db_supervisor_include)}",
    )  # fmt: skip


def _wait(layout: Layout, port: int | None) -> str:
    """Until the server answers, bounded: on ``port``, or (None) on the one the running
    postmaster wrote in its pid file (a changed port is not in effect before a restart)."""
    program = layout.database_program
    found = (f"port=$(sed -n 4p {q(layout.db_data + '/postmaster.pid')} 2>/dev/null) && "
             '[ -n "$port" ] && ' if port is None else "")  # fmt: skip
    return (
        f"{{ n=0; until {found}{_psql(layout, port, '-c', 'SELECT 1')} >/dev/null 2>&1; do "
        f"n=$((n+1)); if [ $n -ge {READY_TRIES} ]; then echo 'postgres: {program} does not "
        f"answer on {layout.db_socket}' >&2; tail -n 20 {q(layout.log(program))} >&2; exit 1; "
        "fi; sleep 0.5; done; }"
    )


def changed_settings(wanted: dict[str, str]) -> str:
    """SQL: the names of ``wanted``'s settings whose running value differs, comma-separated
    (nothing when none does). Compared as SHOW writes them, which is how the rendered
    postgresql.conf spells these."""
    rows = ", ".join(f"({_literal(k)}, {_literal(v)})" for k, v in wanted.items())
    return (f"SELECT string_agg(name, ', ' ORDER BY name) FROM (VALUES {rows}) AS wanted(name, "
            "value) WHERE current_setting(name) <> value")  # fmt: skip


def run_cluster(layout: Layout, port: int, restart_only: dict[str, str] | None = None) -> str:
    """supervisord started if it is not; the database's program added, or restarted when its
    program changed; then waited for, bounded, and told to read its configs again. The
    settings that take effect only on a restart (``restart_only``: their rendered values)
    are compared with the running server's: when one differs, the program restarts (SIGINT,
    a fast shutdown: open transactions roll back, the workers' pools reconnect) and the
    deploy says so in one line; when none does, the database is not restarted."""
    program = layout.database_program
    restart = (
        f'echo "postgres: restarting {program}: $changed changed, which takes a restart '
        "(the programs' connections are cut and their pools reconnect)\"; "
        f"supervisorctl restart {q(program)} >/dev/null && {_wait(layout, port)}; "
    )
    compare = (
        f"changed=$({_psql(layout, None, '-c', changed_settings(restart_only or {}))}) && "
        f'if [ -n "$changed" ]; then {restart}'
        f"else echo 'postgres: {program} answers, its configs read again'; fi"
        if restart_only else f"echo 'postgres: {program} answers, its configs read again'"
    )
    return join(
        supervise(layout, "ready", "--service", "supervisor"),
        supervise(layout, "sync", f"^{program}$", program),
        _wait(layout, None),
        _psql(layout, None, "-c", "SELECT pg_reload_conf()") + " >/dev/null",
        compare,
    )


def database_and_role(layout: Layout, port: int) -> str:
    """The product's login role and its database, each made once; the role's password set
    from its file each time (the same one, unless someone changed it by hand). Never DROP,
    never anything to the data. The statement that holds the password is kept out of the
    server's log should it fail (``log_min_error_statement``), and psql's terse errors
    quote no statement."""
    name = layout.db_name
    role = (f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(name)}) "
            f"THEN CREATE ROLE {_ident(name)} LOGIN; END IF; END $$;")  # fmt: skip
    set_password = f"ALTER ROLE {_ident(name)} WITH LOGIN PASSWORD '%s';\\n"
    exists = _psql(layout, port, "-c",
                   f"SELECT 1 FROM pg_database WHERE datname = {_literal(name)}")  # fmt: skip
    createdb = (f"runuser -u {POSTGRES_USER} -- {_bin(layout)}/createdb -h {q(layout.db_socket)} "
                f"-p {int(port)} -O {q(name)} {q(name)}")  # fmt: skip
    return join(
        f'pw=$(cat {q(layout.db_password)}) && [ -n "$pw" ]',
        f"{{ printf '%s\\n' {q('SET log_min_error_statement = panic;')} {q(role)}; "
        f'printf {q(set_password)} "$pw"; }} | {_psql(layout, port)}',
        "unset pw",
        f'if [ "$({exists})" = 1 ]; then echo "postgres: database {name} and its role"; '
        f'else {createdb} && echo "postgres: database {name} made, owned by its role"; fi',
    )


def status(layout: Layout, port: int) -> str:
    """The database's program and the size of its data, for ``fab status``."""
    program = layout.database_program
    return (
        "echo 'database:'; if supervisorctl pid >/dev/null 2>&1; then "
        f"supervisorctl status {q(program)} | sed 's/^/  /'; "
        "else echo '  supervisord is not running'; fi; "
        f"printf '  data: %s\\n' \"$(du -sh {q(layout.db_data)} 2>/dev/null | cut -f1)\"; "
        f"printf '  port: %s\\n' {int(port)}"
    )


def restore(layout: Layout, port: int, name: str) -> str:
    """``fab db restore NAME``: the backup's checksum checked, then pg_restore --clean
    --if-exists into the product's database in one transaction: a restore that fails part
    way changes nothing. As the postgres user, by the socket; objects keep their owners."""
    folder, dump = q(layout.db_backups), q(f"{layout.db_backups}/{name}")
    restore_cmd = (f"runuser -u {POSTGRES_USER} -- {_bin(layout)}/pg_restore -h "
                   f"{q(layout.db_socket)} -p {int(port)} -d {q(layout.db_name)} --clean "
                   "--if-exists --single-transaction --exit-on-error --no-password")  # fmt: skip
    return join(
        f"[ -f {dump} ] || {{ echo {q(f'no backup {name} in {layout.db_backups}')} >&2; exit 1; }}",
        f"cd {folder} && sha256sum --quiet -c {q(name + '.sha256')}",
        "cd /",
        f"{restore_cmd} < {dump}",
        f"echo {q(f'restored {name} into database {layout.db_name}')}",
    )


def psql(layout: Layout, port: int) -> str:
    """``fab db psql``: psql on the product's database, by the socket as the postgres user
    (peer: no password anywhere), in the product's role (``PGOPTIONS``), so what it makes is
    the product's."""
    role = q(f"-c role={layout.db_name}")
    return (f"cd / && exec runuser -u {POSTGRES_USER} -- env PGOPTIONS={role} "
            f"{_bin(layout)}/psql -h {q(layout.db_socket)} -p {int(port)} "
            f"-d {q(layout.db_name)}")  # fmt: skip
