"""Testing a product: the in-process ``Client``, the one-line ``test()`` against a live
server, and ``run_smoke`` (what test.sh runs).

Loaded on first use: ``apiphant.testing.functional`` reads the environment when imported
(and exits 2 on a bad value), so importing this package alone never loads it.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apiphant.testing.client import Client
    from apiphant.testing.functional import test
    from apiphant.testing.smoke import run as run_smoke

__all__ = ["Client", "run_smoke", "test"]

#: Each name and its home: module, attribute.
HOMES = {
    "Client": ("apiphant.testing.client", "Client"),
    "test": ("apiphant.testing.functional", "test"),
    "run_smoke": ("apiphant.testing.smoke", "run"),
}


def __getattr__(name: str) -> Any:
    if name not in HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = HOMES[name]
    return getattr(importlib.import_module(module), attribute)
