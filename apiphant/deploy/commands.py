"""The shell commands run on the hosts: a facade over ``apiphant.deploy.host``, where each
noun (the lock, releases, Supervisor, Nginx...) builds its own commands and reads back
what they answer. Kept so that ``commands.X`` still works; new code imports the noun's
module."""

from apiphant.deploy.host.agents import SUPERVISOR_PYTHON, agent, supervise
from apiphant.deploy.host.certbot import (
    RENEW_EVERY,
    _certbot,
    _reason,
    certbot_certonly,
    certbot_renew,
    certificates,
    https_check,
    obtain_certificate,
    tls_dirs,
)
from apiphant.deploy.host.configs import check_logrotate, link, logrotate, unless_live
from apiphant.deploy.host.lock import LOCKED, lock, unlock
from apiphant.deploy.host.nginx import (
    check_nginx,
    in_rotation,
    maintenance,
    nginx_check_live,
    nginx_ready,
    nginx_reload,
    nginx_test_reload,
)
from apiphant.deploy.host.releases import (
    _release_ids,
    cleanup,
    current_release,
    history,
    in_release,
    make_release_dirs,
    mark_good,
    record,
    releases,
    smoke_test,
    switch,
)
from apiphant.deploy.host.shell import join, side_by_side, systemd_or
from apiphant.deploy.host.status import status, tail_logs
from apiphant.deploy.host.supervisor import (
    check_supervisor,
    restart_background,
    restart_worker,
    restart_workers,
    supervisor_ready,
    supervisor_sync,
)
from apiphant.deploy.host.system import (
    LOGS_OWNER,
    account_check,
    apt_install,
    logs_owner,
    private_dir,
    system_user,
)
from apiphant.deploy.host.uploads import STAGE, unpack_upload, upload_install
from apiphant.deploy.host.venv import _venv, pack_venv, virtualenv, virtualenv_from_archive

__all__ = [
    "LOCKED", "LOGS_OWNER", "RENEW_EVERY", "STAGE", "SUPERVISOR_PYTHON", "_certbot", "_reason",
    "_release_ids", "_venv", "account_check", "agent", "apt_install", "certbot_certonly",
    "certbot_renew", "certificates", "check_logrotate", "check_nginx", "check_supervisor",
    "cleanup", "current_release", "history", "https_check", "in_release", "in_rotation", "join",
    "link", "lock", "logrotate", "logs_owner", "maintenance", "make_release_dirs", "mark_good",
    "nginx_check_live", "nginx_ready", "nginx_reload", "nginx_test_reload", "obtain_certificate",
    "pack_venv", "private_dir", "record", "releases", "restart_background", "restart_worker",
    "restart_workers", "side_by_side", "smoke_test", "status", "supervise", "supervisor_ready",
    "supervisor_sync", "switch", "system_user", "systemd_or", "tail_logs", "tls_dirs",
    "unless_live", "unlock", "unpack_upload", "upload_install", "virtualenv",
    "virtualenv_from_archive",
]  # fmt: skip
