"""The database's backups (the postgres role): the script that takes them, its copies on
another host, and what ``fab db`` and ``fab status`` read of them.

Where they are: the postgres host keeps them in ``Layout.db_backups`` (root's, 0700), each a
``pg_dump -Fc`` file ``P-YYYYMMDDTHHMMSSZ.dump`` beside its ``.sha256`` (sha256sum's format).
The copies: the postgres host pushes each new one over SSH to one other host (``Config.
backup_copy_host``), with a key of its own, made there once (root's, 0600). On the receiving
host that key is the only one of an account made for it (``Layout.backup_program``, no
password, its home root's), restricted in authorized_keys: ``restrict`` (no pty, no
forwarding), ``from=`` the postgres host's private address, and ``command=`` the receive
script, which stores a dump of the expected name whose checksum matches into the copies'
folder and refuses anything else. So the database host holds no key that opens a shell
anywhere, and the loop runs without the deployer. Pushing, not pulling: a pull would need the
receiving host to hold a key into the database host, where the data is.
"""

import base64
import re
import struct
from shlex import quote as q

from apiphant.deploy.host.agents import supervise
from apiphant.deploy.host.shell import join
from apiphant.deploy.layout import Layout, Paths

#: The backup script's rendered file (the postgres role), copied to ``Layout.db_backup_script``.
SCRIPT = "backup"
#: Its Supervisor program's, copied to ``Layout.db_backup_program_conf``.
PROGRAM = "backup-program.conf"
#: The receiving host's key the postgres host trusts for it (``host_key``).
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"


def name_pattern(layout: Layout) -> str:
    """A backup's file name, as an extended regex (grep -E, and Python's ``re``)."""
    return f"{layout.db_name}-[0-9]{{8}}T[0-9]{{6}}Z[.]dump"


def install_script(layout: Layout, paths: Paths) -> str:
    """The release's backup script to the database's folder, root's, 0755: by a rename, so
    the loop that runs the one before reads on from its own (a shell reads as it goes); and
    its program (linked into Supervisor's by ``run_loop``)."""
    target = layout.db_backup_script
    return (f"install -m 0755 {q(paths.file(SCRIPT))} {q(target + '.new')} && "
            f"mv -f {q(target + '.new')} {q(target)} && "
            f"install -m 0644 {q(paths.file(PROGRAM))} {q(layout.db_backup_program_conf)}")


def run_loop(layout: Layout) -> str:
    """The backup loop's program added, or restarted when it changed: after the database,
    its role and the copies' known host, so its first backup finds them."""
    program = layout.backup_program
    return join(f"ln -sfn {q(layout.db_backup_program_conf)} {q(layout.backup_include)}",
                supervise(layout, "sync", f"^{program}$", program))  # fmt: skip


def backup_now(layout: Layout) -> str:
    """One backup now (``fab db backup``): the script prints its name and size."""
    script = q(layout.db_backup_script)
    return (f"if [ ! -x {script} ]; then echo 'no backup script on this host: deploy first' "
            f">&2; exit 1; fi; {script}")  # fmt: skip


def _listing(layout: Layout, newest_only: bool) -> str:
    """Each backup in the folder: name, size in bytes and a readable age, oldest first."""
    folder = q(layout.db_backups)
    pick = "| tail -n 1" if newest_only else ""
    age = ('awk -v n="$now" \'{a=n-$3; u="s"; if (a>=172800) {a=int(a/86400); u="d"} '
           'else if (a>=7200) {a=int(a/3600); u="h"} else if (a>=120) {a=int(a/60); u="m"}; '
           'printf "  %s  %s bytes  %s%s old\\n", $1, $2, a, u}\'')  # fmt: skip
    return (
        f"now=$(date +%s); ls -1 {folder} 2>/dev/null | grep -Ex {q(name_pattern(layout))} "
        f"| sort {pick} | while read -r f; do "
        f'printf "%s %s\\n" "$f" "$(stat -c "%s %Y" {folder}/"$f")"; done | {age}'
    )


def list_backups(layout: Layout) -> str:
    """``fab db backups`` on one host: its backups (or copies), or that it holds none."""
    folder = q(layout.db_backups)
    return (f"if [ -d {folder} ]; then echo {q(f'backups in {layout.db_backups}:')}; "
            f"{_listing(layout, False)}; else echo 'backups: none on this host'; fi")  # fmt: skip


def has_backup(layout: Layout, name: str) -> str:
    """Whether this host holds backup ``name`` (``fab db restore`` asks the postgres host,
    then the copies' host): prints "present", or nothing."""
    return f"if [ -f {q(f'{layout.db_backups}/{name}')} ]; then echo present; fi"


def hand_out(layout: Layout, name: str, login: str) -> str:
    """On the copies' host: backup ``name`` and its checksum where the SSH user ``login``
    (who may not be root) can fetch them: its own files (0600) in a folder of its own
    (0700) in the database's root-owned one, never readable by another user."""
    out, folder = q(layout.db_outgoing), q(layout.db_backups)
    files = " ".join(f"{folder}/{q(n)}" for n in (name, name + ".sha256"))
    return join(
        f"rm -rf {out}",
        f"install -d -m 0700 -o {q(login)} {out}",
        f"install -m 0600 -o {q(login)} {files} {out}/",
    )


def hand_out_done(layout: Layout) -> str:
    """The fetched copy removed from where ``hand_out`` put it."""
    return f"rm -rf {q(layout.db_outgoing)}"


def parse_checksum(text: str, name: str) -> str:
    """The sha256 a ``.sha256`` file (sha256sum's format) gives for ``name``, or ""."""
    words = text.split()
    ok = len(words) == 2 and words[1] == name and re.fullmatch("[0-9a-f]{64}", words[0])
    return words[0] if ok else ""


def last_backup(layout: Layout) -> str:
    """``fab status``'s line on the postgres host: the newest backup's age and size."""
    newest = _listing(layout, True)
    return (f'last=$({newest}); if [ -n "$last" ]; then echo "  last backup:$last" '
            "| sed 's/:  */: /'; else echo '  last backup: none'; fi")  # fmt: skip


def push_key(layout: Layout) -> str:
    """The postgres host's public key for pushing copies, if it has one; nothing if not: a
    question only (asked before the deploy lock), the key is made by ``make_push_key``."""
    key = q(layout.db_backup_key)
    return f"if [ -s {key} ]; then cat {key}.pub; fi"


def make_push_key(layout: Layout) -> str:
    """The key made once on the postgres host (root's, 0600), under the deploy lock; prints
    nothing: ``push_key`` reads its public half for the receiving account."""
    key = q(layout.db_backup_key)
    comment = q(f"{layout.backup_program}@{layout.name}")
    return (f"install -d -m 0755 {q(layout.db_root)} && "
            f"{{ [ -s {key} ] || ssh-keygen -q -t ed25519 -N '' -C {comment} -f {key}; }}")


def host_key() -> str:
    """The receiving host's SSH host key, for the postgres host's known_hosts."""
    return f"cat {HOST_KEY}"


def parse_key(answer: str) -> str:
    """One public key line (``ssh-ed25519 AAAA... comment``) without its comment, or "" for
    anything else: its type a plain word, and its base64 blob the key of that type (it
    begins with the type's name), so an error message is never taken for a key."""
    lines = [line.strip() for line in answer.splitlines() if line.strip()]
    words = lines[0].split() if len(lines) == 1 else []
    if len(words) < 2 or not re.fullmatch(r"[a-z][a-z0-9@.-]*", words[0]):
        return ""
    try:
        blob = base64.b64decode(words[1], validate=True)
    except ValueError:
        return ""
    kind = words[0].encode()
    named = blob[: 4 + len(kind)] == struct.pack(">I", len(kind)) + kind
    return " ".join(words[:2]) if named else ""


def known_host(layout: Layout, address: str, port: int, key: str) -> str:
    """On the postgres host: the receiving host's key, the only one its pushes accept."""
    where = address if port == 22 else f"[{address}]:{port}"
    return (f"umask 077 && printf '%s %s\\n' {q(where)} {q(key)} > {q(layout.db_known_hosts)}"
            f" && echo {q(f'backups: copies go to {address}')}")  # fmt: skip


def no_copies(layout: Layout) -> str:
    """On the postgres host of a deployment with no other host: no known host, no copy."""
    return f"rm -f {q(layout.db_known_hosts)} && echo 'backups: no other host to copy them to'"


def receive_script(layout: Layout, keep: int) -> str:
    """The forced command of the receiving account's one key: ``put NAME SHA256`` with the
    dump on stdin; stored under a temporary name, checked, renamed, the oldest beyond
    ``keep`` removed. Anything else is refused."""
    folder = q(layout.db_backups)
    return f"""#!/bin/sh
# {layout.name}'s database backups, received from its postgres host: rendered by apiphant's
# deploy kit. The only command the key in {layout.db_receiver_keys} runs.
set -uf
refuse() {{ echo "refused: this key only stores {layout.name}'s backups" >&2; exit 1; }}
set -- ${{SSH_ORIGINAL_COMMAND:-}}
[ "$#" = 3 ] && [ "$1" = put ] || refuse
printf '%s\\n' "$2" | grep -Eqx {q(name_pattern(layout))} || refuse
printf '%s\\n' "$3" | grep -Eqx '[0-9a-f]{{64}}' || refuse
umask 077
tmp={folder}/".$2.tmp"
cat > "$tmp" || {{ rm -f "$tmp"; exit 1; }}
[ "$(sha256sum "$tmp" | cut -d' ' -f1)" = "$3" ] || {{ rm -f "$tmp"; echo "$2: checksum differs: not kept" >&2; exit 1; }}
printf '%s  %s\\n' "$3" "$2" > "$tmp.sha256" && mv -f "$tmp.sha256" {folder}/"$2.sha256" && mv -f "$tmp" {folder}/"$2" || exit 1
ls -1 {folder} | grep -Ex {q(name_pattern(layout))} | sort | head -n -{int(keep)} | while read -r old; do rm -f {folder}/"$old" {folder}/"$old.sha256"; done
echo "stored $2"
"""  # noqa: E501


def receiver(layout: Layout, keep: int, source: str) -> str:
    """On the host that holds the copies: the receiving account (no password: ``*``, not
    locked, which sshd without PAM would refuse; its home root's, so it cannot change its
    own authorized_keys), its folder (its own, 0700) and the receive script. Its one key
    comes next, as an upload (``receiver_key``): the postgres host may make it only under
    the same deploy's lock."""
    user, home = layout.backup_program, layout.db_receiver_home
    script = layout.db_receive_script
    mark = q(layout.account_comment + " backups")
    return join(
        f"install -d -m 0755 {q(layout.db_root)} {q(home)} {q(home + '/.ssh')}",
        f"if id -u {q(user)} >/dev/null 2>&1; then "
        f"[ \"$(getent passwd {q(user)} | cut -d: -f5)\" = {mark} ] || {{ echo "
        f"{q(f'user {user} exists and the deploy did not make it: no backup copies here')} "
        f">&2; exit 1; }}; else useradd --system --user-group --comment {mark} "
        f"--home-dir {q(home)} --no-create-home --shell /bin/sh --password '*' {q(user)}; fi",
        f"install -d -m 0700 -o {q(user)} -g {q(user)} {q(layout.db_backups)}",
        f"printf '%s' {q(receive_script(layout, keep))} > {q(script + '.new')}",
        f"chmod 0755 {q(script + '.new')} && mv -f {q(script + '.new')} {q(script)}",
        f"echo {q(f'backups: copies from {source} kept here by {user}')}",
    )


def no_receiver(layout: Layout) -> str:
    """On a host of the deployment that does not keep the copies (or no longer: deploy.toml
    changed which host does): the receiving account the kit made here removed, its key
    first, so the postgres host's key opens nothing here any more; the copies it kept stay,
    root's. Nothing when the kit made no such account here."""
    user, home = q(layout.backup_program), q(layout.db_receiver_home)
    mark = q(layout.account_comment + " backups")
    folder = q(layout.db_backups)
    said = (f"backups: {layout.backup_program} removed: this host keeps no copies any more "
            f"(those it kept stay, root's, in {layout.db_backups})")  # fmt: skip
    remove = join(
        f"rm -f {q(layout.db_receiver_keys)} {q(layout.db_receive_script)}",
        f"{{ pkill -u {user} || true; }}",  # a copy on its way in: its temporary file stays
        f"{{ [ ! -d {folder} ] || chown -R root:root {folder}; }}",
        f"userdel -f {user}",
        f"{{ rmdir {home}/.ssh {home} 2>/dev/null || true; }}",
        f"echo {q(said)}",
    )
    return f'if [ "$(getent passwd {user} | cut -d: -f5)" = {mark} ]; then {remove}; fi'


def receiver_key(layout: Layout, source: str, key: str) -> str:
    """Its one line: the postgres host's ``key``, restricted to running the receive script,
    from ``source`` (the postgres host's private address) only."""
    return f'restrict,from="{source}",command="{layout.db_receive_script}" {key}\n'
