"""Logging in apiphant 0.2's format (or JSON lines), shared by the server and the background runner.

Inside a request, every line carries the request's id (the same id Nginx logs and the
client gets in X-Request-Id), so one request can be followed from Nginx to Sentry.
"""

import json
import logging
import sys
from datetime import UTC, datetime

from apiphant import settings
from apiphant.context import current_request_id

FORMAT = "%(levelname)s at %(module)s.%(funcName)s:%(lineno)d [%(asctime)s]%(rid)s %(message)s"


class RequestIdFilter(logging.Filter):
    """Give every record ``request_id`` (the current request's, or "") and ``rid`` for text."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id()
        record.request_id = request_id
        record.rid = f" [{request_id}]" if request_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers (``APIPHANT_LOG_FORMAT=json``)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "where": f"{record.module}.{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", ""):
            line["request_id"] = record.request_id
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str | int | None = None, fmt: str | None = None) -> None:
    """Send log lines to stderr; APIPHANT_LOG_LEVEL and APIPHANT_LOG_FORMAT override.

    Raises settings.SettingError (one line) for a bad value of either.
    """
    level = level or settings.log_level()
    fmt = fmt or settings.log_format()
    if isinstance(level, str):
        level = level.upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
