"""Error reporting to Sentry, active only when SENTRY_DSN is set.

The server and the background runner report the same way: one explicit
event per failure, tagged with where it happened, flushed at shutdown.
Sentry's logging integration is kept from turning error log lines into
events, so nothing is reported twice.

What a request carries never leaves in an event by default: no request
bodies, headers or cookies (no integration collects them), and no frame's
local variables (sentry-sdk sends them by default, and a handler's
``request`` holds the client's JSON: passwords, card numbers). A product
that wants locals sets ``APIPHANT_SENTRY_LOCALS=true``. Every event is then
scrubbed anywhere in it, however deep or inside lists, by key:
a key containing one of ``SCRUBBED`` (or of ``APIPHANT_SENTRY_SCRUB``, the
product's own comma-separated additions) has its value replaced.
"""

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from apiphant.settings import env_value

log = logging.getLogger(__name__)

#: Parts of a key whose value never leaves in an event, compared lowercased, "-" as "_":
#: ``password`` also catches ``db_password``, ``card`` also ``card_number``.
SCRUBBED = (
    "password", "passwd", "secret", "token", "authorization", "cookie", "card", "api_key",
    "apikey", "private_key", "credential", "session", "csrf",
)  # fmt: skip
#: What a scrubbed value becomes (Sentry's own word for it).
FILTERED = "[Filtered]"

_enabled = False


def scrub(value: Any, fragments: Iterable[str] = SCRUBBED) -> Any:
    """``value`` with every value under a secret-looking key replaced by FILTERED, at any
    depth, in dicts and lists alike; the rest unchanged. Pure: returns new containers."""
    parts = tuple(f.lower().replace("-", "_") for f in fragments)

    def walk(item: Any) -> Any:
        if isinstance(item, Mapping):
            return {
                key: FILTERED if _secret(key, parts) else walk(inner) for key, inner in item.items()
            }
        if isinstance(item, list | tuple):
            return [walk(inner) for inner in item]
        return item

    return walk(value)


def _secret(key: Any, parts: tuple[str, ...]) -> bool:
    if not isinstance(key, str):
        return False
    name = key.lower().replace("-", "_")
    return any(part in name for part in parts)


def scrubbed_keys(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """SCRUBBED and the product's additions from APIPHANT_SENTRY_SCRUB."""
    return SCRUBBED + env_value("sentry_scrub", environ)


def init(component: str, environ: Mapping[str, str] | None = None) -> bool:
    """Start sentry-sdk when SENTRY_DSN is set; return whether it is on."""
    global _enabled
    dsn = env_value("sentry_dsn", environ)
    if not dsn:
        _enabled = False
        return False
    fragments = scrubbed_keys(environ)
    local_variables = env_value("sentry_locals", environ)
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    def before_send(event: Any, hint: Any) -> Any:
        return scrub(event, fragments)

    sentry_sdk.init(
        dsn=dsn,
        environment=env_value("sentry_environment", environ) or None,
        release=env_value("sentry_release", environ) or None,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=None)],
        auto_enabling_integrations=False,  # no web integration: nothing reads request data
        include_local_variables=local_variables,
        max_request_body_size="never",
        before_send=before_send,
        before_breadcrumb=before_send,
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
