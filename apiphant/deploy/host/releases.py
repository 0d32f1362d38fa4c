"""A deployment's releases on a host: made, switched to, listed, kept or removed, run in;
and the audit log of what was done to them."""

from shlex import quote as q

from apiphant.deploy.host.agents import agent
from apiphant.deploy.host.shell import join
from apiphant.deploy.host.system import logs_owner
from apiphant.deploy.layout import GOOD, RELEASE_ID_SHELL, Layout, Paths, run_script
from apiphant.settings.schema import env_name


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


def current_id(layout: Layout) -> str:
    """The id of the release ``current`` points at, in shell; ``current`` when there is
    none (the link's own name)."""
    return f'basename "$(readlink -f {q(layout.current)})"'


def current_release(layout: Layout) -> str:
    """The current release's id (``parse_current`` reads it)."""
    return f"{current_id(layout)} 2>/dev/null; true"


def parse_current(answer: str) -> str:
    """``current_release``'s answer: the id, or "" where no release is current."""
    answer = answer.strip()
    return answer if answer and answer != "current" else ""


def in_release(release_dir: str, user: str, command: str, env: dict[str, str] | None = None) -> str:
    """``command`` (a shell line) as the product user, in a release's virtualenv with the
    product's environment and secrets: the release phase, ``fab run``, the smoke test."""
    extra = "".join(f"{k}={q(v)} " for k, v in (env or {}).items())
    return (
        f"cd {q(release_dir)} && runuser -u {q(user)} -- {'env ' + extra if extra else ''}"
        f"{q(run_script(release_dir))} sh -c {q(command)}"
    )


def smoke_test(paths: Paths, product: str, url: str) -> str:
    """The product's test.py against ``url`` (through Nginx), in the release's virtualenv."""
    return in_release(
        paths.dir, paths.layout.user, f"python {q(product + '/test.py')}", {env_name("url"): url}
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
    them: a secret lives as long as a release that was deployed with it. The host agent
    does it (agent.py cleanup); it never fails a deploy that went live."""
    return agent(layout, "cleanup", "--keep", str(int(keep)), "--releases", layout.releases,
                 "--current", layout.current, "--venvs", layout.venvs,
                 "--shared-secrets", layout.shared_secrets)  # fmt: skip


def releases(layout: Layout) -> str:
    """One line per release, newest first: ``ID good|failed [current]``."""
    return (
        f"current=$({current_id(layout)} 2>/dev/null); "
        f"for r in $({_release_ids(layout)}); "
        f'do s=failed; [ -e {q(layout.releases)}/"$r"/{GOOD} ] && s=good; '
        'c=; [ "$r" = "$current" ] && c=current; echo "$r $s $c"; done; true'
    )


#: A host's releases, newest first: (release, good, current).
Releases = list[tuple[str, bool, bool]]


def parse_releases(text: str) -> Releases:
    """``releases``' answer: ``ID good|failed [current]`` lines."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if parts:
            rows.append((parts[0], parts[1:2] == ["good"], "current" in parts[2:]))
    return rows


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
