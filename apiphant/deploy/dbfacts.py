"""What a deploy asks the postgres host and the host that keeps its backups' copies, before
the plan: the postgres host's key for pushing copies (made there once) and the receiving
host's SSH host key. Public keys both: the plan writes each into the other host's files
(``plan.prepare.backup_copy_setup``, ``backup_receiver_steps``)."""

from apiphant.deploy.config import Config, Host
from apiphant.deploy.console import DryRun, Hosts
from apiphant.deploy.errors import DeployError
from apiphant.deploy.host import backups
from apiphant.deploy.plan.prepare import BackupKeys

#: What a dry run (which asks no host) shows where the keys would be.
KEYS_UNKNOWN = BackupKeys("<the postgres host's key for copies>", "<the copy host's host key>")


def backup_keys(executor: Hosts, config: Config, hosts: list[Host]) -> BackupKeys | None:
    """Both keys, when the deployment copies its backups and this deploy prepares the
    postgres host or the receiving one; else None."""
    server, copy = config.database_host(), config.backup_copy_host()
    chosen = {h.name for h in hosts}
    if server is None or copy is None or not chosen & {server.name, copy.name}:
        return None
    layout = config.layout
    push = executor.query(server.name, backups.backup_key(layout),
                          f"the key that pushes backups to {copy.name} (made there once)")
    host = executor.query(copy.name, backups.host_key(), "its SSH host key, for the copies")
    if isinstance(executor, DryRun):
        return KEYS_UNKNOWN
    found = BackupKeys(backups.parse_key(push), backups.parse_key(host))
    for name, key, where in ((server.name, found.push, layout.db_backup_key + ".pub"),
                             (copy.name, found.host, backups.HOST_KEY)):
        if not key:
            raise DeployError(f"{name}: {where} is not one public key; nothing was changed")
    return found
