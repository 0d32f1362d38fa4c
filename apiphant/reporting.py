"""Error reporting to Sentry, active only when SENTRY_DSN is set.

The server and the background runner report the same way: one explicit
event per failure, tagged with where it happened, flushed at shutdown.
Sentry's logging integration is kept from turning error log lines into
events, so nothing is reported twice.
"""

import logging
import os
from typing import Any

log = logging.getLogger(__name__)

_enabled = False


def init(component: str, environ: dict[str, str] | None = None) -> bool:
    """Start sentry-sdk when SENTRY_DSN is set; return whether it is on."""
    global _enabled
    environ = os.environ if environ is None else environ
    dsn = environ.get("SENTRY_DSN", "").strip()
    if not dsn:
        _enabled = False
        return False
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environ.get("SENTRY_ENVIRONMENT") or None,
        release=environ.get("SENTRY_RELEASE") or None,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=None)],
        auto_enabling_integrations=False,
        send_default_pii=False,
    )
    sentry_sdk.get_global_scope().set_tag("component", component)  # seen from every greenlet
    _enabled = True
    return True


def enabled() -> bool:
    return _enabled


def capture(error: BaseException, **tags: Any) -> None:
    """Report one exception with tags (for example ``route`` or ``task``)."""
    if not _enabled:
        return
    import sentry_sdk

    from apiphant.context import current_request_id

    request_id = current_request_id()
    if request_id:  # the same id as the Nginx and worker log lines of that request
        tags.setdefault("request_id", request_id)
    try:
        with sentry_sdk.new_scope() as scope:
            for key, value in tags.items():
                scope.set_tag(key, value)
            sentry_sdk.capture_exception(error)
    except Exception:  # reporting must never break the caller
        log.exception("Sentry report failed")


def flush(timeout: float = 5.0) -> None:
    """Send pending events before the process exits."""
    if not _enabled:
        return
    import sentry_sdk

    try:
        sentry_sdk.flush(timeout=timeout)
    except Exception:
        log.exception("Sentry flush failed")
