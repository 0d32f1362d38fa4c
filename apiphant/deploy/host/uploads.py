"""Files put on a host: staged as the SSH user, then installed or unpacked as root."""

from shlex import quote as q
from typing import Protocol

from apiphant.deploy.host.shell import join

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


class Staged(Protocol):
    """What an upload says of its file on the host (``plan.Upload`` is one)."""

    remote: str
    mode: int
    owner: str
    group: str
    unpack: bool


def upload_commands(upload: Staged, staged: str = "$STAGED") -> tuple[str, str]:
    """Stage the file as the SSH user (who may not be root), then install (or unpack) it as
    root."""
    u = upload
    if u.unpack:
        return STAGE, unpack_upload(staged, u.remote, u.group)
    return STAGE, upload_install(staged, u.remote, u.mode, u.owner, u.group)
