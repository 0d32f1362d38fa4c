"""Where the runner was. It is four modules now: ``ssh`` (the transport), ``console`` (what
a run prints, and the dry run), ``orchestrate`` (the policy: phases, the lock, rollbacks)
and ``errors``. Every name it had is here still, for the code and tests that import it
from here; ``Executor``, the dry-run printer, is ``console.DryRun``."""

from apiphant.deploy.console import (
    HEADINGS,
    DryRun,
    Hosts,
    Print,
    _Prefixed,
    _print,
    _printing,
    describe_upload,
    heading,
    print_plan,
    say,
)
from apiphant.deploy.errors import DeployError, Lost, StepFailed, Unreachable
from apiphant.deploy.host.releases import Releases, parse_releases
from apiphant.deploy.host.uploads import upload_commands
from apiphant.deploy.orchestrate import (
    CONVERGE,
    Outcome,
    _roll_back,
    _run_each,
    all_releases,
    current_releases,
    each_at_once,
    execute,
    good_releases,
    locked,
    report_serving,
    run_every_host,
    run_phase,
    run_side_by_side,
    run_staged,
    run_steps,
    serving_lines,
    untouched,
)
from apiphant.deploy.plan import by_host
from apiphant.deploy.ssh import (
    KEEPALIVE,
    LOST_AFTER,
    SUDO_REFUSALS,
    TUNNEL_CONNECT,
    Remote,
    _configuring,
    _Line,
    _reason,
    _tune,
    local_environment,
    lost_line,
    sudo_reading_password,
    tunnel,
)

#: The dry-run printer, by its old name.
Executor = DryRun

__all__ = [
    "CONVERGE", "HEADINGS", "KEEPALIVE", "LOST_AFTER", "SUDO_REFUSALS", "TUNNEL_CONNECT",
    "DeployError", "DryRun", "Executor", "Hosts", "Lost", "Outcome", "Print", "Releases",
    "Remote", "StepFailed", "Unreachable", "_Line", "_Prefixed", "_configuring", "_print",
    "_printing", "_reason", "_roll_back", "_run_each", "_tune", "all_releases", "by_host",
    "current_releases", "describe_upload", "each_at_once", "execute", "good_releases",
    "heading", "local_environment", "locked", "lost_line", "parse_releases", "print_plan",
    "report_serving", "run_every_host", "run_phase", "run_side_by_side", "run_staged",
    "run_steps", "say", "serving_lines", "sudo_reading_password", "tunnel", "untouched",
    "upload_commands",
]  # fmt: skip
