"""Background tasks of myproduct, run by ``apiphant-background myproduct``.

Every ``@seconds(N)`` function runs once at start, then every N seconds, in
a greenlet of its own. Network I/O and ``time.sleep`` let the other tasks
run meanwhile; CPU-heavy work and file system calls do not, so keep those
short. When this file grows, make it a package: ``api/background/`` whose
``__init__.py`` imports the task modules and defines ``on_error``.
"""

import tempfile
import time
from pathlib import Path

from apiphant.background import seconds

KEEP_UPLOADS = 24 * 60 * 60  # seconds an upload is kept


def uploads_folder() -> Path:
    """Where the API leaves temporary uploads: a stand-in for your own folder."""
    return Path(tempfile.gettempdir()) / "myproduct-uploads"


def last_error_file() -> Path:
    return Path(tempfile.gettempdir()) / "myproduct-background-error.txt"


def on_error(error: str) -> None:
    """Called with ``Task NAME failed:`` and the traceback after any task fails.

    This one keeps the latest error in a file that a health check or a person
    can read. To be emailed instead, send ``error`` with smtplib here. Sentry
    needs no hook: set SENTRY_DSN.
    """
    path = last_error_file()
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n{error}\n")
    partial.replace(path)  # readers never see half a message


@seconds(60 * 60)
def clean_old_uploads() -> None:
    """Delete uploads older than a day, so the disk does not fill up."""
    folder = uploads_folder()
    if not folder.is_dir():
        return
    cutoff = time.time() - KEEP_UPLOADS
    for path in folder.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:  # already removed by someone else
            pass
