"""What the server and its connections need of each other and of the application, as
Protocols: http/ reaches apiphant's App without importing it, and a Connection reads
its server through ten named attributes, not through the whole ``Server``.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from apiphant.http.admission import Admission
    from apiphant.http.connection import Connection
    from apiphant.http.parser import Request
    from apiphant.http.server import Limits

#: An application's direct answer: status, headers (the WSGI list, or their lines already
#: formatted as bytes) and body; None sends the request through WSGI instead.
DirectAnswer = tuple[str, list[tuple[str, str]] | bytes, bytes] | None


class DirectApp(Protocol):
    """An application the server may call without WSGI (apiphant's App): the parsed request,
    its ``wsgi.input``, and a function that builds the environ if the application asks."""

    def direct(
        self, request: "Request", stream: Any, environ: Callable[[], dict]
    ) -> DirectAnswer: ...


def direct_path(application: object) -> Callable[..., DirectAnswer] | None:
    """The application's ``direct`` when its own class defines one, else None (WSGI).

    A wrapper, or a subclass of App that does not define ``direct`` again, goes through
    WSGI: what it adds around ``__call__`` must not be skipped.
    """
    if "direct" in vars(type(application)):
        return application.direct  # type: ignore[attr-defined]
    return None


class ConnectionOwner(Protocol):
    """What a Connection reads of its server (apiphant.http.server.Server)."""

    loop: Any  # the hub's loop: a connection's read watcher
    limits: "Limits"
    admission: "Admission"
    draining: bool
    direct: Callable[..., DirectAnswer] | None
    application: Callable
    environ: dict[str, Any]  # the base environ of every request
    access_log: bool

    def dispatch(self, connection: "Connection") -> None:
        """Bytes arrived on an idle connection: a greenlet is to serve it."""

    def forget(self, connection: "Connection") -> None:
        """The connection closed: out of the registry."""
