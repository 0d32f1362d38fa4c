"""What a deploy asks the postgres host and the host that keeps its backups' copies, before
the lock: the postgres host's key for pushing copies and the receiving host's SSH host key.
Public keys both: the plan writes each into the other host's files (``plan.prepare.
backup_copy_setup``, ``backup_receiver_steps``). Questions only: a postgres host with no key
yet gets it in the locked prepare phase, which reads it back then (``read_after_lock``)."""

from apiphant.deploy.config import Config, Host
from apiphant.deploy.console import DryRun, Hosts
from apiphant.deploy.errors import DeployError
from apiphant.deploy.facts import read_after_lock
from apiphant.deploy.host import backups
from apiphant.deploy.plan.prepare import BackupKeys

#: What a dry run (which asks no host) shows where the receiving host's key would be.
HOST_KEY_UNKNOWN = "<the copy host's host key>"


def backup_keys(executor: Hosts, config: Config, hosts: list[Host]) -> BackupKeys | None:
    """Both keys, when the deployment copies its backups and this deploy prepares the
    postgres host or the receiving one; else None. The push key is a callable (read after
    the lock) when the postgres host has none yet; a dry run shows a first deploy's plan."""
    server, copy = config.database_host(), config.backup_copy_host()
    chosen = {h.name for h in hosts}
    if server is None or copy is None or not chosen & {server.name, copy.name}:
        return None
    layout = config.layout
    where = layout.db_backup_key + ".pub"
    push = executor.query(server.name, backups.push_key(layout),
                          f"the key that pushes backups to {copy.name}, if it has one")
    host = executor.query(copy.name, backups.host_key(), "its SSH host key, for the copies")

    def parsed(name: str, answer: str, path: str, after: str = "; nothing was changed") -> str:
        key = backups.parse_key(answer)
        if not key:
            raise DeployError(f"{name}: {path} is not one public key{after}")
        return key

    later = read_after_lock(executor, server.name, backups.push_key(layout),
                            f"the key that pushes backups to {copy.name}, made now",
                            lambda answer: parsed(server.name, answer, where,
                                                  " after the deploy made it"))  # fmt: skip
    if isinstance(executor, DryRun):
        return BackupKeys(later, HOST_KEY_UNKNOWN)  # never called: shown as a placeholder
    host_key = parsed(copy.name, host, backups.HOST_KEY)
    if push.strip():
        return BackupKeys(parsed(server.name, push, where), host_key)
    if server.name not in chosen:
        raise DeployError(f"{server.name}: no key to push backups to {copy.name} yet, which "
                          f"its deploy makes: deploy {server.name} too; nothing was changed "
                          "on any host")  # fmt: skip
    return BackupKeys(later, host_key)
