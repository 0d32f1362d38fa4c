"""Raise the open-files soft limit: every connection is a file descriptor."""

import logging
import resource

log = logging.getLogger(__name__)

#: Descriptors kept for everything that is not a client connection.
RESERVED_FILES = 64
#: Below this hard limit a production server is short of connections.
LOW_HARD_LIMIT = 4096


def raise_open_files(wanted_connections: int | None = None) -> int:
    """Raise the soft limit to the hard one; return how many connections fit.

    With no wish, as many as the limit allows; a wish above that is cut down, with a warning.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = max(soft, (wanted_connections or 0) + RESERVED_FILES, 65536)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            log.warning("Cannot raise the open-files limit from %d to %d: %s", soft, target, error)
    if hard != resource.RLIM_INFINITY and hard < LOW_HARD_LIMIT:
        log.warning(
            "The open-files hard limit is low (%d): raise it (ulimit -Hn, or minfds "
            "in Supervisor) to serve many connections",
            hard,
        )
    fit = max(soft - RESERVED_FILES, 1)
    if wanted_connections is None:
        return fit
    if fit < wanted_connections:
        log.warning(
            "The open-files limit is %d, so at most %d concurrent connections, not %d",
            soft,
            fit,
            wanted_connections,
        )
        return fit
    return wanted_connections
