"""0.2.x import paths that moved: they keep working and warn once, naming the new path.

A module keeps an old name with ``__getattr__ = moved(__name__, {"old": "new.module:name"})``;
Python calls it only for names the module does not define, so nothing else changes.
"""

import importlib
import warnings
from collections.abc import Callable
from typing import Any

_warned: set[str] = set()


def moved(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving ``names`` (old name -> ``"package.module:name"``)."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, new_name = names[name].partition(":")
        old, new = f"{module}.{name}", f"{where}.{new_name}"
        if old not in _warned:
            _warned.add(old)
            warnings.warn(f"{old} moved to {new}: import it from {where}", DeprecationWarning,
                          stacklevel=2)  # fmt: skip
        return getattr(importlib.import_module(where), new_name)

    return __getattr__
