"""Moved to ``apiphant.runtime.reporting``: this name stays only until the server modules
that import it move to the new path (an internal module, not an apiphant 0.2 path)."""

from apiphant.runtime.reporting import (
    FILTERED,
    SCRUBBED,
    capture,
    enabled,
    flush,
    init,
    scrub,
    scrubbed_keys,
)

__all__ = ["FILTERED", "SCRUBBED", "capture", "enabled", "flush", "init", "scrub",
           "scrubbed_keys"]  # fmt: skip
