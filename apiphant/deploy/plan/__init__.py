"""The deploy as a list of steps, built from the config alone: pure, printable, testable.

A step is one shell command or one upload on one host, or a command on the
deployer that reaches a host through an SSH tunnel (``Local``), with the reason
it is there. A deploy is phases of steps (``Phase``), and each phase's flags say how
it runs and what a failure in it means (``plan.build`` gives a deploy's):

- lock: per host; a held lock stops everything before anything happens.
- prepare: apt, user, the release uploaded, its virtualenv, its configs
  validated; small commands with no decision between them run as one step.
  Nothing live is touched: a failure leaves a failed release dir.
- release: deploy.toml's ``release`` command (migrations), once, on one API
  host, in the new release. A failure stops the deploy; nothing live switched.
- activate: ``current`` switched, configs linked, services reloaded, API
  workers restarted one at a time. From here a failure rolls back.
- verify: the smoke test through Nginx. A failure rolls back.
- finish: the release marked good, old releases removed, ``after_deploy``
  (its failure is reported, never rolled back).
- unlock: always.

status, logs, unlock, run, maintenance and history are plans too: one phase
of steps, printable with ``--dry-run`` like a deploy.
"""

from apiphant.deploy.plan.activate import (
    NGINX_FILES,
    SUPERVISE,
    _links,
    activate_steps,
    obtain_step,
    release_phase_steps,
)
from apiphant.deploy.plan.build import deploy_plan, rollback_plan
from apiphant.deploy.plan.operate import (
    certificates,
    db_backup_plan,
    db_backups_plan,
    db_fetch_done,
    db_fetch_steps,
    db_put_steps,
    db_restore_step,
    history_plan,
    lock_steps,
    logs_plan,
    maintenance_plan,
    record_steps,
    run_plan,
    status_plan,
    unlock_plan,
    unlock_steps,
)
from apiphant.deploy.plan.prepare import VenvCopies, prepare_steps, tls_file_steps, venv_copies
from apiphant.deploy.plan.rolling import batches, rolling_restart
from apiphant.deploy.plan.steps import (
    ACTIVATE,
    DEPLOY,
    FINISH,
    PREPARE,
    RELEASE,
    TUNNEL,
    VERIFY,
    Download,
    Local,
    Phase,
    Plan,
    Step,
    StepKind,
    Upload,
    by_host,
    merged,
    staged,
    stages,
)
from apiphant.deploy.plan.verify import (
    HEALTH_SCRIPT,
    TUNNEL_URL,
    finish_steps,
    tunnel_health,
    tunnel_smoke_test,
    verify_steps,
)

__all__ = [
    "ACTIVATE", "DEPLOY", "FINISH", "PREPARE", "RELEASE", "VERIFY", "Phase", "StepKind",
    "by_host",
    "HEALTH_SCRIPT", "NGINX_FILES", "SUPERVISE", "TUNNEL", "TUNNEL_URL", "Download", "Local",
    "Plan", "Step", "Upload", "VenvCopies", "_links", "activate_steps", "batches",
    "certificates", "db_backup_plan", "db_backups_plan", "db_fetch_done", "db_fetch_steps",
    "db_put_steps", "db_restore_step", "deploy_plan",
    "finish_steps", "history_plan", "lock_steps", "logs_plan",
    "maintenance_plan", "merged", "obtain_step", "prepare_steps", "record_steps",
    "release_phase_steps", "rollback_plan", "rolling_restart", "run_plan", "staged", "stages",
    "status_plan", "tls_file_steps", "tunnel_health", "tunnel_smoke_test", "unlock_plan",
    "unlock_steps", "venv_copies", "verify_steps",
]  # fmt: skip
