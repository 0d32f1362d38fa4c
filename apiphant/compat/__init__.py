"""Import paths that moved: they keep working. apiphant 0.2's warn once, naming the new path.

A module keeps an old name with ``__getattr__ = moved(__name__, {"old": "new.module:name"})``;
Python calls it only for names the module does not define, so nothing else changes.
``OLD_PATHS`` lists every path a product or its documentation may use (tests import each);
``compat.v02`` holds what apiphant 0.2 had and 1.0 does differently.
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


#: Every import path products use, by module: apiphant 0.2's (some warn), and those that
#: 1.0's documentation and generated products name. Each must keep importing.
OLD_PATHS: dict[str, tuple[str, ...]] = {
    # apiphant 0.2
    "apiphant.background": ("seconds", "main"),
    "apiphant.test": ("test", "config", "counts", "url", "base_url"),
    "apiphant.validation": ("ApiError", "BadRequest", "Invalid", "Missing", "field",
                            "status_by_code"),
    "apiphant.paths": ("init_paths",),
    "apiphant.server": ("raw_environ", "raw_response", "Server", "Limits"),
    # apiphant 1.0's documentation and template
    "apiphant.client": ("Client",),
    "apiphant.smoke": ("main", "run"),
    "apiphant.app": ("create_app", "App"),
    "apiphant.cors": ("policy",),
    "apiphant.errors": ("ApiError", "status_line", "STATUS_BY_CODE"),
    "apiphant.hatches": ("raw_environ", "raw_response"),
    "apiphant.request": ("Request", "AttrDict"),
    "apiphant.context": ("Http",),
    "apiphant.deploy.fabtasks": (),
    "apiphant.deploy.kit": (),
}  # fmt: skip
