"""One line for a product module that failed to import: where to look, and what went wrong.

Shared by the server (handlers, hooks) and the background runner, so both name the
product's own file and line, never a frame of importlib or apiphant.
"""

import traceback
from pathlib import Path


def shown(path: str | Path) -> str:
    """A path relative to the working folder when it is inside it, for short messages."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _inside(path: str, root: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def culprit(error: BaseException, root: Path) -> tuple[str, int | None] | None:
    """The product file and line where an import failed: where the user should look."""
    if isinstance(error, SyntaxError) and error.filename and _inside(error.filename, root):
        return error.filename, error.lineno
    found = None
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if _inside(frame.f_code.co_filename, root):
            found = frame.f_code.co_filename, lineno
    return found


def problem(error: BaseException, root: Path, file: Path) -> str:
    """``cannot import shop/api/v0/bad.py:3: NameError: name 'x' is not defined``."""
    found = culprit(error, root) or (str(file), None)
    place = shown(found[0]) + (f":{found[1]}" if found[1] else "")
    reason = traceback.format_exception_only(type(error), error)[-1].strip()
    return f"cannot import {place}: {reason}"


def full_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)).rstrip()
