"""Logging in the seed's format, shared by the server and the background runner."""

import logging
import os
import sys

FORMAT = "%(levelname)s at %(module)s.%(funcName)s:%(lineno)d [%(asctime)s] %(message)s"


def configure(level: str | int | None = None) -> None:
    """Send log lines in the seed's format to stderr; APIPHANT_LOG_LEVEL overrides."""
    level = level or os.environ.get("APIPHANT_LOG_LEVEL", "INFO")
    if isinstance(level, str):
        level = level.upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
