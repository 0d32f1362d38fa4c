"""What goes wrong in a run, as exceptions whose message says where and why, plainly: the
transport raises them, the orchestration decides what each means, the tasks print them."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apiphant.deploy.plan import Step


class DeployError(Exception):
    """A deploy, rollback or query that failed; the message says where and why, plainly."""


class StepFailed(DeployError):
    """A step that failed: which one, and its exit status (``fab run`` passes it on)."""

    def __init__(self, step: "Step", message: str, exited: int = 1) -> None:
        super().__init__(message)
        self.step = step
        self.exited = exited


class Unreachable(DeployError):
    """The host could not be reached over SSH."""


class Lost(Unreachable):
    """The host stopped answering while connected: which step it was in matters."""
