"""The release's rendered configs: checked before they go live, linked into /etc, and the
logrotate run over the live ones."""

from collections.abc import Iterable
from shlex import quote as q

from apiphant.deploy.host.shell import join
from apiphant.deploy.layout import BEFORE, LOGROTATE, LOGROTATE_FILE, Layout, Paths


def unless_live(paths: Paths, name: str, what: str, check: str) -> str:
    """``check`` on the rendered file ``name``, unless it is byte for byte the live release's:
    that one was checked before it went live, and a code-only deploy changes no config (a
    Python start of Supervisor's parser per host, the check's cost, is saved). Another
    deployment's file that broke since is not ours to check: a restart says so, and runs
    our programs with the config supervisord has."""
    new, live = paths.file(name), paths.layout.current_file(name)
    same = q(f"{what}: config the same as the live release's, checked before it went live")
    return f"if cmp -s {q(new)} {q(live)}; then echo {same}; else {check}; fi"


def check_logrotate(paths: Paths) -> str:
    check = paths.check
    return unless_live(paths, LOGROTATE_FILE, "logrotate", join(
        f"mkdir -p {q(check)}",
        f"logrotate -d -s {q(check + '/logrotate.state')} {q(paths.file(LOGROTATE_FILE))}"
        " 2>/dev/null",
        "echo 'logrotate: config parses'",
    ))  # fmt: skip


def logrotate(layout: Layout) -> str:
    """One logrotate run over the live release's config, with the deployment's own state
    file: what the rotation program (config/rotate) runs every ``[logs] check_every``."""
    config = layout.current_file(LOGROTATE_FILE)
    return f"{LOGROTATE} -s {q(layout.logrotate_state)} {q(config)}"


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
